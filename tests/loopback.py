"""A small HTTP server on 127.0.0.1 standing in for the real hosts: it serves fixture files,
can resume (HTTP Range), break off, or refuse ranges."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Files:
    """What the server serves: path -> bytes, and how it misbehaves."""

    def __init__(self) -> None:
        self.content: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}  # path -> bytes sent before the connection drops
        self.range_support = True
        self.length_header: str | None = None  # a Content-Length to send instead of the true one
        self.requests: list[tuple[str, str | None]] = []


def _handler(files: Files) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            rng = self.headers.get("Range")
            files.requests.append((self.path, rng))
            body = files.content.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if rng and files.range_support:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", files.length_header or str(len(body) - start))
            self.end_headers()
            drop = files.drop_after.pop(self.path, None)
            if drop is not None:
                self.wfile.write(body[start : start + drop])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body[start:])

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Files]]:
    files = Files()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    finally:
        httpd.shutdown()
        httpd.server_close()
