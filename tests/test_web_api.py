"""The web API over real HTTP (uvicorn on a loopback port) on a data directory holding a real
analysis of the phantom (tests/support/webdata.py): authentication and roles on every route, sessions,
study list and detail against result.json, slice PNGs against the maps and the phantom's truth,
re-run requests, metrics and the audit log.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import sqlite3
import time
from dataclasses import replace

import httpx
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from fastapi.routing import APIRoute
from PIL import Image

from tests.support.webdata import ADMIN, SMALL, VIEWER, make_analysed_data, parse_metrics, serve_api
from triage.report.colormaps import get_lut
from triage.report.render import MAP_STYLES
from triage.store.jobs import JobStore
from triage.web import pages
from triage.web.accounts import MAX_FAILED_LOGINS, Accounts
from triage.web.app import COOKIE, STATIC_DIR
from triage.web.metrics import BUCKETS_S
from triage.web.security import CSRF_COOKIE
from triage.web.studies import edge_letters

PUBLIC = {("GET", "/healthz"), ("POST", "/api/login"), ("GET", "/login")}
PAGES = {("GET", "/"), ("GET", "/studies/{study_id}")}  # redirect to /login without a session


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    return make_analysed_data(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def api(analysed):
    """(client without credentials, app) of the API over the analysed data directory."""
    with serve_api(analysed.data_dir) as (url, app, _):
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, app


@pytest.fixture
def api_copy(analysed, tmp_path):
    """The API over a copy of the data directory, for tests that change it: (client, data
    directory, store)."""
    data_dir = tmp_path / "data"
    shutil.copytree(analysed.data_dir, data_dir)
    with serve_api(data_dir) as (url, _, store):
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, data_dir, store


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def login(client: httpx.Client, name: str, password: str) -> httpx.Response:
    return client.post("/api/login", json={"username": name, "password": password})


def session_cookie(client: httpx.Client, user=VIEWER) -> dict:
    """The headers of a logged-in page's requests: the session cookie and the CSRF token."""
    response = login(client, *user)
    assert response.status_code == 200, response.text
    return {"Cookie": f"{COOKIE}={response.cookies[COOKIE]}", "X-CSRF-Token": response.cookies[CSRF_COOKIE]}


def concrete(path: str, study_id: str) -> str:
    """``path`` of a route with its parameters filled in (the slice routes' for the tmax map)."""
    name = "aif" if "/images/" in path else "tmax"
    return (path.replace("{study_id}", study_id).replace("{layer}", "maps").replace("{name}", name)
            .replace("{z}", "3").replace("{link_id}", "1"))


def protected_routes(app) -> list[tuple[str, str]]:
    routes = [(method, route.path) for route in app.routes if isinstance(route, APIRoute)
              for method in route.methods]
    return sorted(set(routes) - PUBLIC - PAGES - {r for r in routes if r[1].startswith("/share/")})  # test_shares.py


def audit_rows(data_dir, action: str) -> list[sqlite3.Row]:
    with sqlite3.connect(data_dir / "triage.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM audit WHERE action = ? ORDER BY id", (action,)).fetchall()


