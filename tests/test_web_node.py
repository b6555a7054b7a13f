"""The web API in a real ``triage serve --http-port`` node: DCMTK storescu sends the phantom, the
node analyses it, an admin asks over HTTP for a re-run with a chosen AIF and profile, and
generation 2's result reports them. Users are made with the ``triage user`` command.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest

from sample_data.phantom import make_phantom, write_dicom
from tests.support import peers
from tests.support.node import ROOT, NodeProcess
from tests.support.webdata import ADMIN, SMALL, VIEWER, parse_metrics
from triage.base.names import safe_name


def triage(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "triage.cli", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    phantom = make_phantom(SMALL)
    return phantom, write_dicom(phantom, tmp_path_factory.mktemp("dicom"))


def test_user_command(tmp_path):
    data = str(tmp_path / "data")
    added = triage("user", "add", "ann", "--role", "viewer", "--data-dir", data, stdin="ann-password\n")
    assert added.returncode == 0 and added.stdout.strip() == "user ann added (viewer)"
    token = triage("user", "token", "ann", "--data-dir", data)
    assert token.returncode == 0 and len(token.stdout.strip()) >= 40
    listed = triage("user", "list", "--data-dir", data)
    assert listed.stdout.split("\t")[:2] == ["ann", "viewer"] and "1 token(s)" in listed.stdout
    for args, stdin, message in (
            (("add", "ann", "--role", "viewer"), "another-password\n", "error: user ann exists already"),
            (("add", "bob", "--role", "viewer"), "short\n", "error: the password must have at least 8"),
            (("add", "b/b", "--role", "admin"), "long-enough\n", "error: user name 'b/b'"),
            (("add", "bob", "--role", "boss"), "long-enough\n", "error: role 'boss': must be one of viewer, admin"),
            (("token", "zed"), "", "error: no user zed"),
            (("remove", "zed"), "", "error: no user zed")):
        run = triage("user", *args, "--data-dir", data, stdin=stdin)
        assert run.returncode == 2 and run.stderr.startswith(message) and "Traceback" not in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
    assert triage("user", "remove", "ann", "--data-dir", data).returncode == 0
    assert triage("user", "list", "--data-dir", data).stdout == ""
    missing = triage("user", "list", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no data directory" in missing.stderr


def test_reprocess_with_an_aif_location_in_a_running_node(phantom_files, tmp_path):
    phantom, files = phantom_files
    data = tmp_path / "node"
    for (name, password), role in ((ADMIN, "admin"), (VIEWER, "viewer")):
        assert triage("user", "add", name, "--role", role, "--data-dir", str(data), stdin=password + "\n").returncode == 0
    http_port = peers.free_port()
    node = NodeProcess(data, extra=("--http-port", str(http_port))).start()
    try:
        peers.wait_for_port(http_port, process=node.process)
        node.wait_for_log(rf"web API and viewer on http://127.0.0.1:{http_port}/")
        sent = peers.storescu(node.port, files, calling="CT1")
        assert sent.returncode == 0, sent.stderr[-2000:]
        node.wait_for_log(r"analysis of .* generation 1 finished")

        client = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30)
        assert client.get("/api/studies").status_code == 401
        assert client.post("/api/login", json={"username": ADMIN[0], "password": ADMIN[1]}).status_code == 200
        (study,) = client.get("/api/studies").json()["studies"]
        assert (study["status"], study["generation"]) == ("done", 1)
        first = client.get(f"/api/studies/{study['id']}").json()["result"]
        assert study["id"] == safe_name(first["series_uid"]) and not first["quality"]["aif"]["manual"]
        # an artery voxel of the phantom on another slice than the automatic choice
        auto_z = first["quality"]["aif"]["location"]["source_xyz"][2]
        z, y, x = (int(v) for v in next(a for a in phantom.truth.artery_voxels if a[0] != auto_z))
        response = client.post(f"/api/studies/{study['id']}/reprocess", json={"aif": [x, y, z], "profile": "rcbf38"},
                               headers={"X-CSRF-Token": client.cookies["triage_csrf"]})
        assert response.status_code == 202 and response.json() == {"generation": 2}
        node.wait_for_log(rf"user {ADMIN[0]} requested re-analysis of study {study['id']} as generation 2")
        node.wait_for_log(r"analysis of .* generation 2 finished")

        detail = client.get(f"/api/studies/{study['id']}").json()
        assert (detail["status"], detail["generation"]) == ("done", 2)
        aif = detail["result"]["quality"]["aif"]
        assert aif["location"]["source_xyz"] == [x, y, z] and aif["manual"] is True
        assert detail["result"]["profile"]["name"] == "rcbf38" != first["profile"]["name"]
        new = client.get(f"/api/studies/{study['id']}/maps/cbf/{z}.png")
        old = client.get(f"/api/studies/{study['id']}/maps/cbf/{z}.png", params={"generation": 1})
        assert new.status_code == old.status_code == 200 and new.headers["etag"] != old.headers["etag"]
        assert (node.result_dir(first["series_uid"], 2) / "result.json").is_file()

        metrics = parse_metrics(client.get("/metrics").text)
        done = frozenset({("kind", "analyse"), ("state", "done")})
        assert metrics[("triage_jobs", done)] == 2
        assert metrics[("triage_receive_to_result_seconds_count", frozenset())] == 1  # the re-run is not
        assert 0 < metrics[("triage_receive_to_result_seconds_sum", frozenset())] < 60

        # a second node cannot have the same HTTP port: one line, exit status 2
        other = triage("serve", "--data-dir", str(tmp_path / "other"), "--listen-address", "127.0.0.1",
                       "--dicom-port", str(peers.free_port()), "--allow-aet", "CT1", "--http-port", str(http_port),
                       "--spool-journal-mb", "8")
        assert other.returncode == 2 and "Traceback" not in other.stderr
        assert other.stderr.strip().splitlines()[-1] == (
            f"error: cannot listen for HTTP on 127.0.0.1:{http_port}: Address already in use")
    finally:
        assert node.stop() == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5)
    np.testing.assert_equal(node.log().count("Traceback"), 0)
