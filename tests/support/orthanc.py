"""A real Orthanc (Debian package ``orthanc``) playing the hospital PACS in tests and benchmarks.

:func:`orthanc` starts ``/usr/sbin/Orthanc`` as a child process with a configuration of its own
under a temporary directory: database and storage there, free loopback HTTP and DICOM ports, AE
title ``ORTHANC``, no remote access, no authentication, no plugins, and the DICOM modalities it
may send to. On request: Debian's ``orthanc-dicomweb`` plugin (DICOMweb at ``/dicom-web``) and
HTTP Basic authentication (for https, put :func:`tests.support.tls_proxy.tls_proxy` in front:
Debian's Orthanc 1.10 crashes on its first https request). It yields an :class:`Orthanc` once
``GET /system`` answers and stops the process by its id (SIGTERM, then SIGKILL) on exit. REST
calls use ``urllib`` from the standard library.

Orthanc runs with ``--verbose``: its log holds one line per C-STORE it serves, which is how a
duplicate delivery is seen (Orthanc keeps one copy per SOP Instance UID and answers success).
"""

from __future__ import annotations

import base64
import email.policy
import io
import json
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path
from typing import Iterator

import pydicom

from tests.support import peers

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")  # Debian's orthanc-dicomweb
DICOMWEB_ROOT = "/dicom-web"
AE_TITLE = "ORTHANC"
# Orthanc 1.10's verbose lines for a C-STORE or upload it keeps, and for one it already had.
STORED_LINE, ALREADY_STORED_LINE = "New instance stored", "Already stored"


class OrthancError(RuntimeError):
    """A REST call failed; the message holds the method, path, HTTP status and Orthanc's answer."""


@dataclass
class Orthanc:
    """A running Orthanc: REST at ``url``, C-STORE SCP at 127.0.0.1:``dicom_port``; the REST calls
    authenticate as ``user`` (name, password)."""

    url: str
    dicom_port: int
    log_path: Path
    process: subprocess.Popen
    aet: str = AE_TITLE
    user: tuple[str, str] | None = None

    def request(self, method: str, path: str, body: bytes | None = None, *,
                timeout: float = 60.0, accept: str = "") -> bytes:
        """The body of Orthanc's answer to ``method path``; :class:`OrthancError` otherwise."""
        return self._exchange(method, path, body, timeout, accept)[1]

    def _exchange(self, method: str, path: str, body: bytes | None, timeout: float,
                  accept: str) -> tuple[str, bytes]:
        """(Content-Type, body) of Orthanc's answer."""
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if accept:
            request.add_header("Accept", accept)
        if self.user:
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(self.user).encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.headers.get("Content-Type", ""), answer.read()
        except urllib.error.HTTPError as exc:
            detail = " ".join(exc.read().decode(errors="replace").split())
            raise OrthancError(f"{method} {path}: HTTP {exc.code}: {detail[:500]}") from None
        except OSError as exc:
            raise OrthancError(f"{method} {path}: {exc}") from None

    def get(self, path: str, *, timeout: float = 60.0):
        """``GET path`` decoded from JSON."""
        return json.loads(self.request("GET", path, timeout=timeout))

    def post(self, path: str, body, *, timeout: float = 60.0):
        """``POST path`` with ``body`` (bytes as they are, anything else as JSON), decoded."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return json.loads(self.request("POST", path, data, timeout=timeout))

    def upload(self, files: list[Path]) -> set[str]:
        """``POST /instances`` per file; the Orthanc ids of the studies they went into."""
        return {self.post("/instances", path.read_bytes())["ParentStudy"] for path in files}

    def send_to(self, modality: str, resources: list[str], *, timeout: float = 300.0) -> dict:
        """C-STORE ``resources`` (Orthanc ids) to a configured modality; returns when Orthanc's job
        has finished (``Synchronous``), its answer says how many instances went out."""
        return self.post(f"/modalities/{modality}/store", {"Resources": resources, "Synchronous": True},
                         timeout=timeout)

    def series(self, study_id: str) -> list[dict]:
        """The series of a study with their ``MainDicomTags`` and ``Instances`` (ids)."""
        return self.get(f"/studies/{study_id}/series")

    def instance_file(self, instance_id: str) -> bytes:
        """The stored DICOM file of an instance (Part 10 bytes)."""
        return self.request("GET", f"/instances/{instance_id}/file")

    def find(self, level: str, query: dict) -> list[str]:
        """Ids of the resources at ``level`` (``Series``, ``Instance``...) matching ``query``."""
        return self.post("/tools/find", {"Level": level, "Query": query})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb base URL (STOW-RS posts to ``<url>/studies``), with ``dicomweb=True``."""
        return self.url + DICOMWEB_ROOT

    def qido(self, path: str) -> list[pydicom.Dataset]:
        """QIDO-RS ``GET /dicom-web/<path>`` (e.g. ``studies/<uid>/series``): the matches."""
        body = self.request("GET", f"{DICOMWEB_ROOT}/{path}", accept="application/dicom+json")
        return [pydicom.Dataset.from_json(match) for match in json.loads(body or b"[]")]

    def wado(self, path: str) -> list[pydicom.Dataset]:
        """WADO-RS ``GET /dicom-web/<path>`` (e.g. ``studies/<uid>/series/<uid>/instances/<uid>``):
        the instances of the ``multipart/related`` answer."""
        content_type, body = self._exchange("GET", f"{DICOMWEB_ROOT}/{path}", None, 60.0,
                                            'multipart/related; type="application/dicom"')
        message = BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        return [pydicom.dcmread(io.BytesIO(part.get_payload(decode=True))) for part in message.iter_parts()]

    def stores(self) -> tuple[int, int]:
        """(instances stored new, instances received that Orthanc already had), uploads included."""
        log = self.log()
        return log.count(STORED_LINE), log.count(ALREADY_STORED_LINE)


