"""The spool's write-ahead journal: filed as if written directly, in order, through wrap-around,
after a kill -9 before filing, with torn records left out, and refusing (not losing) when full."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

import dicom_node.spool as spool_module
from dicom_node.journal import SLOT, Journal
from dicom_node.spool import JOURNAL, Spool, SpoolFull

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20


def _store(spool: Spool, payload: bytes, sop: str, series: str = "1.3") -> Path:
    return spool.store(payload, sop_class_uid=CTImageStorage, transfer_syntax_uid=ExplicitVRLittleEndian,
                       study_uid="1.2", series_uid=series, sop_instance_uid=sop)


def _payloads(count: int, size: int = 300_000) -> list[bytes]:
    return [os.urandom(size) for _ in range(count)]


def test_journaled_files_are_byte_identical_to_directly_written_ones(tmp_path):
    payloads = _payloads(12)
    direct, journaled = Spool(tmp_path / "direct"), Spool(tmp_path / "journaled", journal_bytes=16 * MIB)
    try:
        for k, payload in enumerate(payloads):
            _store(direct, payload, f"1.4.{k}")
            _store(journaled, payload, f"1.4.{k}")
        assert journaled.wait_filed(10)
        for k in range(len(payloads)):
            relative = Path("1.2", "1.3", f"1.4.{k}.dcm")
            assert (tmp_path / "journaled" / relative).read_bytes() == (tmp_path / "direct" / relative).read_bytes()
        assert not any((tmp_path / "journaled" / ".incoming").iterdir())
    finally:
        journaled.close()


def test_the_ring_wraps_and_every_instance_is_filed_in_order(tmp_path):
    """60 instances of 300 kB through an 8 MiB journal (about 26 fit): slots are reused after the
    filed files are synced; a second copy of an instance, stored later, is the one kept."""
    spool = Spool(tmp_path / "spool", journal_bytes=8 * MIB)
    try:
        payloads = _payloads(60)
        for k, payload in enumerate(payloads):
            _store(spool, payload, f"1.4.{k % 40}")  # the last 20 are second copies of 0..19
        assert spool.wait_filed(10)
        for k in range(40):
            expected = payloads[k + 40] if k < 20 else payloads[k]
            assert (tmp_path / "spool/1.2/1.3" / f"1.4.{k}.dcm").read_bytes().endswith(expected)
        deadline = time.monotonic() + 5
        while spool._journal.used_fraction() > 0 and time.monotonic() < deadline:
            time.sleep(0.05)                  # synced once quiet: every slot free again
        assert spool._journal.used_fraction() == 0
    finally:
        spool.close()


def test_an_instance_too_big_for_the_journal_is_written_directly_after_the_earlier_copies(tmp_path):
    spool = Spool(tmp_path / "spool", journal_bytes=8 * MIB)
    try:
        small, big = os.urandom(100_000), os.urandom(5 * MIB)
        _store(spool, small, "1.4.1")
        path = _store(spool, big, "1.4.1")    # more than half the ring
        assert path.read_bytes().endswith(big)  # at once: written directly, after the journaled copy
        assert spool.wait_filed(5) and path.read_bytes().endswith(big)
    finally:
        spool.close()


CRASHING_WRITER = textwrap.dedent("""
    import os, sys, threading
    from pathlib import Path
    import dicom_node.spool as spool_module
    from dicom_node.spool import Spool
    spool_module.Spool._file = lambda self, record, target: threading.Event().wait()  # never files
    spool = Spool(Path(sys.argv[1]), journal_bytes=8 << 20)
    for k in range(int(sys.argv[2])):
        payload = bytes([k]) * 200_000
        spool.store(payload, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    transfer_syntax_uid="1.2.840.10008.1.2.1", study_uid="1.2", series_uid="1.3",
                    sop_instance_uid=f"1.4.{k}")
    print("stored", flush=True)
    threading.Event().wait()
