"""Share links over real HTTP (uvicorn on a loopback port) on a data directory holding a real
analysis of the phantom (tests/support/webdata.py): made by admins only, the token kept only as
its SHA-256, the link reading its one study and nothing else, refused when expired (its expiry
moved into the past in the database), revoked or unknown, every use audited without the token.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sqlite3
import time

import httpx
import pytest

from tests.support.webdata import make_analysed_data, serve_api
from triage.base.names import safe_name
from triage.web import pages
from triage.web.shares import MAX_HOURS


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    return make_analysed_data(tmp_path_factory.mktemp("shares"))


@pytest.fixture
def api(analysed, tmp_path):
    """(client without credentials, data directory) of the API over a copy of the data."""
    data_dir = tmp_path / "data"
    shutil.copytree(analysed.data_dir, data_dir)
    with serve_api(data_dir) as (url, _, _store):
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, data_dir


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def make_link(client, analysed, study_id=None, **body) -> dict:
    response = client.post(f"/api/studies/{study_id or analysed.study_id}/shares", json=body,
                           headers=bearer(analysed.admin_token))
    assert response.status_code == 201, response.text
    return response.json()


def token_of(link: dict) -> str:
    return link["path"].removeprefix("/share/")


def share_rows(data_dir, table: str) -> list[sqlite3.Row]:
    with sqlite3.connect(data_dir / "triage.db") as db:
        db.row_factory = sqlite3.Row
        return db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


def test_only_admins_make_links_and_only_the_hash_is_kept(api, analysed):
    client, data_dir = api
    url = f"/api/studies/{analysed.study_id}/shares"
    assert client.post(url, json={}).status_code == 401
    refused = client.post(url, json={}, headers=bearer(analysed.viewer_token))
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    assert client.get(url, headers=bearer(analysed.viewer_token)).status_code == 403
    for hours in (0, -1, MAX_HOURS + 1):
        assert client.post(url, json={"hours": hours}, headers=bearer(analysed.admin_token)).status_code == 422
    assert client.post(f"/api/studies/h{'0' * 40}/shares", json={}, headers=bearer(analysed.admin_token)).status_code == 404

    before = time.time()
    link = make_link(client, analysed, note="Dr Lan, Hue")
    token = token_of(link)
    assert len(token) >= 43 and link["url"].endswith(link["path"]) and link["url"].startswith("http://127.0.0.1:")
    assert (link["state"], link["note"], link["created_by"], link["uses"]) == ("active", "Dr Lan, Hue", "ada", 0)
    assert link["expires_at"] - link["created_at"] == pytest.approx(24 * 3600.0)
    assert before <= link["created_at"] <= time.time()
    assert make_link(client, analysed, hours=0.5)["expires_at"] - time.time() == pytest.approx(1800, abs=60)

    (row, _) = share_rows(data_dir, "share_links")
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (data_dir / "triage.db").read_bytes().decode("latin-1")  # nowhere in clear
    listed = client.get(url, headers=bearer(analysed.admin_token)).json()["links"]
    assert [entry["id"] for entry in listed] == [link["id"] + 1, link["id"]]  # the newest first
    assert all("token" not in key and "path" not in key for entry in listed for key in entry)
    audit = client.get("/api/audit", params={"action": "share_create"}, headers=bearer(analysed.admin_token))
    assert [e["target"] for e in audit.json()["entries"]] == [analysed.study_id] * 2


def test_the_link_s_url_starts_with_the_public_url_when_there_is_one(analysed, tmp_path):
    shutil.copytree(analysed.data_dir, tmp_path / "data")
    with serve_api(tmp_path / "data", public_url="https://triage.hospital.example/") as (url, _, _store):
        with httpx.Client(base_url=url, timeout=30) as client:
            link = make_link(client, analysed)
    assert link["url"] == "https://triage.hospital.example" + link["path"]


def test_a_link_reads_its_study_and_nothing_else(api, analysed):
    client, data_dir = api
    token = token_of(make_link(client, analysed))
    page = client.get(f"/share/{token}")
    assert page.status_code == 200 and page.content == pages.render("study.html")
    logged_in = client.get(f"/api/studies/{analysed.study_id}", headers=bearer(analysed.viewer_token)).json()
    detail = client.get(f"/share/{token}/study")
    assert detail.status_code == 200
    assert detail.headers["cache-control"] == "no-store" and detail.headers["referrer-policy"] == "no-referrer"
    shared = detail.json()
    expires_at = shared.pop("share")["expires_at"]
    assert shared == logged_in and expires_at > time.time() + 23 * 3600
    for part in ("maps/cbf/3.png", "overlays/core/3.png?generation=1", "maps/tmax/colorbar.png",
                 "summary.png", "images/aif.png"):
        picture = client.get(f"/share/{token}/study/{part}")
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png", part
        assert picture.headers["cache-control"] == "no-store"
        same = client.get(f"/api/studies/{analysed.study_id}/{part}", headers=bearer(analysed.viewer_token))
        assert picture.content == same.content, part

    other = safe_name(analysed.ncct_uid)
    for method, path in (("GET", "/api/studies"), ("GET", f"/api/studies/{other}"),
                         ("GET", f"/api/studies/{analysed.study_id}"), ("GET", "/api/me"), ("GET", "/api/audit"),
                         ("POST", f"/api/studies/{analysed.study_id}/reprocess"),
                         ("POST", f"/api/studies/{analysed.study_id}/shares")):
        for headers in ({}, bearer(token), {"Cookie": f"triage_session={token}"}):
            response = client.request(method, path, headers=headers, json={} if method == "POST" else None)
            assert response.status_code == 401, (method, path, headers)
    assert client.get(f"/share/{token}/studies").status_code == 404
    assert client.get(f"/share/{token}/study/{other}").status_code == 404
    for method in ("POST", "PUT", "DELETE"):  # nothing is written through a link
        assert client.request(method, f"/share/{token}/study", json={}).status_code == 405
    assert client.post(f"/share/{token}/study/reprocess", json={}).status_code in (404, 405)
    with sqlite3.connect(data_dir / "triage.db") as db:
        assert db.execute("SELECT max(generation) FROM jobs").fetchone()[0] == 1  # no re-run queued
    other_token = token_of(make_link(client, analysed, study_id=other))
    assert client.get(f"/share/{other_token}/study").json()["series_uid"] == analysed.ncct_uid


def test_expired_revoked_and_unknown_links_are_refused(api, analysed):
    client, data_dir = api
    expiring, revoked = make_link(client, analysed), make_link(client, analysed)
    assert client.get(f"/share/{token_of(expiring)}/study").status_code == 200
    with sqlite3.connect(data_dir / "triage.db") as db:
        db.execute("UPDATE share_links SET expires_at = ? WHERE id = ?", (time.time() - 1, expiring["id"]))
    refused = client.get(f"/share/{token_of(expiring)}/study/maps/cbf/3.png")
    assert refused.status_code == 410 and "expired" in refused.json()["detail"]
    page = client.get(f"/share/{token_of(expiring)}")
    assert page.status_code == 410 and "has expired" in page.text and "Research use only" in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"

    url = f"/api/studies/{analysed.study_id}/shares/{revoked['id']}"
    assert client.delete(url, headers=bearer(analysed.viewer_token)).status_code == 403
    assert client.delete(f"/api/studies/{safe_name(analysed.ncct_uid)}/shares/{revoked['id']}",
                         headers=bearer(analysed.admin_token)).status_code == 404  # not that study's link
    answer = client.delete(url, headers=bearer(analysed.admin_token))
    assert answer.status_code == 200 and (answer.json()["state"], answer.json()["revoked_by"]) == ("revoked", "ada")
    first = answer.json()["revoked_at"]
    assert client.delete(url, headers=bearer(analysed.admin_token)).json()["revoked_at"] == first
    refused = client.get(f"/share/{token_of(revoked)}/study")
    assert refused.status_code == 410 and "revoked" in refused.json()["detail"]
    assert "was revoked" in client.get(f"/share/{token_of(revoked)}").text

    for token in ("A" * 43, token_of(revoked)[:-1] + "x", "short", "a%2Fb"):
        assert client.get(f"/share/{token}/study").status_code == 404, token
    unknown = client.get("/share/" + "B" * 43)
    assert unknown.status_code == 404 and "not known" in unknown.text
    states = {e["id"]: e["state"] for e in client.get(f"/api/studies/{analysed.study_id}/shares",
                                                      headers=bearer(analysed.admin_token)).json()["links"]}
    assert states == {expiring["id"]: "expired", revoked["id"]: "revoked"}
    assert [r["action"] for r in share_rows(data_dir, "audit") if r["action"].startswith("share_")] == [
        "share_create", "share_create", "share_revoke"]


def test_every_use_is_audited_and_no_token_is_logged(api, analysed, caplog):
    client, data_dir = api
    with caplog.at_level(logging.INFO, logger="triage.web"):
        link = make_link(client, analysed)
        token = token_of(link)
        for path in ("", "/study", "/study/maps/cbv/2.png?generation=1", "/study/summary.png"):
            assert client.get(f"/share/{token}{path}").status_code == 200
        client.delete(f"/api/studies/{analysed.study_id}/shares/{link['id']}", headers=bearer(analysed.admin_token))
        assert client.get(f"/share/{token}/study").status_code == 410
        assert client.get("/share/" + "C" * 43 + "/study").status_code == 404
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"share link {link['id']}" in line for line in lines), lines
    assert not any(token in line for line in lines)

    assert client.get("/api/audit/shares", headers=bearer(analysed.viewer_token)).status_code == 403
    uses = client.get("/api/audit/shares", headers=bearer(analysed.admin_token)).json()["uses"]
    assert [(u["link_id"], u["study_id"], u["what"], u["outcome"]) for u in reversed(uses)] == [
        (link["id"], analysed.study_id, "page", "read"),
        (link["id"], analysed.study_id, "study", "read"),
        (link["id"], analysed.study_id, "study/maps/cbv/2.png?generation=1", "read"),
        (link["id"], analysed.study_id, "study/summary.png", "read"),
        (link["id"], analysed.study_id, "study", "revoked"),
        (None, None, "study", "unknown")]
    assert {u["client"] for u in uses} == {"127.0.0.1"} and all(u["at"] <= time.time() for u in uses)
    one = client.get("/api/audit/shares", params={"link": link["id"], "limit": 2},
                     headers=bearer(analysed.admin_token)).json()["uses"]
    assert [u["outcome"] for u in one] == ["revoked", "read"]
    (listed,) = client.get(f"/api/studies/{analysed.study_id}/shares", headers=bearer(analysed.admin_token)).json()["links"]
    assert listed["uses"] == 4 and listed["last_used_at"] == uses[2]["at"]
    stored = [tuple(row) for table in ("share_uses", "share_links", "audit") for row in share_rows(data_dir, table)]
    assert len(stored) > 8 and not any(token in str(value) for row in stored for value in row)
