"""A package index on loopback for image builds on machines that reach PyPI but not the PyTorch index.

Projects with a wheel in the given directories (the host's PIP_FIND_LINKS, e.g. the CPU torch wheel) are
served from disk; every other project is redirected to PyPI, so `pip install torch --index-url
http://127.0.0.1:PORT/simple` inside `podman build --network=host` gets torch from here and its dependencies
from PyPI. PEP 503 pages, standard library only.

    python deploy/podman/wheel_index.py --port 8765 /opt/wheels
"""

from __future__ import annotations

import argparse
import html
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

PYPI = "https://pypi.org/simple"


def normalize(name: str) -> str:
    """PEP 503 project name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def local_wheels(directories: list[Path]) -> dict[str, list[Path]]:
    """Wheels by normalised project name (the file name's first field)."""
    found: dict[str, list[Path]] = {}
    for directory in directories:
        for wheel in sorted(directory.glob("*.whl")):
            found.setdefault(normalize(wheel.name.split("-")[0]), []).append(wheel)
    return found


def make_handler(wheels: dict[str, list[Path]]) -> type[BaseHTTPRequestHandler]:
    files = {path.name: path for paths in wheels.values() for path in paths}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = [unquote(p) for p in self.path.split("?")[0].split("/") if p]
            if len(parts) == 2 and parts[0] == "simple":
                project = normalize(parts[1])
                if project not in wheels:
                    self.send_response(302)
                    self.send_header("Location", f"{PYPI}/{project}/")
                    self.end_headers()
                    return
                links = "".join(
                    f'<a href="/files/{html.escape(p.name)}">{html.escape(p.name)}</a>\n'
                    for p in wheels[project]
                )
                self._send(200, "text/html", f"<!DOCTYPE html><html><body>\n{links}</body></html>".encode())
            elif len(parts) == 2 and parts[0] == "files" and parts[1] in files:
                path = files[parts[1]]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(path.stat().st_size))
                self.end_headers()
                with path.open("rb") as stream:
                    while chunk := stream.read(1 << 20):
                        self.wfile.write(chunk)
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet: pip's own log tells the story
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", type=Path, help="directories holding wheels")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(local_wheels(args.directories)))
    print(f"http://{args.host}:{server.server_address[1]}/simple", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
