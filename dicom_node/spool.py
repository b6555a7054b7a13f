"""Durable spool of received instances: ``<root>/<study>/<series>/<sop>.dcm``.

Without a journal, each instance is written to ``<root>/.incoming/<random>.part``, flushed to
disk (``fsync``), renamed to its final name and its directory synced, so once
:meth:`Spool.store` returns the file survives a crash or power loss, and a reader never sees a
partial file under a final name.

With a journal (``journal_bytes``, :mod:`dicom_node.journal`), :meth:`Spool.store` returns once
the instance is in the journal (one write, one ``fdatasync``); a filing thread then writes it to
its final name the same way, without waiting for the disk, and syncs the filed files in
batches (when nothing arrived for ``IDLE_SYNC_S``, or the journal is 3/4 full) before their
journal slots are reused. A reader calls :meth:`Spool.wait_filed` first: it returns once every
instance stored so far is at its final name. After a crash, the journal's records that were not
synced yet are filed again when the spool is opened.

A second copy of an instance (same SOP Instance UID) atomically replaces the first, in the
order they were stored. Directory and file names come from :func:`safe_name`, so a UID from
the network can never point outside the spool. A series is removed (retention) only under
:meth:`Spool.removing`, which waits for every :meth:`Spool.writing` block (a store and its
recording) to end and for the filing to catch up, so an instance acknowledged to a sender is
never removed with the series it arrived for, nor filed again after it.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import struct
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from triage.base.durable import fsync_directory
from triage.base.names import safe_name

from .journal import Journal, JournalFull, Record

LOGGER = logging.getLogger("dicom_node.spool")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
INCOMING = ".incoming"
JOURNAL = ".journal"
IDLE_SYNC_S = 0.3          # filed files are synced once nothing was stored for this long
MAX_UNSYNCED = 4096        # ... or once this many wait
SYNC_FRACTION = 0.75       # ... or once the journal is this full
JOURNAL_WAIT_S = 10.0      # a store waits this long for free journal slots, then is refused
RETRY_S = 1.0              # a filing that failed (disk full, I/O error) is retried after this


class SpoolFull(Exception):
    """Not enough free space on the spool's file system (below the reserve, or ENOSPC/EDQUOT)."""


def _write_all(fd: int, parts: list[memoryview]) -> None:
    """Write ``parts`` in order with as few system calls as the kernel allows."""
    while parts:
        written = os.writev(fd, parts)
        if written == 0:
            raise OSError(errno.EIO, "write made no progress")
        while parts and written >= len(parts[0]):
            written -= len(parts.pop(0))
        if parts:
            parts[0] = parts[0][written:]


