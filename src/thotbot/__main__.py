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
        if argv is None and args[:1] == ["serve"]:
            # The process's own command: start it again with huge pages for malloc, once, before
            # the server's modules are loaded (thotbot/hugepages.py).
            from thotbot.hugepages import restart_with_huge_pages

            restart_with_huge_pages()
        from thotbot.cli import main as thotbot

        return thotbot(args)
    except BrokenPipeError:
        # The reader went away (`thotbot keys list --json | head`): stop quietly, as other Unix
        # tools do, rather than print a traceback; stdout is pointed at /dev/null so that the
        # interpreter's own flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