def test_every_protected_route_refuses_missing_or_wrong_credentials(api, analysed):
    client, app = api
    routes = protected_routes(app)
    assert {("GET", "/api/studies"), ("GET", "/metrics"), ("GET", "/docs"),
            ("POST", "/api/studies/{study_id}/reprocess"), ("GET", "/api/audit")} <= set(routes)
    wrong = [{}, bearer("not-a-token"), bearer(analysed.admin_token + "x"),
             {"Cookie": f"{COOKIE}=forged-session-id"}, {"Authorization": f"Basic {analysed.admin_token}"}]
    for method, path in routes:
        url = concrete(path, analysed.study_id)
        for headers in wrong:
            response = client.request(method, url, headers=headers, json={} if method == "POST" else None)
            assert response.status_code == 401, (method, url, headers, response.text)
        if method == "GET":
            allowed = client.request(method, url, headers=bearer(analysed.admin_token))
            assert allowed.status_code == 200, (method, url, allowed.text)
    assert client.get("/healthz").json() == {"status": "ok"}
    for page in ("/", f"/studies/{analysed.study_id}"):
        response = client.get(page, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=" + page.replace("/", "%2F")  # and back


def test_viewer_cannot_do_admin_actions(api, analysed):
    client, _ = api
    for headers in (bearer(analysed.viewer_token), session_cookie(client, VIEWER)):
        reprocess = client.post(f"/api/studies/{analysed.study_id}/reprocess", json={}, headers=headers)
        assert reprocess.status_code == 403 and "admin" in reprocess.json()["detail"]
        assert client.get("/api/audit", headers=headers).status_code == 403
        assert client.get("/api/me", headers=headers).json() == {"username": VIEWER[0], "role": "viewer"}
    assert client.get("/api/audit", headers=bearer(analysed.admin_token)).status_code == 200


def test_login_cookie_logout_and_expiry(api, analysed):
    client, _ = api
    assert login(client, VIEWER[0], "wrong password").status_code == 401
    assert login(client, "nobody", VIEWER[1]).status_code == 401
    failed = audit_rows(analysed.data_dir, "login_failed")
    assert {(r["username"], r["client"]) for r in failed} >= {(VIEWER[0], "127.0.0.1"), ("nobody", "127.0.0.1")}

    response = login(client, *VIEWER)
    assert response.status_code == 200 and response.json() == {"username": VIEWER[0], "role": "viewer"}
    cookie = response.headers["set-cookie"]
    assert re.search(r"(?i)httponly", cookie) and re.search(r"(?i)samesite=strict", cookie)
    assert re.search(r"Max-Age=\d+", cookie) and "Path=/" in cookie
    headers = {"Cookie": f"{COOKIE}={response.cookies[COOKIE]}", "X-CSRF-Token": response.cookies[CSRF_COOKIE]}
    assert client.get("/api/me", headers=headers).json()["username"] == VIEWER[0]
    assert audit_rows(analysed.data_dir, "login")[-1]["username"] == VIEWER[0]

    assert client.post("/api/logout", headers=headers).status_code == 200
    assert client.get("/api/me", headers=headers).status_code == 401  # the old cookie is dead server-side
    assert audit_rows(analysed.data_dir, "logout")[-1]["username"] == VIEWER[0]

    headers = session_cookie(client, VIEWER)
    with sqlite3.connect(analysed.data_dir / "triage.db") as db:
        db.execute("UPDATE sessions SET expires_at = ?", (time.time() - 1,))
    assert client.get("/api/me", headers=headers).status_code == 401


def test_failed_logins_are_throttled(api, analysed):
    client, _ = api
    accounts = Accounts.open(analysed.data_dir / "triage.db")
    accounts.add_user("tina", "viewer", "tina-password")
    accounts.close()
    for _ in range(MAX_FAILED_LOGINS):
        assert login(client, "tina", "guess").status_code == 401
    refused = login(client, "tina", "tina-password")  # even the right password, for a while
    assert refused.status_code == 429 and COOKIE not in refused.cookies
    assert login(client, *VIEWER).status_code == 200  # other users are not locked out


def test_study_list_and_detail_are_the_result_on_disk(api, analysed):
    client, _ = api
    headers = bearer(analysed.viewer_token)
    result = json.loads((analysed.result_dir() / "result.json").read_text())
    listing = client.get("/api/studies", headers=headers)
    studies = {s["id"]: s for s in listing.json()["studies"]}
    assert set(studies) == {analysed.study_id, analysed.ncct_uid}
    entry = studies[analysed.study_id]
    store = JobStore(analysed.data_dir / "triage.db")
    (job,) = store.jobs(analysed.series_uid, "analyse")
    series = store.series(analysed.series_uid)
    store.close()
    assert entry == {
        "id": analysed.study_id, "series_uid": analysed.series_uid, "study_uid": result["study_uid"],
        "description": result["series_description"], "status": "done",
        "first_received": series.first_received, "last_received": series.last_received,
        "result_at": job.updated_at, "generation": 1,
        **{key: result[key] for key in ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml",
                                        "mismatch_ratio", "hir")},
        "defuse3": result["eligibility"]["defuse3"], "dawn": result["eligibility"]["dawn"],
        "quality_level": result["quality"]["level"], "error": None}
    assert entry["core_ml"] > 5 and entry["defuse3"] is True
    ncct = studies[analysed.ncct_uid]
    assert ncct["status"] == "ignored" and ncct["core_ml"] is None and ncct["generation"] is None

    detail = client.get(f"/api/studies/{analysed.study_id}", headers=headers).json()
    assert detail["result"] == result
    assert (detail["status"], detail["generation"], detail["slices"], detail["matrix"]) == (
        "done", 1, SMALL.n_slices, [SMALL.matrix, SMALL.matrix])
    assert detail["spacing_mm"] == result["acquisition"]["spacing_mm"] == [240 / SMALL.matrix] * 2 + [SMALL.slice_mm]
    assert detail["maps"] == {name: {"units": MAP_STYLES[name][0], "window": list(MAP_STYLES[name][1])}
                              for name in ("cbf", "cbv", "mtt", "tmax")}
    # The phantom is axial (1\\0\\0\\0\\1\\0): patient right at the image's left, anterior on top.
    assert detail["edges"] == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    # no patient name or ID in what the API shows
    patient = pydicom.dcmread(next((analysed.data_dir.parent / "dicom" / "perfusion").iterdir()))
    for text in (listing.text, json.dumps(detail)):
        assert str(patient.PatientID) not in text and str(patient.PatientName) not in text
    assert client.get("/api/studies/1.2.3.4", headers=headers).status_code == 404