def configuration(root: Path, http_port: int, dicom_port: int,
                  modalities: dict[str, tuple[str, str, int]], dicomweb: bool = False) -> dict:
    """Orthanc's JSON configuration: everything under ``root``, loopback only; with ``dicomweb``
    the DICOMweb plugin at ``DICOMWEB_ROOT`` (its WADO-URI off: QIDO-RS, STOW-RS and WADO-RS)."""
    config = {
        "Name": "test-pacs",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": AE_TITLE,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomModalities": {name: list(entry) for name, entry in modalities.items()},
        "DicomAlwaysAllowStore": True,   # as a PACS does for a known node: stores from any AE title
        "OverwriteInstances": False,     # a second copy of an instance is counted, not stored
        "SaveJobs": False,
        "Plugins": [],
    }
    if dicomweb:
        config["Plugins"] = [str(DICOMWEB_PLUGIN)]
        config["DicomWeb"] = {"Enable": True, "Root": DICOMWEB_ROOT + "/", "EnableWado": False}
    return config


@contextmanager
def orthanc(root: Path, *, modalities: dict[str, tuple[str, str, int]] | None = None,
            dicomweb: bool = False, http_port: int | None = None, users: dict[str, str] | None = None,
            timeout: float = 30.0) -> Iterator[Orthanc]:
    """Run Orthanc with its configuration, database and log (``orthanc.log``) under ``root``.

    ``modalities`` maps Orthanc's name of a DICOM peer to ``(AE title, host, port)``, e.g.
    ``{"triage": ("TRIAGE", "127.0.0.1", 11112)}`` for ``/modalities/triage/store``.
    ``dicomweb`` loads the DICOMweb plugin (:attr:`Orthanc.dicomweb_url`). ``http_port`` fixes
    the HTTP port (default a free one). ``users`` (name to password) turns on HTTP Basic
    authentication, the helper's own calls as the first user.
    """
    if not ORTHANC.exists():
        raise RuntimeError(f"{ORTHANC} is missing: run scripts/setup.sh (apt-get install orthanc)")
    if dicomweb and not DICOMWEB_PLUGIN.exists():
        raise RuntimeError(f"{DICOMWEB_PLUGIN} is missing: run scripts/setup.sh "
                           "(apt-get install orthanc-dicomweb)")
    root.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = http_port or peers.free_port(), peers.free_port()
    config = configuration(root, http_port, dicom_port, modalities or {}, dicomweb)
    if users:
        config.update(AuthenticationEnabled=True, RegisteredUsers=users)
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = root / "orthanc.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(ORTHANC), "--verbose", str(config_path)], cwd=root,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        server = Orthanc(f"http://127.0.0.1:{http_port}", dicom_port, log_path, process,
                         user=next(iter(users.items())) if users else None)
        _wait_until_ready(server, timeout)
        yield server
    finally:
        peers.stop_process(process, timeout=20)  # Orthanc takes a few seconds to stop


def _wait_until_ready(server: Orthanc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {server.process.returncode} before answering; "
                               f"log:\n{server.log()[-2000:]}")
        try:
            server.get("/system", timeout=2)
            return
        except OrthancError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Orthanc did not answer GET /system after {timeout} s") from None
            time.sleep(0.05)
