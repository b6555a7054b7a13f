"""Read a series' files as they arrive, so that its analysis starts with them in memory.

:class:`SeriesPrefetch` parses each file's header and decodes its planes (HU, block-averaged as
:func:`triage.imaging.assembly.assemble` will) when it is :meth:`~SeriesPrefetch.add`-ed. At
analysis time :meth:`~SeriesPrefetch.scan` lists the series directory, as
:func:`~triage.imaging.assembly.scan` would, and reuses what was read for every file that is
unchanged since (same inode, size and modification time: an instance received again is a new
file, renamed into place); files never added or changed are read then. Arrival order does not
matter, so the series assembled from a prefetch is the one a batch read of the directory gives,
to the bit.

:meth:`~SeriesPrefetch.work_ahead` runs the early stages (:mod:`triage.imaging.early`) on the
time points whole so far; the analysis takes from ``early`` only what matches its own frames.
"""

from __future__ import annotations

import os
from pathlib import Path

from triage.base.dicom_header import FileHeader
from triage.base.errors import InputError
from triage.imaging.assembly import (
    DecodedPlanes,
    ScanResult,
    decode_planes,
    leading_frames,
    read_file_header,
    reduction_factor,
    scan_headers,
)
from triage.imaging.early import EarlyStages


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    """(device, inode, size, mtime ns) of ``path``, None when it is gone."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


class SeriesPrefetch:
    """Headers and decoded planes of the files of one series directory, read as they arrive.

    ``max_matrix`` is the analysis setting of that name: planes are reduced as the assembly
    will reduce them (the factor of the first file read; a series whose files differ is read
    again at assembly, which then refuses it).
    """

    def __init__(self, directory: Path, max_matrix: int):
        self.directory = Path(directory)
        self.max_matrix = int(max_matrix)
        self._reads: dict[Path, tuple[tuple | None, FileHeader | str]] = {}
        self._decoded_keys: dict[Path, list[tuple[Path, int]]] = {}
        self.decoded: DecodedPlanes | None = None
        self.early = EarlyStages()

    def add(self, path: Path) -> None:
        """Read the header and the planes of ``path`` now (again if it changed since it was added)."""
        path = Path(path)
        identity = _identity(path)
        if path in self._reads and self._reads[path][0] == identity:
            return  # told twice of the same file
        read = read_file_header(path)
        self._forget(path)
        self._reads[path] = (identity, read)
        if not isinstance(read, FileHeader) or read.modality != "CT" or not read.planes or not read.planes[0].rows:
            return
        if self.decoded is None:
            self.decoded = DecodedPlanes(reduction_factor(read, self.max_matrix))
        try:
            planes = decode_planes(read, self.decoded.factor)
        except InputError:
            return  # the assembly reads it again and says why it cannot
        self.decoded.planes.update(planes)
        self._decoded_keys[path] = list(planes)

    def work_ahead(self) -> None:
        """Run the early stages on the time points whole among the files added so far."""
        if self.decoded is None:
            return
        headers = [self._reads[path][1] for path in self._decoded_keys]
        try:
            frames, geometry = leading_frames(headers, self.decoded)
        except InputError:
            return  # not yet (or never) whole time points: the analysis does it all
        self.early.offer(frames, geometry)

    def scan(self) -> ScanResult:
        """The directory as :func:`triage.imaging.assembly.scan` finds it, headers reused."""
        paths = sorted(Path(folder) / name for folder, _, names in os.walk(self.directory) for name in names)
        if not paths:
            raise InputError(f"no files in {self.directory}")
        reads = []
        for path in paths:
            known = self._reads.get(path)
            if known is None or known[0] != _identity(path):
                self._forget(path)
                known = (_identity(path), read_file_header(path))
                self._reads[path] = known
            reads.append(known[1])
        for gone in set(self._reads) - set(paths):
            self._forget(gone)
        return scan_headers(self.directory, paths, reads)

    @property
    def n_files(self) -> int:
        return len(self._reads)

    def _forget(self, path: Path) -> None:
        """Drop what was read of ``path``."""
        self._reads.pop(path, None)
        for key in self._decoded_keys.pop(path, ()):
            self.decoded.planes.pop(key, None)
