"""The web app's browser protections over real HTTP (uvicorn on a loopback port): security
headers on pages, API, static files and share pages; CSRF refusals of cookie changes; path
traversal attempts sent as raw request lines; the body size limit with and without
Content-Length; and that ``pip-audit`` is installed for CI's dependency audit.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.webdata import ADMIN, make_analysed_data, serve_api
from triage.web.app import COOKIE
from triage.web.security import CSP, CSRF_COOKIE, MAX_BODY_BYTES


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    analysed = make_analysed_data(tmp_path_factory.mktemp("websec"))
    with serve_api(analysed.data_dir) as (url, _, _store):
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, analysed, url


def admin_session(client) -> tuple[str, str]:
    client.cookies.clear()
    response = client.post("/api/login", json={"username": ADMIN[0], "password": ADMIN[1]})
    assert response.status_code == 200, response.text
    return response.cookies[COOKIE], response.cookies[CSRF_COOKIE]


def test_security_headers_on_every_kind_of_answer(served):
    client, analysed, _ = served
    session, _ = admin_session(client)
    token = client.post(f"/api/studies/{analysed.study_id}/shares", json={},
                        headers={"Authorization": f"Bearer {analysed.admin_token}"}).json()["path"]
    for path in ("/login", "/", "/api/me", "/api/studies", "/static/common.js", "/healthz", token,
                 token + "/study", "/nowhere"):
        response = client.get(path, cookies={COOKIE: session})
        headers = response.headers
        assert headers["content-security-policy"] == CSP, path
        assert "frame-ancestors 'none'" in CSP and "script-src 'self'" in CSP
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY", path
        assert headers["cross-origin-opener-policy"] == "same-origin" and "camera=()" in headers["permissions-policy"]
        assert "strict-transport-security" not in headers, path  # plain http, no trusted proxy
        expected = "no-referrer" if path.startswith("/share/") else "strict-origin-when-cross-origin"
        assert headers["referrer-policy"] == expected, path
    forged = client.get("/api/me", cookies={COOKIE: session}, headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in forged.headers  # an untrusted proxy header is ignored
    docs = client.get("/docs", cookies={COOKIE: session})
    assert "script-src 'self' 'sha256-" in docs.headers["content-security-policy"]


def test_csrf_of_cookie_changes(served):
    client, analysed, url = served
    session, csrf = admin_session(client)
    login = client.post("/api/login", json={"username": ADMIN[0], "password": ADMIN[1]})
    cookie = [v for k, v in login.headers.multi_items() if k == "set-cookie" and v.startswith(CSRF_COOKIE)][0]
    assert "httponly" not in cookie.lower() and "SameSite=strict" in cookie
    path = f"/api/studies/{analysed.study_id}/shares"
    client.cookies.clear()
    cookies = {COOKIE: session}
    refused = client.post(path, json={}, cookies=cookies)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = client.post(path, json={}, cookies=cookies, headers={"X-CSRF-Token": csrf[:-1] + "0"})
    assert wrong.status_code == 403
    ok = client.post(path, json={}, cookies=cookies, headers={"X-CSRF-Token": csrf, "Origin": url,
                                                                "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 201, ok.text
    for cross in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        response = client.post(path, json={}, cookies=cookies, headers={"X-CSRF-Token": csrf, **cross})
        assert response.status_code == 403 and "refused" in response.json()["detail"], cross
    bearer = client.post(path, json={}, headers={"Authorization": f"Bearer {analysed.admin_token}",
                                                 "Origin": "https://evil.example"})
    assert bearer.status_code == 201  # API tokens are no ambient credential
    login_csrf = client.post("/api/login", json={"username": ADMIN[0], "password": ADMIN[1]},
                             headers={"Origin": "https://evil.example"})
    assert login_csrf.status_code == 403


def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """``GET target`` sent as written (no client normalisation): (status, body)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def test_path_traversal_refused(served, tmp_path):
    client, analysed, url = served
    secret = b"root:x:0:0"
    link = analysed.data_dir / "results" / analysed.study_id / "1" / "images" / "escape.png"
    link.parent.mkdir(exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to("/etc/passwd")
    bearer = f"/api/studies/{analysed.study_id}"
    targets = ["/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
               "/static/..%2f..%2f..%2f..%2fetc%2fpasswd", "/static/..\\..\\..\\etc\\passwd",
               "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/common.js%00.png",
               "/docs-assets/../../../../../etc/passwd", "/share/..%2f..%2fetc%2fpasswd",
               "/share/x/study/images/..%2f..%2f..%2fetc%2fpasswd.png"]
    for target in targets:
        status, body = raw_get(url, target)
        assert status in (400, 404), (target, status)
        assert secret not in body, target
    headers = {"Authorization": f"Bearer {analysed.admin_token}"}
    for name in ("escape", "..%2fsummary", "%2e%2e", "..\\x"):
        response = client.get(f"{bearer}/images/{name}.png", headers=headers)
        assert response.status_code == 404 and secret not in response.content, name


def test_oversized_bodies_refused_quickly(served):
    client, _, url = served
    big = b'{"username": "' + b"a" * (MAX_BODY_BYTES + 10) + b'", "password": "x"}'
    response = client.post("/api/login", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "KiB" in response.json()["detail"]

    def chunks():
        for _ in range(100):  # 100 x 64 KiB = 6.4 MiB without a Content-Length
            yield b"a" * 65536

    chunked = client.post("/api/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    assert client.get("/healthz").json() == {"status": "ok"}  # still answering
    small = client.post("/api/login", json={"username": "nobody", "password": "x" * 100})
    assert small.status_code == 401


def test_pip_audit_is_installed():
    found = subprocess.run([sys.executable, "-m", "pip_audit", "--version"], capture_output=True, text=True)
    assert found.returncode == 0 and "pip-audit" in found.stdout