def decoded(png: bytes, mode: str) -> np.ndarray:
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG" and picture.mode == mode
    return np.asarray(picture)


def lut_values(rgb: np.ndarray, name: str) -> np.ndarray:
    """Map values back from colours: the nearest LUT entry, on the map's window."""
    _, (low, high), colormap = MAP_STYLES[name]
    lut = get_lut(colormap).astype(np.int32)
    distance = ((rgb[..., None, :].astype(np.int32) - lut) ** 2).sum(-1)
    return low + distance.argmin(-1) * (high - low) / 255


def nifti(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_slices_are_on_the_acquisition_grid_where_the_truth_is(api, analysed):
    """Every map slice decodes to its map's values, pixel for pixel (no flip, no transpose);
    the core overlay is the core mask and lies on the phantom's true core (lesion on the
    patient's left = high columns; phantom grid = DICOM grid), not on its mirror image; the
    Tmax slices show the lesion's delay there; the AIF of result.json is on a true artery."""
    client, _ = api
    headers = bearer(analysed.viewer_token)
    base = f"/api/studies/{analysed.study_id}"
    truth = analysed.phantom.truth
    maps = analysed.result_dir() / "maps"
    tissue = nifti(maps / "cbf.nii.gz") != 0
    for name in ("cbf", "cbv", "mtt", "tmax"):
        _, (low, high), _ = MAP_STYLES[name]
        values = np.clip(nifti(maps / f"{name}.nii.gz"), low, high)
        step = (high - low) / 255
        for z in range(SMALL.n_slices):
            rgb = decoded(client.get(f"{base}/maps/{name}/{z}.png", headers=headers).content, "RGB")
            assert rgb.shape == (SMALL.matrix, SMALL.matrix, 3)
            shown = tissue[z]
            assert np.abs(lut_values(rgb[shown], name) - values[z][shown]).max() <= 2.01 * step, (name, z)
            assert not rgb[~shown].any()
    core_png = np.stack([decoded(client.get(f"{base}/overlays/core/{z}.png", headers=headers).content,
                                 "RGBA") for z in range(SMALL.n_slices)])
    inside = core_png[..., 3] > 0
    np.testing.assert_array_equal(inside, nifti(maps / "core.nii.gz") != 0)
    assert (core_png[inside][:, :3] == (255, 0, 255)).all()
    assert (inside & truth.core).sum() > 0.5 * inside.sum() > 0
    assert (inside[:, :, ::-1] & truth.core).sum() < 0.05 * inside.sum()  # not mirrored
    # not upside down: the true core's centre is 3 rows above the middle, the overlay's with it
    centre, true_centre = np.argwhere(inside).mean(0), np.argwhere(truth.core).mean(0)
    assert abs(true_centre[1] - (SMALL.matrix - 1) / 2) > 2.5
    assert abs(centre[1] - true_centre[1]) < 1.5 and abs(centre[2] - true_centre[2]) < 3
    hypo = np.stack([decoded(client.get(f"{base}/overlays/hypoperfusion/{z}.png", headers=headers).content,
                             "RGBA")[..., 3] > 0 for z in range(SMALL.n_slices)])
    assert (hypo & truth.hypoperfused).sum() > 0.7 * hypo.sum()
    # the Tmax slice PNGs show the lesion's delay on the true lesion voxels
    tmax = np.stack([lut_values(decoded(client.get(f"{base}/maps/tmax/{z}.png", headers=headers).content,
                                        "RGB"), "tmax") for z in range(SMALL.n_slices)])
    assert np.median(tmax[truth.severe & tissue]) > 10 > 4 > np.median(tmax[truth.parenchyma & ~truth.hypoperfused & tissue])
    x, y, z = json.loads((analysed.result_dir() / "result.json").read_text())["quality"]["aif"]["location"]["source_xyz"]
    assert [z, y, x] in truth.artery_voxels.tolist()

    colorbar = decoded(client.get(f"{base}/maps/cbf/colorbar.png", headers=headers).content, "RGB")
    assert colorbar.shape[1] > colorbar.shape[0]
    for picture in ("summary.png", "images/aif.png", "images/tmax.png"):
        assert decoded(client.get(f"{base}/{picture}", headers=headers).content, "RGB").shape[0] > 100
    for missing in ("maps/tmax/8.png", "maps/ttp/0.png", "maps/tmax/-1.png", "overlays/penumbra/0.png",
                    "images/nothing.png", "images/..%2Fresult.png", "maps/tmax/3.png?generation=7", "layers/core/3.png"):
        assert client.get(f"{base}/{missing}", headers=headers).status_code == 404, missing


def test_a_512_acquisition_is_shown_on_its_own_grid_not_the_processing_one(tmp_path):
    """512 x 512 images are analysed at 256 x 256; the slices are 512 x 512 like the source
    images, the core where the phantom's truth (made at 512) has it, the AIF on a true artery."""
    data = make_analysed_data(tmp_path, replace(SMALL, matrix=512))
    with serve_api(data.data_dir) as (url, _, _):
        with httpx.Client(base_url=url, timeout=30, headers=bearer(data.viewer_token)) as client:
            detail = client.get(f"/api/studies/{data.study_id}").json()
            assert detail["matrix"] == [512, 512] and detail["result"]["acquisition"]["processing_matrix"] == [256, 256]
            core = np.stack([decoded(client.get(f"/api/studies/{data.study_id}/overlays/core/{z}.png").content,
                                     "RGBA")[..., 3] > 0 for z in range(SMALL.n_slices)])
            tmax = decoded(client.get(f"/api/studies/{data.study_id}/maps/tmax/3.png").content, "RGB")
    assert core.shape == (SMALL.n_slices, 512, 512) and tmax.shape == (512, 512, 3)
    truth = data.phantom.truth
    assert (core & truth.core).sum() > 0.8 * core.sum() > 0 and (core[:, :, ::-1] & truth.core).sum() == 0
    x, y, z = detail["result"]["quality"]["aif"]["location"]["source_xyz"]
    assert [z, y, x] in truth.artery_voxels.tolist()


def test_pngs_are_cached_by_generation(api, analysed):
    client, _ = api
    headers = bearer(analysed.viewer_token)
    url = f"/api/studies/{analysed.study_id}/maps/cbf/4.png"
    first = client.get(url, headers=headers)
    etag = first.headers["etag"]
    assert "/1/" in etag and first.headers["cache-control"] == "private, no-cache"
    again = client.get(url, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    pinned = client.get(url, params={"generation": 1}, headers=headers)
    assert pinned.content == first.content and pinned.headers["etag"] == etag
    assert "immutable" in pinned.headers["cache-control"]


def test_reprocess_is_validated_and_queues_a_generation_with_its_options(api_copy, analysed):
    client, data_dir, store = api_copy
    headers = bearer(analysed.admin_token)
    url = f"/api/studies/{analysed.study_id}/reprocess"
    n = SMALL.matrix
    for body in ({"aif": [n, 10, 2]}, {"aif": [10, n, 2]}, {"aif": [10, 10, SMALL.n_slices]},
                 {"aif": [-1, 10, 2]}, {"aif": [1, 2]}, {"aif": [1, 2, 3, 4]}, {"profile": "no-such"},
                 {"aif": "1,2,3"}):
        response = client.post(url, json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
    assert client.post(f"/api/studies/{analysed.ncct_uid}/reprocess", json={}, headers=headers).status_code == 409
    assert [j.generation for j in store.jobs(analysed.series_uid, "analyse")] == [1]

    response = client.post(url, json={"aif": [n - 1, 7, SMALL.n_slices - 1], "profile": "rcbf38"}, headers=headers)
    assert response.status_code == 202 and response.json() == {"generation": 2}
    jobs = store.jobs(analysed.series_uid, "analyse")
    assert [(j.generation, j.state) for j in jobs] == [(1, "done"), (2, "pending")]
    assert jobs[1].analysis_options() == {"aif": [n - 1, 7, SMALL.n_slices - 1], "profile": "rcbf38"}
    assert jobs[0].analysis_options() == {}
    assert store.series(analysed.series_uid).generation == 2
    detail = client.get(f"/api/studies/{analysed.study_id}", headers=headers).json()
    assert (detail["status"], detail["generation"]) == ("queued", 1)  # generation 1 shown meanwhile

    again = client.post(url, json={}, headers=headers)  # supersedes the queued generation 2
    assert again.status_code == 202 and again.json() == {"generation": 3}
    states = [(j.generation, j.state, j.analysis_options()) for j in store.jobs(analysed.series_uid, "analyse")]
    assert states[1][:2] == (2, "superseded") and states[2] == (3, "pending", {})
    (row, _) = audit_rows(data_dir, "reprocess")
    assert (row["username"], row["target"]) == (ADMIN[0], analysed.study_id)
    assert json.loads(row["detail"]) == {"generation": 2, "aif": [n - 1, 7, SMALL.n_slices - 1], "profile": "rcbf38"}


def test_metrics_count_the_database(api_copy, analysed):
    client, data_dir, store = api_copy
    headers = bearer(analysed.viewer_token)
    (job,) = store.jobs(analysed.series_uid, "analyse")
    with sqlite3.connect(data_dir / "triage.db") as db:
        received = db.execute("SELECT max(received_at) FROM instances WHERE series_uid = ?",
                              (analysed.series_uid,)).fetchone()[0]
        # The result alert is written when the result is announced, about 2 s before the job
        # ends with the DICOM export: the result is ready then.
        ready = job.updated_at - 2.0
        for key, state, delivered in (("a", "delivered", ready + 7.5), ("b", "pending", None)):
            db.execute("INSERT INTO outbox (key, series_uid, generation, kind, format, url, body, state, "
                       "next_attempt_at, expires_at, created_at, delivered_at) VALUES "
                       "(?, ?, 1, 'result', 'json', 'http://x', x'', ?, 0, 0, ?, ?)",
                       (key, analysed.series_uid, state, ready, delivered))
    # a re-run a user requested is not a scanner-to-result latency
    client.post(f"/api/studies/{analysed.study_id}/reprocess", json={}, headers=bearer(analysed.admin_token))
    rerun = store.claim_job("analyse")
    assert rerun.generation == 2 and store.finish_job(rerun.id)

    response = client.get("/metrics", headers=headers)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    m = parse_metrics(response.text)
    f = frozenset
    assert m[("triage_instances", f())] == SMALL.n_slices * SMALL.n_frames + SMALL.n_slices
    assert m[("triage_series", f({("state", "ready")}))] == 1 == m[("triage_series", f({("state", "ignored")}))]
    assert m[("triage_jobs", f({("kind", "analyse"), ("state", "done")}))] == 2
    assert m[("triage_outbox_messages", f({("state", "delivered")}))] == 1
    assert m[("triage_outbox_messages", f({("state", "pending")}))] == 1
    expected = {"triage_receive_to_result_seconds": ready - received,
                "triage_result_to_alert_seconds": 7.5,
                "triage_receive_to_alert_seconds": ready + 7.5 - received}
    for name, seconds in expected.items():
        assert m[(f"{name}_count", f())] == 1 == m[(f"{name}_bucket", f({("le", "+Inf")}))]
        assert m[(f"{name}_sum", f())] == pytest.approx(seconds, abs=1e-6)
        counts = [m[(f"{name}_bucket", f({("le", format(b, 'g'))}))] for b in BUCKETS_S]
        assert counts == [float(seconds <= b) for b in BUCKETS_S]


def test_audit_log_records_who_opened_which_study(api, analysed):
    """One ``open_study`` row per user and study however many requests (within the repeat
    window: this module runs in less), logins with the client address; admins read it."""
    client, _ = api
    base = f"/api/studies/{analysed.study_id}"
    for headers in (session_cookie(client, VIEWER), bearer(analysed.viewer_token), bearer(analysed.admin_token)):
        for url in (base, f"{base}/maps/cbf/2.png", f"{base}/overlays/core/2.png", base):
            assert client.get(url, headers=headers).status_code == 200
    entries = client.get("/api/audit", headers=bearer(analysed.admin_token)).json()["entries"]
    opened = [(e["username"], e["target"]) for e in entries if e["action"] == "open_study"]
    assert opened.count((VIEWER[0], analysed.study_id)) == 1 == opened.count((ADMIN[0], analysed.study_id))
    assert any(e["action"] == "login" and e["username"] == VIEWER[0] and e["client"] == "127.0.0.1"
               for e in entries)
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    only_logins = client.get("/api/audit", params={"action": "login"}, headers=bearer(analysed.admin_token))
    assert {e["action"] for e in only_logins.json()["entries"]} == {"login"}


def test_docs_and_pages_for_a_logged_in_browser(api, analysed):
    client, _ = api
    headers = session_cookie(client, VIEWER)
    docs = client.get("/docs", headers=headers)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and all(url.startswith("/docs-assets/") for url in assets)  # works without internet
    for url in assets:
        assert client.get(url).status_code == 200, url
    schema = client.get("/openapi.json", headers=headers).json()
    assert "/api/studies/{study_id}/reprocess" in schema["paths"]
    for page, name in (("/", "index.html"), (f"/studies/{analysed.study_id}", "study.html"),
                       ("/login", "login.html")):
        response = client.get(page, headers=headers)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert pages.fill((STATIC_DIR / name).read_text().rstrip("\n"), "en") in response.text  # its main part
    assert client.get("/login").status_code == 200  # no session needed to log in


SHARED = ('<meta charset="utf-8">', '<meta name="viewport" content="width=device-width, initial-scale=1">',
          '<link rel="icon" href="data:,">', '<link rel="stylesheet" href="/static/viewer.css">',
          '<p class="ruo">Research use only — not for clinical decisions</p>', '<header class="bar">',
          '<a class="brand" href="/">stroke-triage</a>', '<span id="user"></span>',
          "<footer>CT perfusion triage software that is not clinically validated and is not a medical device.</footer>")


def test_every_page_has_the_one_shared_head_header_and_footer(api, analysed):
    """Each page is the layout around its own main part: the same head (character set,
    viewport, icon, style sheet), research-use line, header bar and footer, written once in
    static/layout.html and in no page's own file; its title and script are its own."""
    client, _ = api
    headers = session_cookie(client, VIEWER)
    layout = pages.fill((STATIC_DIR / "layout.html").read_text(), "en")
    for text in SHARED:
        assert layout.count(text) == 1, text
    for path, name, title, script in (("/", "index.html", "Studies", "studies.js"),
                                      (f"/studies/{analysed.study_id}", "study.html", "Study", "study.js"),
                                      ("/login", "login.html", "Sign in", "login.js")):
        own = (STATIC_DIR / name).read_text()
        assert not [text for text in SHARED + ("<head", "<title", "<footer", "<header") if text in own], name
        page = client.get(path, headers=headers).text
        assert page.startswith("<!doctype html>\n<html lang=\"en\">\n<head>\n") and page.count("<head>") == 1
        for text in SHARED:
            assert page.count(text) == 1, (path, text)
        assert f"<title>{title} – stroke-triage</title>" in page
        assert re.findall(r'<script type="module" src="([^"]+)"></script>', page) == [f"/static/{script}"]
        head, body = page.split("</head>")
        assert "<main" not in head and body.index("<header") < body.index("<main") < body.index("<footer")
    assert '<a href="/" id="all-studies">All studies</a>' in client.get(f"/studies/{analysed.study_id}", headers=headers).text


def test_a_series_uid_that_is_not_url_safe_has_a_hashed_id(api_copy, analysed):
    client, data_dir, store = api_copy
    hostile = "1.2.3/../../etc?x=<y>"
    with sqlite3.connect(data_dir / "triage.db") as db:
        db.execute("INSERT INTO series (series_uid, study_uid, patient_id, description, calling_aet, state, "
                   "first_received, last_received, n_instances) VALUES (?, '1.2', 'P', 'odd', 'CT1', "
                   "'receiving', 1, 2, 1)", (hostile,))
    headers = bearer(analysed.viewer_token)
    (odd,) = [s for s in client.get("/api/studies", headers=headers).json()["studies"] if s["series_uid"] == hostile]
    assert re.fullmatch(r"h[0-9a-f]{40}", odd["id"]) and odd["status"] == "receiving"
    detail = client.get(f"/api/studies/{odd['id']}", headers=headers).json()
    assert (detail["series_uid"], detail["result"], detail["generation"], detail["matrix"]) == (hostile, None, None, None)
    assert client.get(f"/api/studies/h{'0' * 40}", headers=headers).status_code == 404
    assert client.get(f"/api/studies/{odd['id']}/summary.png", headers=headers).status_code == 404


def test_a_failed_login_logs_no_name_that_is_not_a_user(api, caplog):
    client, _ = api
    with caplog.at_level(logging.INFO, logger="triage.web"):
        assert login(client, "Secret-Typed-Into-The-Name", "x").status_code == 401
        assert login(client, VIEWER[0], "wrong").status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "triage.web"]
    assert any("failed login for an unknown user name" in line for line in lines), lines
    assert any(f"failed login for {VIEWER[0]} " in line for line in lines), lines
    assert not any("Secret-Typed-Into-The-Name" in line for line in lines), lines


@pytest.mark.parametrize("orientation, edges", [
    ([1, 0, 0, 0, 1, 0], "RLAP"),                   # axial, as scanners write it
    ([-1, 0, 0, 0, 1, 0], "LRAP"),                  # axial, mirrored left to right
    ([0, 1, 0, -1, 0, 0], "APLR"),                  # axial, rotated by 90 degrees
    ([1, 0, 0, 0, 0, -1], "RLSI"),                  # coronal
    ([0.995, 0.0998, 0, -0.0998, 0.995, 0], "RLAP"),  # axial, tilted by 5.7 degrees
    (None, None),
])
def test_edge_letters_name_the_patient_direction_at_each_edge(orientation, edges):
    expected = None if edges is None else dict(zip(("left", "right", "top", "bottom"), edges))
    assert edge_letters(orientation) == expected


def test_a_running_analysis_is_shown_once_its_result_is_in_place(api_copy, analysed):
    """A running analysis whose result.json is in place (the job not ended yet) is shown with
    that result."""
    client, data_dir, store = api_copy
    headers = bearer(analysed.viewer_token)
    client.post(f"/api/studies/{analysed.study_id}/reprocess", json={}, headers=bearer(analysed.admin_token))
    running = store.claim_job("analyse")
    assert running.generation == 2
    detail = client.get(f"/api/studies/{analysed.study_id}", headers=headers).json()
    assert (detail["status"], detail["generation"]) == ("analysing", 1)  # nothing of generation 2 yet
    second = data_dir / "results" / analysed.study_id / "2"
    second.mkdir()
    result = json.loads((data_dir / "results" / analysed.study_id / "1" / "result.json").read_text())
    result["core_ml"] += 1.0  # told apart from generation 1's
    (second / "result.json").write_text(json.dumps(result))
    detail = client.get(f"/api/studies/{analysed.study_id}", headers=headers).json()
    assert (detail["status"], detail["generation"], detail["result"]) == ("analysing", 2, result)
    (entry,) = [s for s in client.get("/api/studies", headers=headers).json()["studies"]
                if s["id"] == analysed.study_id]
    assert (entry["generation"], entry["core_ml"]) == (2, result["core_ml"])
    assert entry["result_at"] == (second / "result.json").stat().st_mtime
