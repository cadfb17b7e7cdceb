"""Debian's nginx run with the committed deploy/nginx.conf (its ports changed), for end-to-end tests."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import free_port, missing_service

__all__ = ["NGINX", "SITE", "Nginx", "render_config", "start_nginx"]

NGINX = Path("/usr/sbin/nginx")
SITE = Path(__file__).resolve().parents[1] / "deploy" / "nginx.conf"
#: The line of the committed upstream that names more instances, commented out for one instance.
MORE = "# server 127.0.0.1:8001;"


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    port: int
    error_log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


def render_config(site: str, *, listen: int, upstreams: Sequence[int], prefix: Path, http: str = "") -> str:
    """The committed site file, on our ports, inside a main config that keeps every path in ``prefix``.

    The first upstream port takes the place of 127.0.0.1:8000; more of them take the place of the
    commented second server line, as an operator adds instances. ``http`` is added to the http block.
    """
    first, *more = upstreams
    replacements = [
        ("listen 80;", f"listen 127.0.0.1:{listen};"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{first};"),
    ]
    if more:
        replacements.append((MORE, " ".join(f"server 127.0.0.1:{port};" for port in more)))
    for old, new in replacements:
        assert site.count(old) == 1, f"deploy/nginx.conf no longer has exactly one {old!r}"
        site = site.replace(old, new)
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"worker_processes 1;\npid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} warn;\n"
        "events { worker_connections 128; }\n"
        f"http {{\n    access_log off;\n{temp}\n{http}\n{site}\n}}\n"
    )


def start_nginx(workdir: Path, upstreams: Sequence[int], *, http: str = "") -> Nginx:
    """nginx in front of thotbot on these loopback ports, with its files under ``workdir``/nginx."""
    if not NGINX.exists():
        missing_service(f"nginx is not installed at {NGINX}")
    prefix = workdir / "nginx"
    prefix.mkdir()
    for _ in range(3):
        port = free_port()
        conf = prefix / "nginx.conf"
        site = SITE.read_text()
        conf.write_text(render_config(site, listen=port, upstreams=upstreams, prefix=prefix, http=http))
        process = subprocess.Popen(
            [
                str(NGINX),
                "-p",
                str(prefix),
                "-c",
                str(conf),
                "-e",
                str(prefix / "error.log"),
                "-g",
                "daemon off;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = Nginx(process, port, prefix / "error.log")
        if _listening(server):
            return server
        process.kill()
        process.wait(10)
    pytest.fail(f"nginx did not start:\n{server.error_log.read_text(errors='replace')}")


def _listening(server: Nginx, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False
