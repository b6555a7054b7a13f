"""The durable spool on real file systems: names, atomic replacement, reserve and a real ENOSPC."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicom_node.spool import INCOMING, Spool, SpoolFull
from tests.support.dicom_factory import ct_instance
from triage.base.names import safe_name

HOSTILE_UIDS = ["../../etc", "/etc/passwd", "..", ".", ".incoming", "1" * 65, "1.2.840.é",
                "1.2\0.3", "1..2", "", "a/b\\c", "1.2.3 4"]


def _encoded(path: Path) -> tuple[pydicom.Dataset, bytes]:
    """A file's dataset and its explicit VR little endian encoding without file meta."""
    ds = pydicom.dcmread(path)
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_dataset(out, ds)
    return ds, out.getvalue()


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "ct.dcm"
    ct_instance(path, np.arange(32 * 32, dtype=np.int16).reshape(32, 32), position=(0, 0, 0),
                time_s=36000.0, study_uid=generate_uid(), series_uid=generate_uid())
    return _encoded(path)


def _store(spool: Spool, encoded, study: str, series: str, sop: str) -> Path:
    return spool.store(encoded, sop_class_uid=CTImageStorage,
                       transfer_syntax_uid=ExplicitVRLittleEndian,
                       study_uid=study, series_uid=series, sop_instance_uid=sop)


def test_safe_name_keeps_plain_uids_and_hashes_the_rest():
    assert safe_name("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"
    assert safe_name("1.2.3\0") == "1.2.3"                       # DICOM padding
    names = [safe_name(uid) for uid in HOSTILE_UIDS]
    assert len(set(names)) == len(HOSTILE_UIDS)
    for name in names:
        assert name.startswith("h") and len(name) == 41 and name.isalnum(), name
    assert safe_name("../../etc") == "h" + hashlib.sha256(b"../../etc").hexdigest()[:40]  # stable across runs


def test_store_writes_a_part10_file_with_the_bytes_as_received(tmp_path, instance):
    ds, encoded = instance
    spool = Spool(tmp_path / "spool")
    path = _store(spool, encoded, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert path == tmp_path / "spool" / ds.StudyInstanceUID / ds.SeriesInstanceUID / \
        f"{ds.SOPInstanceUID}.dcm"
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM" and raw.endswith(encoded)
    stored = pydicom.dcmread(path)
    assert stored.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert stored.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert stored.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert np.array_equal(stored.pixel_array, ds.pixel_array)
    assert not any((tmp_path / "spool" / INCOMING).iterdir())


def test_a_duplicate_replaces_the_file(tmp_path, instance):
    ds, encoded = instance
    spool = Spool(tmp_path / "spool")
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    first = _store(spool, encoded, *uids)
    second = _store(spool, encoded + b"", *uids)
    assert first == second and second.read_bytes().endswith(encoded)
    assert len(list((tmp_path / "spool").rglob("*.dcm"))) == 1


def test_hostile_uids_stay_inside_the_spool(tmp_path, instance):
    _, encoded = instance
    root = tmp_path / "deep" / "spool"
    spool = Spool(root)
    for uid in HOSTILE_UIDS:
        path = _store(spool, encoded, uid, uid, uid)
        assert path.resolve().is_relative_to(root.resolve()), uid
        assert path.relative_to(root).parts[:2] == (safe_name(uid), safe_name(uid))
    assert len(list(root.rglob("*.dcm"))) == len(HOSTILE_UIDS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["spool"]


def test_concurrent_stores_into_a_new_series(tmp_path, instance):
    _, encoded = instance
    spool = Spool(tmp_path / "spool")
    study, series = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(16)]
    threads = [threading.Thread(target=_store, args=(spool, encoded, study, series, sop))
               for sop in sops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.stem for p in (tmp_path / "spool" / study / series).iterdir()) == sorted(sops)


def test_reserve_larger_than_free_space_refuses_and_leaves_nothing(tmp_path, instance):
    _, encoded = instance
    probe = Spool(tmp_path / "spool")
    spool = Spool(tmp_path / "spool", reserve_bytes=probe.free_bytes() + 10**9)
    with pytest.raises(SpoolFull, match="reserve"):
        _store(spool, encoded, "1.2", "1.3", "1.4")
    assert not list((tmp_path / "spool").rglob("*.dcm"))
    assert not any((tmp_path / "spool" / INCOMING).iterdir())


def test_remove_partial_files(tmp_path):
    spool = Spool(tmp_path / "spool")
    (spool.incoming / "abc.part").write_bytes(b"half an instance")
    assert spool.remove_partial_files() == 1
    assert not any(spool.incoming.iterdir())


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 4 MB ext2 file system without reserved blocks, loop-mounted (needs root)."""
    image, mount_point = tmp_path / "fs.img", tmp_path / "mnt"
    mount_point.mkdir()
    with image.open("wb") as f:
        f.truncate(4 * 1024 * 1024)
    subprocess.run(["mkfs.ext2", "-q", "-m", "0", "-F", str(image)], check=True,
                   capture_output=True)
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_enospc_during_the_write_raises_spool_full_and_removes_the_temporary(tiny_filesystem):
    spool = Spool(tiny_filesystem / "spool")
    # Fits by the free-space count, but ext2 also needs indirect blocks: ENOSPC mid-write.
    payload = os.urandom(spool.free_bytes() - 8192)
    with pytest.raises(SpoolFull, match="No space left"):
        _store(spool, payload, "1.2", "1.3", "1.4")
    assert not any(spool.incoming.iterdir())
    assert not list(spool.root.rglob("*.dcm"))
    # The space is back: a normal instance is stored afterwards.
    assert _store(spool, b"\x08\x00\x16\x00UI\x02\x001\0", "1.2", "1.3", "1.5").exists()



def test_removing_waits_for_the_writers_under_way(tmp_path):
    spool_events: list[str] = []
    spool = Spool(tmp_path / "spool")
    inside, release = threading.Event(), threading.Event()

    def writer():
        with spool.writing():
            inside.set()
            release.wait(5)
            spool_events.append("stored and recorded")

    def remover():
        with spool.removing():
            spool_events.append("removing")

    writing = threading.Thread(target=writer)
    writing.start()
    assert inside.wait(5)
    removing = threading.Thread(target=remover)
    removing.start()
    removing.join(0.3)
    assert removing.is_alive() and spool_events == []
    release.set()
    writing.join(5)
    removing.join(5)
    assert spool_events == ["stored and recorded", "removing"]


def test_removing_a_series_leaves_the_rest_and_the_spool_usable(tmp_path, instance):
    """The series' folder goes, and its study's once empty; other series stay; storing into a
    removed series again recreates its folders (the spool forgets that it had synced them)."""
    _, encoded = instance
    spool = Spool(tmp_path / "spool")
    kept = _store(spool, encoded, "1.2", "1.2.1", "1.2.1.1")
    other = _store(spool, encoded, "1.2", "1.2.2", "1.2.2.1")
    gone = [_store(spool, encoded, "1.3", "1.3.1", f"1.3.1.{k}") for k in range(3)]
    sizes, other_size = sum(p.stat().st_size for p in gone), other.stat().st_size
    with spool.removing():
        assert spool.remove_series("1.3", "1.3.1") == (3, sizes)
        assert spool.remove_series("1.2", "1.2.2") == (1, other_size)
    assert not gone[0].parent.parent.exists()          # study 1.3 had nothing else
    assert kept.exists() and not other.parent.exists()  # study 1.2 keeps series 1.2.1
    again = _store(spool, encoded, "1.3", "1.3.1", "1.3.1.0")
    assert again == gone[0] and again.exists()
