"""A corpus of hostile DICOM input, written at test time (no committed binaries).

Each entry of :data:`CASES` is a function ``make(root) -> list[Path]`` that writes its files
under ``root`` and returns them: damaged or lying files a scanner export, a misconfigured
modality or an attacker could send. The files that still have a valid file meta group can be
sent over DICOM as they are (pynetdicom sends a file's dataset bytes without decoding them).

The tests feed them to ``triage analyze`` (tests/test_hostile.py) and to the node's SCP
(tests/test_hostile_node.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import RLELossless, generate_uid

from tests.support.dicom_factory import ct_instance, slice_positions, write_perfusion_series

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"


def good_series(root: Path, frames: int = 4, series_uid: str | None = None):
    """A small valid perfusion series (``frames`` x 2 slices of 16 x 16): paths, UIDs, series UID."""
    hu = np.full((frames, 2, 16, 16), 30, np.int16)
    return write_perfusion_series(root, hu, np.arange(frames) * 1.5, study_uid=STUDY_UID,
                                  series_uid=series_uid)


def _one(root: Path, name: str = "hostile.dcm", rows: int = 16, **kwargs) -> Path:
    kwargs.setdefault("study_uid", STUDY_UID)
    kwargs.setdefault("series_uid", generate_uid())
    kwargs.setdefault("position", (0.0, 0.0, 0.0))
    kwargs.setdefault("time_s", 36000.0)
    return ct_instance(root / name, np.zeros((rows, rows), np.int16), **kwargs)


def _rewrite(path: Path, change) -> Path:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)
    return path


def truncated_mid_header(root: Path) -> list[Path]:
    path = _one(root)
    data = path.read_bytes()
    offset = data.index(b"\x08\x00\x60\x00")          # Modality: the UIDs come before it
    path.write_bytes(data[:offset + 5])
    return [path]


def truncated_mid_pixels(root: Path) -> list[Path]:
    """A perfusion series one of whose files ends half-way through its pixel data."""
    paths, _, _ = good_series(root)
    data = paths[5].read_bytes()
    paths[5].write_bytes(data[:len(data) - 256])
    return paths


def garbage(root: Path) -> list[Path]:
    """Random bytes, and a DICM preamble followed by garbage."""
    rng = np.random.default_rng(15)
    root.mkdir(parents=True, exist_ok=True)
    noise = root / "noise.dcm"
    noise.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    preamble = root / "preamble.dcm"
    preamble.write_bytes(bytes(128) + b"DICM" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return [noise, preamble]


def _perfusion_grid(root: Path, change) -> list[Path]:
    """A :func:`good_series` whose every image is then rewritten by ``change(ds)``."""
    paths, _, _ = good_series(root)
    return [_rewrite(path, change) for path in paths]


def huge_matrix(root: Path) -> list[Path]:
    """A perfusion series of Rows = Columns = 65535 (8 GiB of 16-bit pixels per image) with
    512 bytes of pixel data each."""
    def change(ds):
        ds.Rows = ds.Columns = 65535
        ds.PixelData = bytes(512)
    return _perfusion_grid(root, change)


def rle_bomb(root: Path) -> list[Path]:
    """A perfusion series of RLE Lossless images of 4096 x 4096 zeros claiming 200 frames
    each: 6.4 GiB decoded from 512 KiB (an RLE run of two bytes repeats a byte 128 times)."""
    rows = 4096
    run = b"\x81\x00" * (rows * rows // 128)          # -127: repeat the next byte 128 times
    header = np.zeros(16, "<u4")
    header[:3] = (2, 64, 64 + len(run))
    frame = header.tobytes() + run + run

    def change(ds):
        ds.Rows = ds.Columns = rows
        ds.NumberOfFrames = 200
        ds.PixelData = encapsulate([frame] * 2)
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = RLELossless
    return _perfusion_grid(root, change)


def wrong_vrs(root: Path) -> list[Path]:
    """Rows written as text where US is expected; an odd-length, non-numeric DS."""
    path = _one(root)
    data = bytearray(path.read_bytes())
    rows = data.index(b"\x28\x00\x10\x00US")
    data[rows + 4:rows + 10] = b"CS\x02\x00AB"             # (0028,0010) CS "AB"
    path.write_bytes(bytes(data))

    odd = _one(root, name="odd.dcm")

    def change(ds):
        for tag, vr, value in ((0x00180050, "DS", b"x.y"), (0x00200032, "DS", b"1\\a\\b\\"),
                               (0x00080032, "TM", b"9x"), (0x00280030, "DS", b"-1\\0")):
            ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
    return [path, _rewrite(odd, change)]


def deep_sequence(root: Path, depth: int = 500) -> list[Path]:
    """ContentSequence items nested ``depth`` deep (undefined lengths), spliced in as bytes:
    pydicom itself cannot write that deep."""
    path = _one(root)
    opening = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    blob = opening * depth + b"\x08\x00\x00\x01SH\x02\x00X " + closing * depth
    data = path.read_bytes()
    at = data.rindex(b"\xe0\x7f\x10\x00")
    path.write_bytes(data[:at] + blob + data[at:])
    return [path]


def bad_uids(root: Path) -> list[Path]:
    """A SOP Instance UID with non-ASCII characters and a Series Instance UID of 100 digits."""
    non_ascii = _one(root, name="non_ascii.dcm", sop_uid="1.2.3.\u00e9\u00e8.4")
    long_series = "1." + "2" * 98
    over_long = _one(root, name="over_long.dcm", series_uid=long_series,
                     sop_uid="1.2.3." + "9" * 80)
    return [non_ascii, over_long]


def mixed_geometry(root: Path) -> list[Path]:
    """One perfusion series whose last images differ: other Rows, orientation, pixel spacing."""
    paths, _, series_uid = good_series(root)
    position = slice_positions(2)[0]
    odd = [
        _one(root, "rows.dcm", rows=20, series_uid=series_uid, position=position, time_s=36100.0),
        _one(root, "tilted.dcm", series_uid=series_uid, position=position, time_s=36101.0,
             orientation=(1.0, 0.0, 0.0, 0.0, 0.8, -0.6)),
        _one(root, "spacing.dcm", series_uid=series_uid, position=position, time_s=36102.0,
             pixel_spacing=(0.7, 0.7)),
    ]
    return paths + odd


def lying_frame_count(root: Path) -> list[Path]:
    """A perfusion series one of whose images says it has 1000 frames but holds one."""
    paths, _, _ = good_series(root)
    _rewrite(paths[3], lambda ds: setattr(ds, "NumberOfFrames", 1000))
    return paths


def missing_meta(root: Path) -> list[Path]:
    """No file meta and no preamble (a bare dataset), and one whose meta lacks the syntax."""
    bare = _one(root, name="bare.dcm")
    ds = pydicom.dcmread(bare)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.save_as(bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    data = bare.read_bytes()
    bare.write_bytes(data[data.index(b"\x08\x00"):] if data[128:132] == b"DICM" else data)

    no_syntax = _one(root, name="no_syntax.dcm")
    data = bytearray(no_syntax.read_bytes())
    at = data.index(b"\x02\x00\x10\x00UI")                  # (0002,0010) becomes (0002,0013)
    data[at + 2] = 0x13
    no_syntax.write_bytes(bytes(data))
    return [bare, no_syntax]


def many_series(root: Path, n: int = 3000) -> list[Path]:
    """``n`` single-instance series in one study (one CT slice each)."""
    first = _one(root, name="s00000.dcm", rows=4)
    template = pydicom.dcmread(first)
    paths = [first]
    for index in range(1, n):
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.SeriesInstanceUID = generate_uid()
        path = root / f"s{index:05d}.dcm"
        template.save_as(path)
        paths.append(path)
    return paths


CASES = {
    "truncated_mid_header": truncated_mid_header,
    "truncated_mid_pixels": truncated_mid_pixels,
    "garbage": garbage,
    "huge_matrix": huge_matrix,
    "rle_bomb": rle_bomb,
    "wrong_vrs": wrong_vrs,
    "deep_sequence": deep_sequence,
    "bad_uids": bad_uids,
    "mixed_geometry": mixed_geometry,
    "lying_frame_count": lying_frame_count,
    "missing_meta": missing_meta,
    "many_series": many_series,
}
