"""One HTTP POST with the standard library (``http.client``), for the alerts and STOW-RS.

Redirects are not followed. ``user:password@`` in the URL, or ``auth``, becomes Basic
authentication. An https URL verifies the server's certificate and host name, against the
system's trusted CAs unless a ``tls`` context says otherwise.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from triage import __version__

USER_AGENT = f"stroke-triage/{__version__}"


@dataclass(frozen=True)
class Answer:
    """The server's answer: HTTP status, reason phrase, and the body's first ``max_body`` bytes."""

    status: int
    reason: str
    body: bytes


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float,
         tls: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None,
         max_body: int = 65536) -> Answer:
    """POST ``body`` to ``url`` with ``headers``; ``timeout`` in seconds for the connection and
    each read. Raises OSError (no connection, timeout, TLS failure) or HTTPException (no valid
    answer)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                                 context=tls or ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = dict(headers)
    if auth is None and parts.username is not None:
        auth = (unquote(parts.username), unquote(parts.password or ""))
    if auth is not None:
        credentials = f"{auth[0]}:{auth[1]}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, response.reason, response.read(max_body))
    finally:
        connection.close()