def _element(group_element: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element of the file meta group (``value`` even length)."""
    tag = struct.pack("<HH", group_element >> 16, group_element & 0xFFFF)
    if vr == b"OB":
        return tag + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def _text(value: str, pad: bytes) -> bytes:
    encoded = value.encode("ascii", "replace")
    return encoded + pad if len(encoded) % 2 else encoded


def encode_file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """The 128-byte preamble, ``DICM`` and the File Meta Information group (PS3.10 7.1) of a
    received instance; the implementation is pynetdicom, which received it. A non-ASCII
    character of a (malformed) UID is written as ``?``."""
    body = b"".join((
        _element(0x00020001, b"OB", b"\0\1"),
        _element(0x00020002, b"UI", _text(sop_class_uid, b"\0")),
        _element(0x00020003, b"UI", _text(sop_instance_uid, b"\0")),
        _element(0x00020010, b"UI", _text(transfer_syntax_uid, b"\0")),
        _element(0x00020012, b"UI", _text(PYNETDICOM_IMPLEMENTATION_UID, b"\0")),
        _element(0x00020013, b"SH", _text(PYNETDICOM_IMPLEMENTATION_VERSION, b" ")),
    ))
    group_length = _element(0x00020000, b"UL", struct.pack("<I", len(body)))
    return b"\0" * 128 + b"DICM" + group_length + body


class Spool:
    """Received instances on disk, written durably.

    Parameters
    ----------
    root : directory of the spool (created if missing).
    reserve_bytes : free space in bytes to leave on the file system; an instance that would
        cut into it is refused with :class:`SpoolFull`.
    journal_bytes : size of the write-ahead journal, ``<root>/.journal/ring`` (0: none, each
        instance is synced in its own file before :meth:`store` returns). The journal takes
        this much disk space. The records a journal holds from before a crash are filed here,
        also when it was made for another size (it is then made afresh) or is no longer wanted
        (it is then removed); OSError if they cannot be filed (they stay in it).

    :meth:`store` may be called from several threads at once. :meth:`close` ends the filing
    thread (after filing everything).
    """

    def __init__(self, root: Path, *, reserve_bytes: int = 0, journal_bytes: int = 0):
        self.root = Path(root)
        self.incoming = self.root / INCOMING
        self.reserve_bytes = int(reserve_bytes)
        self.incoming.mkdir(parents=True, exist_ok=True)
        fsync_directory(self.root.parent)          # a new spool's own entry
        self._synced_dirs: set[str] = {str(self.root)}
        self._gate = threading.Condition()
        self._writers = 0
        self._removing = False
        self._journal = self._filer = None
        ring = self.root / JOURNAL / "ring"
        if ring.exists() and (journal_bytes <= 0 or ring.stat().st_size != Journal.file_size(journal_bytes)):
            self._journal = Journal(ring, ring.stat().st_size)  # its own size: file what it holds
            self._file_recovered()
            self._journal.close()
            ring.unlink()
            self._journal = None
        if journal_bytes > 0:
            self._journal = Journal(ring, journal_bytes)
            self._file_recovered()
            self._filer = _Filer(self, self._journal)

    def _file_recovered(self) -> None:
        """File (synced) the journal's records left by the last run, oldest first; OSError
        (they stay in the journal) when that fails."""
        records = self._journal.recover()
        for record in records:
            relative = Path(record.relative_path)
            if relative.is_absolute() or ".." in relative.parts:
                continue                            # not a path the spool wrote
            try:
                self._write_file(self.root / relative, record.length,
                                    lambda fd, r=record: self._journal.copy_to(r, fd))
            except (OSError, SpoolFull) as error:
                raise OSError(f"cannot file the {len(records)} image(s) in the spool's journal "
                              f"{self._journal.path} ({error}); they stay there") from None
        if records:
            LOGGER.info("filed %d instance(s) from the journal of an earlier run", len(records))
        self._journal.reset(records[-1].sequence + 1 if records else 0)

    def close(self) -> None:
        """File and sync everything journaled, stop the filing thread, close the journal."""
        if self._filer is not None:
            try:
                self._filer.stop()
            except OSError as error:
                LOGGER.error("%s: they are filed from the journal at the next start", error)
            self._journal.close()
            self._filer = self._journal = None

    def wait_filed(self, timeout: float = 30.0) -> bool:
        """Wait until every instance stored so far is at its final name (at once without a
        journal); False if that took longer than ``timeout`` seconds (a filing is failing)."""
        return True if self._filer is None else self._filer.wait_filed(timeout)

    @contextmanager
    def writing(self):
        """Hold off :meth:`removing` while storing an instance and recording it (any number of
        threads at once)."""
        with self._gate:
            while self._removing:
                self._gate.wait()
            self._writers += 1
        try:
            yield
        finally:
            with self._gate:
                self._writers -= 1
                self._gate.notify_all()

    @contextmanager
    def removing(self):
        """Exclusive: waits for the :meth:`writing` blocks under way, holds off new ones."""
        with self._gate:
            while self._removing:
                self._gate.wait()
            self._removing = True
            while self._writers:
                self._gate.wait()
        try:
            if self._filer is not None:
                self._filer.flush()   # nothing of the series is filed (or re-filed) after it goes
            yield
        finally:
            with self._gate:
                self._removing = False
                self._gate.notify_all()

    def remove_series(self, study_uid: str, series_uid: str) -> tuple[int, int]:
        """Delete a series' folder (and its study's, once empty), durably; returns the number of
        files and bytes removed. Call it under :meth:`removing`."""
        series_dir = self.series_dir(study_uid, series_uid)
        files = [p for p in series_dir.glob("*") if p.is_file()] if series_dir.is_dir() else []
        size = sum(p.stat().st_size for p in files)
        shutil.rmtree(series_dir, ignore_errors=True)
        study_dir = series_dir.parent
        self._synced_dirs.discard(str(series_dir))
        if study_dir.is_dir() and not any(study_dir.iterdir()):
            study_dir.rmdir()
            self._synced_dirs.discard(str(study_dir))
            fsync_directory(self.root)
        elif study_dir.is_dir():
            fsync_directory(study_dir)
        return len(files), size

    def series_dir(self, study_uid: str, series_uid: str) -> Path:
        """The folder of a series' instances."""
        return self.root / safe_name(study_uid) / safe_name(series_uid)

    def path_for(self, study_uid: str, series_uid: str, sop_instance_uid: str) -> Path:
        """Where the instance with these UIDs is (or would be) stored."""
        return self.series_dir(study_uid, series_uid) / f"{safe_name(sop_instance_uid)}.dcm"

    def free_bytes(self) -> int:
        """Bytes available to this process on the spool's file system."""
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize

    def remove_partial_files(self) -> int:
        """Delete temporary files left by an interrupted write (never acknowledged); returns
        how many. Call it only while nothing is storing."""
        stale = list(self.incoming.glob("*.part"))
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def store(self, encoded_dataset, *, sop_class_uid: str, transfer_syntax_uid: str,
              study_uid: str, series_uid: str, sop_instance_uid: str) -> Path:
        """Write one instance durably and return its path.

        ``encoded_dataset`` is the dataset as received (bytes or any buffer, in
        ``transfer_syntax_uid``); it is written after the preamble and the file meta
        information, unchanged. Raises :class:`SpoolFull` when the write would leave less than
        ``reserve_bytes`` free or the file system runs out of space; no partial file is left in
        either case.
        """
        head = encode_file_meta(sop_class_uid, sop_instance_uid, transfer_syntax_uid)
        parts = [memoryview(head), memoryview(encoded_dataset)]
        size = sum(len(part) for part in parts)
        free = self.free_bytes()
        if free - size < self.reserve_bytes:
            raise SpoolFull(f"{free} bytes free, an instance of {size} bytes would cut into the "
                            f"reserve of {self.reserve_bytes} bytes")
        target = self.path_for(study_uid, series_uid, sop_instance_uid)
        if self._filer is None:
            self._write_file(target, size, lambda fd: _write_all(fd, parts))
        elif not self._journal.fits(size):
            self._filer.flush()                     # keep the order of copies of one instance
            self._write_file(target, size, lambda fd: _write_all(fd, parts))
        else:
            try:
                record = self._journal.append(str(target.relative_to(self.root)), parts,
                                              timeout=JOURNAL_WAIT_S)
            except JournalFull as error:
                raise SpoolFull(f"{error}: images are not being filed ({self._filer.problem()})") from None
            self._filer.put(record, target)
        return target

    def _file(self, record: Record, target: Path) -> None:
        """Put a journaled record at its final name, not synced (the filing thread's step)."""
        self._write_file(target, record.length, lambda fd: self._journal.copy_to(record, fd), sync=False)

    def _write_file(self, target: Path, size: int, write, *, sync: bool = True) -> None:
        """Write a file with ``write(fd)`` under a temporary name, rename it to ``target``, and
        with ``sync`` flush the file before the rename and its directory after; SpoolFull when
        the file system is full (no partial file left)."""
        temporary = self.incoming / f"{secrets.token_hex(12)}.part"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                write(fd)
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            self._make_durable_directories(target.parent)
            os.replace(temporary, target)
            if sync:
                fsync_directory(target.parent)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            if error.errno in _NO_SPACE:
                raise SpoolFull(f"{os.strerror(error.errno)} while writing {size} bytes") from None
            raise

    def _make_durable_directories(self, directory: Path) -> None:
        """Create ``directory`` and its parents up to the root, each one's entry synced to disk
        before it is used (once per directory per process)."""
        if str(directory) in self._synced_dirs:
            return
        self._make_durable_directories(directory.parent)
        try:
            directory.mkdir()
        except FileExistsError:
            pass
        fsync_directory(directory.parent)
        self._synced_dirs.add(str(directory))


