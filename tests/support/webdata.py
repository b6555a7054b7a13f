"""For the web API and viewer tests: a node data directory holding one analysed phantom series, and
the API served by a real uvicorn on a free loopback port; a parser of the metrics text.

The data directory is what a node leaves behind: ``triage.db`` with the instances, the series
(the perfusion series analysed, the NCCT series of the same study ignored) and the analysis job
done, and ``results/<id>/1/`` written by a real ``triage analyze`` of the phantom. Accounts:
``ADMIN`` and ``VIEWER`` (name, password), each with an API token.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pydicom

from dicom_node.completion import OTHER
from dicom_node.instance import instance_info
from sample_data.dicom_writer import DicomVariant
from sample_data.phantom import CASES, Phantom, PhantomConfig, make_phantom, write_dicom
from tests.support import peers
from triage.base.names import safe_name
from triage.cli import main as triage_main
from triage.store.jobs import JobStore
from triage.web.accounts import Accounts
from triage.web.app import create_app
from triage.web.server import WebServer

SMALL = replace(CASES["mismatch"], matrix=128, n_slices=8, n_frames=25)
ADMIN = ("ada", "admin-password-1")
VIEWER = ("vic", "viewer-password-1")


@dataclass
class AnalysedData:
    """The data directory, its perfusion series (``study_id = safe_name(series_uid)``), the
    ignored NCCT series, the phantom (with its truth) and the two users' API tokens."""

    data_dir: Path
    series_uid: str
    study_id: str
    ncct_uid: str
    phantom: Phantom
    admin_token: str
    viewer_token: str

    def result_dir(self, generation: int = 1) -> Path:
        return self.data_dir / "results" / self.study_id / str(generation)


def make_analysed_data(root: Path, config: PhantomConfig = SMALL) -> AnalysedData:
    """The phantom (``SMALL``: 128 x 128 x 8 slices x 25 frames; and an NCCT) in ``root/dicom``,
    analysed into the data directory ``root/data`` (about 3 s)."""
    phantom = make_phantom(config)
    paths = write_dicom(phantom, root / "dicom", variant=DicomVariant(extra_series=True))
    uids = {path.parent.name: str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
            for path in (paths[0], paths[-1])}
    data_dir = root / "data"
    store = JobStore(data_dir / "triage.db")
    try:
        for path in paths:
            store.record_instance(instance_info(pydicom.dcmread(path, stop_before_pixels=True), path, "CT1"))
        store.set_series_state(uids["ncct"], "ignored", classification=OTHER, reason="not a perfusion series")
        ctp = uids["perfusion"]
        store.start_generation(ctp, reason="complete", n_positions=config.n_slices, n_times=config.n_frames,
                               unchanged_since=time.time())
        job = store.claim_job("analyse")
        out = data_dir / "results" / safe_name(ctp) / "1"
        status = triage_main(["analyze", str(root / "dicom" / "perfusion"), "--out", str(out), "--series",
                              ctp, "--quiet"])
        assert status == 0 and store.finish_job(job.id)
    finally:
        store.close()
    accounts = Accounts.open(data_dir / "triage.db")
    try:
        tokens = {}
        for (name, password), role in ((ADMIN, "admin"), (VIEWER, "viewer")):
            accounts.add_user(name, role, password)
            tokens[role] = accounts.new_token(name)
    finally:
        accounts.close()
    return AnalysedData(data_dir, ctp, safe_name(ctp), uids["ncct"], phantom, tokens["admin"], tokens["viewer"])


@contextmanager
def serve_api(data_dir: Path, **options):
    """The API over ``data_dir`` (and :func:`~triage.web.app.create_app`'s keyword ``options``)
    on a free 127.0.0.1 port, in a thread of this process; yields ``(base_url, app, store)``."""
    store = JobStore(data_dir / "triage.db")
    app = create_app(data_dir, store, **options)
    server = WebServer(app, "127.0.0.1", peers.free_port())
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", app, store
    finally:
        server.stop()
        store.close()


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Samples of a Prometheus text exposition: (name, labels) -> value; every metric family
    has HELP and TYPE lines before its samples."""
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        match = re.fullmatch(r'([a-z_]+)(?:\{(.*)\})? (\S+)', line)
        assert match, line
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, line
        pairs = frozenset(re.findall(r'(\w+)="([^"]*)"', labels or ""))
        samples[(name, pairs)] = float(value)
    return samples
