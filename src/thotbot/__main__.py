"""`python -m thotbot` and the `thotbot` command.

`thotbot api ...` is for API users: it loads the Python client (httpx), never the server's modules,
and so starts several times faster than the operator's commands.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["api"]:
        from thotbot.client._cli import main as api

        return api(args)
    from thotbot.cli import main as thotbot

    return thotbot(args)


if __name__ == "__main__":
    raise SystemExit(main())
