"""The stroke team's alert endpoint for tests: a real HTTP server on a loopback port.

It records every request (method, path, headers, raw body) and answers each with the next
status of ``answers`` (then 200): ``Endpoint(answers=[503])`` fails the first POST.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support import peers


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int                 # what the endpoint answered
    received_at: float = 0.0    # when it arrived (s since the epoch)


class Endpoint:
    """``with Endpoint(port) as endpoint:`` serves on 127.0.0.1:``port`` (a free one when None)
    in a thread, over https with ``tls`` = (certificate, key) PEM files; ``endpoint.requests``
    in arrival order."""

    def __init__(self, port: int | None = None, answers: list[int] = (), tls: tuple[Path, Path] | None = None):
        self.port = port or peers.free_port()
        self.answers = list(answers)
        self.tls = tls
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/alerts") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> "Endpoint":
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with endpoint._lock:
                    status = endpoint.answers.pop(0) if endpoint.answers else 200
                    endpoint.requests.append(Request(self.path, dict(self.headers.items()), body, status, time.time()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*map(str, self.tls))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 90.0, log=lambda: "") -> list[Request]:
        """The requests once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests)} of {count} alerts after {timeout} s\n{log()[-4000:]}")
            time.sleep(0.05)
        return list(self.requests)
