"""Durable spool of received instances: ``<root>/<study>/<series>/<sop>.dcm``.

Each instance is written to ``<root>/.incoming/<random>.part``, flushed to disk (``fsync``),
renamed to its final name and its directory synced, so once :meth:`Spool.store` returns the
file survives a crash or power loss, and a reader never sees a partial file under a final name.
A second copy of an instance (same SOP Instance UID) atomically replaces the first.

Directory and file names come from :func:`safe_name`, so a UID from the network can never
point outside the spool. A series is removed (retention) only under :meth:`Spool.removing`,
which waits for every :meth:`Spool.writing` block (a store and its recording) to end, so an
instance acknowledged to a sender is never removed with the series it arrived for.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import struct
import threading
from contextlib import contextmanager
from pathlib import Path

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from triage.base.durable import fsync_directory
from triage.base.names import safe_name

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
INCOMING = ".incoming"


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

    :meth:`store` may be called from several threads at once.
    """

    def __init__(self, root: Path, *, reserve_bytes: int = 0):
        self.root = Path(root)
        self.incoming = self.root / INCOMING
        self.reserve_bytes = int(reserve_bytes)
        self.incoming.mkdir(parents=True, exist_ok=True)
        fsync_directory(self.root.parent)          # a new spool's own entry
        self._synced_dirs: set[str] = {str(self.root)}
        self._gate = threading.Condition()
        self._writers = 0
        self._removing = False

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
        temporary = self.incoming / f"{secrets.token_hex(12)}.part"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                _write_all(fd, parts)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._make_durable_directories(target.parent)
            os.replace(temporary, target)
            fsync_directory(target.parent)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            if error.errno in _NO_SPACE:
                raise SpoolFull(f"{os.strerror(error.errno)} while writing {size} bytes") from None
            raise
        return target

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