class _Filer:
    """The thread that files a spool's journaled records, in the order they were stored, and
    syncs them in batches before releasing their journal slots."""

    def __init__(self, spool: Spool, journal: Journal):
        self._spool, self._journal = spool, journal
        self._cond = threading.Condition()
        self._queue: deque[tuple[Record, Path]] = deque()
        self._unsynced: list[tuple[int, Path]] = []
        self._queued = self._filed = 0
        self._flushing = self._stopping = False
        self._problem = ""
        self._thread = threading.Thread(target=self._run, name="spool-filing", daemon=True)
        self._thread.start()

    def put(self, record: Record, target: Path) -> None:
        with self._cond:
            self._queue.append((record, target))
            self._queued += 1
            self._cond.notify_all()

    def problem(self) -> str:
        return self._problem or "filing is behind"

    def wait_filed(self, timeout: float) -> bool:
        with self._cond:
            target = self._queued
            return self._cond.wait_for(lambda: self._filed >= target, timeout)

    def flush(self, timeout: float = JOURNAL_WAIT_S) -> None:
        """Return once everything put so far is filed and synced (its journal slots released);
        OSError after ``timeout`` seconds (a filing keeps failing)."""
        with self._cond:
            self._flushing = True
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: not self._queue and not self._unsynced
                                       and not self._flushing, timeout):
                raise OSError(f"journaled images not filed within {timeout:.0f} s ({self.problem()})")

    def stop(self) -> None:
        """Flush, then end the thread (what could not be filed stays in the journal)."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            self._thread.join(RETRY_S + 5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                # Woken by a put, a flush or a stop; else nothing arrived for IDLE_SYNC_S.
                self._cond.wait_for(lambda: self._queue or self._stopping or self._flushing, IDLE_SYNC_S)
                if self._stopping:
                    return
                item = self._queue[0] if self._queue else None
            if item is not None:
                if not self._file(*item):
                    time.sleep(RETRY_S)
                    continue
            if self._unsynced and (item is None or self._journal.used_fraction() > SYNC_FRACTION
                                   or len(self._unsynced) >= MAX_UNSYNCED or self._flushing):
                self._sync()
            with self._cond:
                if self._flushing and not self._queue and not self._unsynced:
                    self._flushing = False
                    self._cond.notify_all()

    def _file(self, record: Record, target: Path) -> bool:
        try:
            self._spool._file(record, target)
        except (OSError, SpoolFull) as error:   # SpoolFull: the disk is full
            self._problem = f"filing {target.name} failed: {getattr(error, 'strerror', None) or error}"
            LOGGER.error("%s; it stays in the journal, retried in %.0f s", self._problem, RETRY_S)
            return False
        self._problem = ""
        with self._cond:
            self._queue.popleft()
            self._unsynced.append((record.sequence, target))
            self._filed += 1
            self._cond.notify_all()
        return True

    def _sync(self) -> None:
        """Flush the filed files and their folders to disk, then release their journal slots."""
        batch = list(self._unsynced)
        try:
            for _, path in batch:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue                        # deleted by hand since: nothing to sync
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            for directory in {path.parent for _, path in batch}:
                fsync_directory(directory)
        except OSError as error:
            self._problem = f"syncing filed images failed: {error}"
            LOGGER.error("%s; they stay in the journal, retried in %.0f s", self._problem, RETRY_S)
            time.sleep(RETRY_S)
            return
        self._journal.release(sequence for sequence, _ in batch)
        with self._cond:
            del self._unsynced[:len(batch)]
            self._cond.notify_all()
