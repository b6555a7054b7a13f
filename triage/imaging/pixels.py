"""Pixel planes of the series' files, read into the 4D array.

:func:`read_stored_planes` reads the stored values of one file found by
:func:`triage.base.dicom_header.read_header`; :func:`block_mean_into` reduces a 512² plane to
the 256² processing matrix.
"""

from __future__ import annotations

import numpy as np
import pydicom

from triage.base.dicom_header import MAX_DECODED_BYTES, PIXEL_DATA_TAG, FileHeader
from triage.base.errors import InputError, one_line


def read_stored_planes(header: FileHeader, buffer: np.ndarray | None = None) -> np.ndarray:
    """Stored pixel values of every frame of a file as (frames, rows, cols), no rescale applied.

    Uncompressed little-endian 16-bit data is read straight from the offset found by
    :func:`read_header`; anything else (compressed transfer syntaxes included) is decoded by
    pydicom's pixel handlers. ``buffer`` (any dtype, enough bytes) is reused for the native
    read so that no memory is allocated per file; the result is then a view on it.

    Raises
    ------
    InputError
        The file cannot be read, has no pixel data, or its pixel data cannot be decoded
        (truncated, damaged, unsupported compression).
    """
    plane = header.planes[0]
    shape = (len(header.planes), plane.rows, plane.columns)
    try:
        pixels = _read_native(header, shape, buffer) if header.native_dtype else None
        if pixels is None:
            pixels = _read_with_pydicom(header)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read pixel data of {header.path.name} "
                         f"(truncated or damaged?): {one_line(exc)}") from exc
    return pixels.reshape((-1,) + pixels.shape[-2:])


def _read_native(header: FileHeader, shape: tuple[int, int, int],
                 buffer: np.ndarray | None) -> np.ndarray | None:
    """Pixel data read directly at ``header.pixel_offset``; None if the element is not there."""
    n_bytes = 2 * shape[0] * shape[1] * shape[2]
    with open(header.path, "rb") as stream:
        stream.seek(header.pixel_offset)
        element = stream.read(12 if header.explicit_vr else 8)
        if element[:4] != PIXEL_DATA_TAG:
            return None
        length = int.from_bytes(element[-4:], "little")
        if length == 0xFFFFFFFF or length < n_bytes:
            return None
        if buffer is None or buffer.nbytes < n_bytes:
            buffer = np.empty(n_bytes, dtype=np.uint8)
        raw = buffer.reshape(-1).view(np.uint8)[:n_bytes]
        n_read = stream.readinto(raw)
    if n_read < n_bytes:
        raise InputError(f"{header.path.name} is truncated: {n_read} of {n_bytes} pixel bytes")
    return raw.view(header.native_dtype).reshape(shape)


def _read_with_pydicom(header: FileHeader) -> np.ndarray:
    path = header.path
    ds = pydicom.dcmread(path, force=True)
    if "PixelData" not in ds:
        if path.stat().st_size > header.pixel_offset:
            raise InputError(f"pixel data of {path.name} cannot be parsed (truncated or "
                             "damaged?)")
        raise InputError(f"{path.name} has no pixel data")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise InputError(f"{path.name} is not a greyscale image")
    _check_decoded_size(ds, path.name)
    return ds.pixel_array


def _check_decoded_size(ds, name: str) -> None:
    """Refuse pixel data that would decode to more than ``MAX_DECODED_BYTES`` (a decompression
    bomb, a lying header) and uncompressed pixel data shorter than its header says, before
    anything is decoded or allocated."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    expected = ds.Rows * ds.Columns * max(frames, 1) * bits // 8
    if expected > MAX_DECODED_BYTES:
        raise InputError(f"pixel data of {name} would decode to {expected / 2**20:.0f} MiB "
                         f"({ds.Rows}x{ds.Columns}, {frames} frames): more than "
                         f"{MAX_DECODED_BYTES // 2**20} MiB per file is refused")
    if not ds.file_meta.TransferSyntaxUID.is_compressed and len(ds.PixelData) < expected:
        raise InputError(f"{name} is truncated: {len(ds.PixelData)} of {expected} pixel bytes")


def block_mean_into(image: np.ndarray, factor: int, out: np.ndarray,
                    scratch: np.ndarray | None = None) -> np.ndarray:
    """Write the mean over ``factor`` x ``factor`` blocks of a 2D ``image`` into ``out``.

    ``out`` (float32) has shape ``(rows // factor, cols // factor)``; trailing rows/columns
    that do not fill a block are dropped. ``scratch`` (float32, ``(rows', cols // factor)``
    with rows' = ``out.shape[0] * factor``) avoids allocating the column sums.
    """
    image = image[:out.shape[0] * factor, :out.shape[1] * factor]
    if factor == 1:
        out[...] = image
        return out
    if scratch is None:
        scratch = np.empty((image.shape[0], out.shape[1]), dtype=np.float32)
    np.add(image[:, 0::factor], image[:, 1::factor], out=scratch, dtype=np.float32)
    for k in range(2, factor):
        np.add(scratch, image[:, k::factor], out=scratch, dtype=np.float32)
    np.add(scratch[0::factor], scratch[1::factor], out=out)
    for k in range(2, factor):
        out += scratch[k::factor]
    out *= np.float32(1.0 / factor**2)
    return out