""")


def _store_then_kill_9(root: Path, count: int) -> None:
    """``count`` instances stored (acknowledged) into a journaled spool at ``root`` whose
    filing never runs, then the process killed -9."""
    writer = subprocess.Popen([sys.executable, "-c", CRASHING_WRITER, str(root), str(count)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "stored"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(10)


def test_instances_journaled_but_not_filed_before_a_kill_9_are_filed_at_the_next_open(tmp_path, caplog):
    root = tmp_path / "spool"
    _store_then_kill_9(root, 20)
    assert not list(root.rglob("*.dcm"))     # acknowledged, in the journal only
    caplog.set_level("INFO", "dicom_node.spool")
    spool = Spool(root, journal_bytes=8 * MIB)
    spool.close()
    assert "filed 20 instance(s) from the journal" in caplog.text
    for k in range(20):
        assert (root / "1.2/1.3" / f"1.4.{k}.dcm").read_bytes().endswith(bytes([k]) * 200_000)
    caplog.clear()
    Spool(root, journal_bytes=8 * MIB).close()  # the checkpoint moved: nothing is filed again
    assert "from the journal" not in caplog.text


def test_a_torn_record_is_left_out_and_the_others_recovered(tmp_path):
    """A record whose bytes on disk are not all its own (a crash during its write, so never
    acknowledged) fails its hash; the records before and after it are recovered."""
    path = tmp_path / "ring"
    journal = Journal(path, 4 * MIB)
    records = [journal.append(f"1.2/1.3/1.4.{k}.dcm", [bytes([k + 1]) * 100_000], timeout=1) for k in range(3)]
    journal.close()
    with open(path, "r+b") as ring:
        ring.seek(records[1].offset + 50_000)
        ring.write(b"\0" * 4096)               # a page of the middle record still holds old data
    found = Journal(path, 4 * MIB).recover()
    assert [r.relative_path for r in found] == ["1.2/1.3/1.4.0.dcm", "1.2/1.3/1.4.2.dcm"]


def test_a_journal_of_another_size_is_made_afresh(tmp_path):
    path = tmp_path / "ring"
    Journal(path, 4 * MIB).close()
    assert path.stat().st_size == 4 * MIB
    Journal(path, 8 * MIB).close()
    assert path.stat().st_size == 8 * MIB and path.read_bytes().count(0) == 8 * MIB
    assert Journal(path, 3 * SLOT).slots == 2


def test_while_filing_fails_images_stay_journaled_then_a_full_journal_refuses(tmp_path, monkeypatch, caplog):
    """Filing hits ENOSPC: the spool keeps accepting while the journal has room (the images are
    durable there), then refuses with out of resources; once filing works again every accepted
    image is filed."""
    monkeypatch.setattr(spool_module, "JOURNAL_WAIT_S", 0.3)
    monkeypatch.setattr(spool_module, "RETRY_S", 0.1)
    filing = spool_module.Spool._file
    broken = {"on": True}

    def failing_file(self, record, target):
        if broken["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        filing(self, record, target)

    monkeypatch.setattr(spool_module.Spool, "_file", failing_file)
    spool = Spool(tmp_path / "spool", journal_bytes=8 * MIB)
    try:
        accepted = []
        with pytest.raises(SpoolFull, match="not being filed.*No space left"):
            for k, payload in enumerate(_payloads(40)):
                _store(spool, payload, f"1.4.{k}")
                accepted.append(payload)
        assert 20 <= len(accepted) < 40
        assert not spool.wait_filed(0.2)
        assert "stays in the journal" in caplog.text
        broken["on"] = False
        assert spool.wait_filed(10)
        for k, payload in enumerate(accepted):
            assert (tmp_path / "spool/1.2/1.3" / f"1.4.{k}.dcm").read_bytes().endswith(payload)
    finally:
        spool.close()


def test_a_removed_series_is_not_filed_again_after_a_restart(tmp_path):
    """Removing a series (retention) first files and syncs the journal, so its records are
    behind the checkpoint and a restart does not bring the series back."""
    root = tmp_path / "spool"
    spool = Spool(root, journal_bytes=8 * MIB)
    for k in range(5):
        _store(spool, os.urandom(100_000), f"1.4.{k}", series="1.3.9")
    with spool.removing():
        assert spool.remove_series("1.2", "1.3.9")[0] == 5
    spool._journal.close()                    # as if killed: no close() of the spool
    Spool(root, journal_bytes=8 * MIB).close()
    assert not (root / "1.2" / "1.3.9").exists()
    assert (root / JOURNAL / "ring").exists()


@pytest.mark.parametrize("new_size", [0, 16 * MIB])
def test_records_survive_a_change_of_journal_size_or_switching_it_off(tmp_path, new_size):
    """After a kill -9, the node restarted with another --spool-journal-mb (or 0): the old
    journal's records are filed first, then it is remade (or removed)."""
    root = tmp_path / "spool"
    _store_then_kill_9(root, 6)
    Spool(root, journal_bytes=new_size).close()
    for k in range(6):
        assert (root / "1.2/1.3" / f"1.4.{k}.dcm").read_bytes().endswith(bytes([k]) * 200_000)
    ring = root / JOURNAL / "ring"
    assert (ring.stat().st_size == Journal.file_size(new_size)) if new_size else not ring.exists()
