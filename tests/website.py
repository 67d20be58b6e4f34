"""A real HTTP server on localhost serving a small site that the tests define, faults included."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a slow server, or a timeout)
    validators: bool = True  # ETag and Last-Modified, answered with 304 when they match


def html(title: str, body: str, charset: str = "utf-8") -> Reply:
    text = f"<html><head><title>{title}</title></head><body>{body}</body></html>"
    return Reply(body=text.encode(charset), headers={"Content-Type": f"text/html; charset={charset}"})


class Site:
    """Routes are a path -> list of replies; each request takes the next, the last one repeats."""

    def __init__(self):
        self.routes: dict[str, list[Reply]] = {}
        self.log: list[tuple[float, str, dict]] = []
        self._served: dict[str, int] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                site.log.append((time.monotonic(), self.path, dict(self.headers)))
                replies = site.routes.get(self.path) or [Reply(404, b"not found", {"Content-Type": "text/plain"})]
                index = site._served.get(self.path, 0)
                site._served[self.path] = index + 1
                reply = replies[min(index, len(replies) - 1)]
                time.sleep(reply.delay)
                headers = dict(reply.headers)
                if reply.validators and reply.status == 200:
                    headers["ETag"] = '"' + hashlib.sha256(reply.body).hexdigest()[:16] + '"'
                    headers["Last-Modified"] = "Wed, 01 Jan 2025 00:00:00 GMT"
                    if self.headers.get("If-None-Match") == headers["ETag"]:
                        self.send_response(304)
                        self.send_header("ETag", headers["ETag"])
                        self.end_headers()
                        return
                try:
                    self.send_response(reply.status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Site":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def requests_for(self, path: str) -> list[dict]:
        return [headers for _, p, headers in self.log if p == path]

    def paths_requested(self) -> list[str]:
        return [p for _, p, _ in self.log]
