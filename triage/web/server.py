"""uvicorn serving the web API in a thread of the node process.

The listening socket is bound before the thread starts, so a port in use or an address that is
not ours is a one-line :class:`~triage.base.errors.InputError` at start-up. uvicorn's own start and
stop lines and its access log are left out (the API logs logins and re-runs itself; an access
log would list every study opened). ``X-Forwarded-Proto`` and ``X-Forwarded-For`` are believed
only from the ``trusted_proxies`` addresses (none by default: then never).
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from triage.base.errors import InputError

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class WebServer:
    """``app`` (ASGI) on ``host``:``port``, the forwarded headers of ``trusted_proxies``
    (addresses) believed; :meth:`start`, then :meth:`stop`."""

    def __init__(self, app, host: str, port: int, trusted_proxies: tuple[str, ...] = ()):
        self.app, self.host, self.port, self.trusted_proxies = app, host, port, trusted_proxies
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen and serve; returns once requests are answered."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise InputError(f"cannot listen for HTTP on {self.host}:{self.port}: "
                             f"{exc.strerror or exc}") from None
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=5, proxy_headers=bool(self.trusted_proxies),
                                forwarded_allow_ips=list(self.trusted_proxies) or None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                raise InputError(f"the HTTP server on {self.host}:{self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop accepting, let running requests finish (a few seconds at most)."""
        if self._server is None:
            return
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_S)
