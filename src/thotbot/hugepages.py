"""`thotbot serve` asks glibc's malloc for transparent huge pages, unless the operator decided.

With tens of thousands of keys in use, each request reads its key's entries in a few large tables
(the key cache's, the rate limiter's, the usage window's) at places no other request has touched
for a while: most of what it pays for at that scale is finding that memory, and with 4 KiB pages
the processor's page-translation cache covers a few megabytes of it. glibc (2.35 and later) backs
its heap with 2 MiB pages when the tunable ``glibc.malloc.hugetlb=1`` is set, where the kernel's
transparent huge pages are ``always`` or ``madvise`` (the usual default). Measured: 3% to 6% less
CPU a request with 50,000 keys in use, about 1% with one (docs/PERFORMANCE.md, seventh pass).

A tunable is read when a process starts, so the server sets it and starts again in place
(``execv``: the same process id, arguments and environment otherwise), from ``thotbot/__main__.py``
before the server's modules load: the restart costs one interpreter start, some 20 ms. An operator
who sets ``glibc.malloc.hugetlb`` in GLIBC_TUNABLES, to any value (``=0`` turns it off), is left
alone; so is any system without glibc or without transparent huge pages.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["TUNABLE", "restart_with_huge_pages", "tunables_with_huge_pages"]

TUNABLE = "glibc.malloc.hugetlb"
_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
_GLIBC_SINCE = (2, 35)
#: Set in the restarted process's environment (and so its workers'): it never restarts twice.
_RESTARTED = "_THOTBOT_HUGE_PAGES_RESTARTED"


def tunables_with_huge_pages(environ: Mapping[str, str]) -> str | None:
    """GLIBC_TUNABLES with huge pages for malloc added; None when the operator set that tunable."""
    current = environ.get("GLIBC_TUNABLES", "")
    if any(item.split("=", 1)[0] == TUNABLE for item in current.split(":")):
        return None
    return f"{current}:{TUNABLE}=1" if current else f"{TUNABLE}=1"


def _huge_pages_available() -> bool:
    if sys.platform != "linux":
        return False
    libc, version = platform.libc_ver()
    try:
        release = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    if libc != "glibc" or release < _GLIBC_SINCE:
        return False
    try:
        # "always [madvise] never": the bracketed one is in force.
        return "[never]" not in _THP.read_text()
    except OSError:
        return False


def restart_with_huge_pages() -> None:
    """Start this process again with huge pages for malloc, when it would get them; else return."""
    tunables = tunables_with_huge_pages(os.environ)
    if tunables is None or _RESTARTED in os.environ or not _huge_pages_available():
        return
    if not (sys.executable and sys.orig_argv):
        return  # an embedded interpreter: nothing to start again
    before = dict(os.environ)
    # Once only, whatever the C library makes of the variable.
    os.environ.update({"GLIBC_TUNABLES": tunables, _RESTARTED: "1"})
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, sys.orig_argv)  # noqa: S606 (the same command, as it was given)
    except OSError:
        # The interpreter cannot be started again (removed since, say): serve without them.
        os.environ.clear()
        os.environ.update(before)
