"""The spool's write-ahead journal: an instance is made durable with one write and one
``fdatasync``, and filed into the spool's folders afterwards.

The journal is one file of fixed size, filled with zeros when it is created, so that rewriting
it in place changes no file-system metadata and ``fdatasync`` flushes data only (on ext4 about
0.3 ms for a 512² CT image, against 2–3 ms to create, write and sync a file of its own; see
``benchmarks/bench_ingest.py``). It is used as a ring of ``SLOT`` -byte slots; a record takes
consecutive slots::

    header   magic b"TRJREC02", sequence number (u64), payload bytes (u64), XXH3-64 of the
             sequence number, path and payload (u64), path bytes (u16), little endian
    path     where the payload is filed, relative to the spool root (UTF-8)
    payload  the DICOM file as filed (preamble, file meta information, dataset)

Block 0 holds the checkpoint: the sequence number below which every record is filed and synced
(its slots may be reused). After a crash, :meth:`Journal.recover` scans every slot for records
at or above the checkpoint whose hash matches. A record torn by the crash was never
acknowledged (the acknowledgement waits for its ``fdatasync``): it fails the check and is
skipped. The hash is XXH3 (0.01 ms for a 512² image, against 0.14 ms for zlib's CRC-32): it
detects a torn record, it is no protection against deliberate tampering.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import xxhash

from triage.base.durable import fsync_directory

LOGGER = logging.getLogger("dicom_node.spool")
SLOT = 64 * 1024
PAGE = 4096
_HEADER = struct.Struct("<8sQQQH")
_MAGIC = b"TRJREC02"
_CHECKPOINT = struct.Struct("<8sQI")
_CHECKPOINT_MAGIC = b"TRJCKP01"
_ZEROS = bytes(1 << 20)


class JournalFull(Exception):
    """No free slots for a record within the wait (its older records are not filed yet)."""


@dataclass(frozen=True)
class Record:
    """One journaled instance: its sequence number, where it is filed (relative to the spool
    root), and where its payload is in the journal file (byte offset and length)."""

    sequence: int
    relative_path: str
    offset: int
    length: int


def _digest(sequence: int, relative: bytes, parts) -> int:
    digest = xxhash.xxh3_64(struct.pack("<Q", sequence))
    digest.update(relative)
    for part in parts:
        digest.update(part)
    return digest.intdigest()


class Journal:
    """The journal file at ``path``, ``size_bytes`` long (rounded down to whole slots, at least
    two), created (zero-filled and synced) if missing or of another size.

    :meth:`append` may be called from several threads at once. Records are released (their
    slots made reusable) with :meth:`release` once filed and synced, in any order: the
    checkpoint moves past the oldest record not yet released.
    """

    def __init__(self, path: Path, size_bytes: int):
        self.path = Path(path)
        self.slots = max(2, int(size_bytes) // SLOT - 1)
        self._base = SLOT                       # slot 0 starts after the checkpoint block
        size = self.file_size(size_bytes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existing = self.path.stat().st_size if self.path.exists() else None
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if existing != size:
            LOGGER.info("writing the spool journal %s (%d MiB of zeros, once)", self.path, size >> 20)
            self._zero_fill(size)
        self._checkpoint = self._read_checkpoint()
        self._lock = threading.Condition()
        self._next_sequence = self._checkpoint
        self._head = 0                          # next slot to allocate
        self._live: deque[list] = deque()       # [sequence (-1: skipped end), slots, released], oldest first
        self._free = self.slots

    @staticmethod
    def file_size(size_bytes: int) -> int:
        """The size in bytes of the journal file made for ``size_bytes``."""
        return SLOT + max(2, int(size_bytes) // SLOT - 1) * SLOT

    def _zero_fill(self, size: int) -> None:
        os.ftruncate(self._fd, 0)
        for offset in range(0, size, len(_ZEROS)):
            os.pwrite(self._fd, _ZEROS[:min(len(_ZEROS), size - offset)], offset)
        os.fsync(self._fd)
        fsync_directory(self.path.parent)          # the file's entry
        fsync_directory(self.path.parent.parent)   # its folder's entry (a new journal folder)

    def _read_checkpoint(self) -> int:
        magic, sequence, crc = _CHECKPOINT.unpack(os.pread(self._fd, _CHECKPOINT.size, 0))
        if magic == _CHECKPOINT_MAGIC and crc == zlib.crc32(struct.pack("<Q", sequence)):
            return sequence
        return 0

    def _write_checkpoint(self, sequence: int) -> None:
        os.pwrite(self._fd, _CHECKPOINT.pack(_CHECKPOINT_MAGIC, sequence,
                                             zlib.crc32(struct.pack("<Q", sequence))), 0)
        os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)

    # Recovery

    def recover(self) -> list[Record]:
        """The records at or above the checkpoint that are whole (hash right), in sequence
        order: those acknowledged but perhaps not filed before the last stop. Call it before
        any :meth:`append`; then file them and call :meth:`reset`."""
        found: dict[int, Record] = {}
        slot = 0
        while slot < self.slots:
            record = self._record_at(slot)
            if record is None:
                slot += 1
                continue
            if record.sequence >= self._checkpoint:
                found[record.sequence] = record
            slot += self._slots_for(record.offset + record.length - (self._base + slot * SLOT))
        return [found[sequence] for sequence in sorted(found)]

    def _record_at(self, slot: int) -> Record | None:
        start = self._base + slot * SLOT
        header = os.pread(self._fd, _HEADER.size, start)
        magic, sequence, length, digest, path_length = _HEADER.unpack(header)
        end = start + _HEADER.size + path_length + length
        if magic != _MAGIC or end > self._base + self.slots * SLOT:
            return None
        relative = os.pread(self._fd, path_length, start + _HEADER.size)
        payload = os.pread(self._fd, length, start + _HEADER.size + path_length)
        if len(payload) != length or _digest(sequence, relative, (payload,)) != digest:
            return None
        try:
            name = relative.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return Record(sequence, name, start + _HEADER.size + path_length, length)

    def reset(self, next_sequence: int) -> None:
        """Start afresh after recovery: every record below ``next_sequence`` is filed and
        synced, every slot free."""
        with self._lock:
            self._next_sequence = self._checkpoint = max(next_sequence, self._checkpoint)
            self._write_checkpoint(self._checkpoint)
            self._head, self._live, self._free = 0, deque(), self.slots

    # Writing

    def _slots_for(self, nbytes: int) -> int:
        return -(-nbytes // SLOT)

    def fits(self, nbytes: int) -> bool:
        """Whether a payload of ``nbytes`` (plus its header and a path) can ever be journaled."""
        return self._slots_for(nbytes + _HEADER.size + 1024) <= self.slots // 2

    def used_fraction(self) -> float:
        with self._lock:
            return 1.0 - self._free / self.slots

    def append(self, relative_path: str, parts: list, *, timeout: float) -> Record:
        """Write a record durably (one ``pwritev``, one ``fdatasync``) and return it. Waits up
        to ``timeout`` seconds for free slots, then raises :class:`JournalFull`. The caller
        checks :meth:`fits` first. On an OSError the record is released and the error raised."""
        relative = relative_path.encode("utf-8")
        length = sum(len(part) for part in parts)
        needed = self._slots_for(_HEADER.size + len(relative) + length)
        with self._lock:
            if not self._lock.wait_for(lambda: self._allocatable(needed), timeout):
                raise JournalFull(f"no {needed} free journal slots within {timeout:.0f} s")
            if self._head + needed > self.slots:      # skip the end: records never wrap
                self._free -= self.slots - self._head
                self._live.append([-1, self.slots - self._head, True])
                self._head = 0
            sequence, first = self._next_sequence, self._head
            self._next_sequence += 1
            self._head = (self._head + needed) % self.slots
            self._free -= needed
            self._live.append([sequence, needed, False])
        start = self._base + first * SLOT
        header = _HEADER.pack(_MAGIC, sequence, length, _digest(sequence, relative, parts), len(relative))
        used = len(header) + len(relative) + length
        padding = _ZEROS[:-used % PAGE]  # whole pages: the kernel need not read the last one first
        try:
            written = os.pwritev(self._fd, [header, relative, *parts, padding], start)
            if written != used + len(padding):
                raise OSError(f"short write to the journal ({written} bytes)")
            os.fdatasync(self._fd)
        except OSError:
            self.release([sequence])
            raise
        return Record(sequence, relative_path, start + len(header) + len(relative), length)

    def _allocatable(self, needed: int) -> bool:
        at_end = self.slots - self._head
        if needed <= at_end:
            return self._free >= needed
        return self._free >= at_end + needed      # the end is skipped, the record starts at 0

    def release(self, sequences) -> None:
        """Mark records filed and synced; the checkpoint moves past the oldest one released
        (written and synced when it moves)."""
        done = set(sequences)
        with self._lock:
            for entry in self._live:
                if entry[0] in done:
                    entry[2] = True
            moved = False
            while self._live and self._live[0][2]:
                sequence, slots, _ = self._live.popleft()
                self._free += slots
                if sequence >= 0:
                    self._checkpoint, moved = sequence + 1, True
            if moved:
                self._write_checkpoint(self._checkpoint)
            self._lock.notify_all()

    def copy_to(self, record: Record, fd: int) -> None:
        """Copy a record's payload to the file ``fd`` (in the kernel where it can)."""
        done = 0
        while done < record.length:
            try:
                copied = os.copy_file_range(self._fd, fd, record.length - done, record.offset + done)
            except OSError:
                copied = os.write(fd, os.pread(self._fd, min(1 << 20, record.length - done),
                                               record.offset + done))
            if copied == 0:
                raise OSError(f"journal record {record.sequence} ends early")
            done += copied
