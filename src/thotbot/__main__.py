"""`python -m thotbot` and the `thotbot` command.

`thotbot api ...` is for API users: it loads the Python client (httpx), never the server's modules,
and so starts several times faster than the operator's commands.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["api"]:
            from thotbot.client._cli import main as api

            return api(args)
        from thotbot.cli import main as thotbot

        # None: the process's own command line, which `thotbot serve` may start again (cli/_malloc.py).
        return thotbot(None if argv is None else args)
    except BrokenPipeError:
        # The reader went away (`thotbot keys list --json | head`): stop quietly, as other Unix
        # tools do, rather than print a traceback; stdout is pointed at /dev/null so that the
        # interpreter's own flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
