"""The result pictures as RGB Secondary Capture images (highdicom ``SCImage``), one series each.

``summary.png`` (core and Tmax > 6 s over the slices, volumes and decision) and every picture
``images/<name>.png`` that ``result.json`` lists as ``<name>_image`` (the colour maps with their
colour bars, and the AIF/VOF check) become one single-image series in the source study, with a
Series Description a radiologist recognises ("CTP summary: core + Tmax>6s (research use)").

The pixels are the PNG's, 8-bit RGB, compressed losslessly with RLE (RLE Lossless: decoded by
every DICOM toolkit, PACS and viewer; a 2237 x 1440 summary shrinks from 9.7 MB to about 4 MB, a
result's seven pictures from 59 MB to 19 MB). A PACS that accepts only uncompressed transfer
syntaxes gets them decompressed by the sender (:mod:`dicom_node.scu`). JPEG-LS Lossless would
be 2.5 times smaller again, but not every PACS and viewer decodes it.

The text in the pictures is burned in (``BurnedInAnnotation = YES``) and names no patient
(``RecognizableVisualFeatures = NO``). Patient Orientation is that of the slices in the
picture: the montages are drawn in radiological convention (``triage.report.render``), the AIF panel as
stored.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from PIL import Image
from pydicom.uid import RLELossless

from triage.base.errors import InputError
from triage.dicom_out.common import RESEARCH_USE, ExportContext

DESCRIPTIONS = {
    "summary": "CTP summary: core + Tmax>6s (research use)",
    "cbf": "CTP CBF map mL/100g/min (research use)",
    "cbv": "CTP CBV map mL/100g (research use)",
    "mtt": "CTP MTT map s (research use)",
    "tmax": "CTP Tmax map s (research use)",
    "ttp": "CTP TTP map s (research use)",
    "aif": "CTP AIF/VOF check (research use)",
}
ORDER = tuple(DESCRIPTIONS)


def pictures(out_dir: Path, result: dict) -> list[tuple[str, Path]]:
    """``(name, path)`` of every picture to send, in reading order (summary first)."""
    outputs = result.get("outputs") or {}
    found = {"summary": outputs.get("summary", "summary.png")}
    found.update({key[: -len("_image")]: value for key, value in outputs.items() if key.endswith("_image")})
    unknown = sorted(set(found) - set(ORDER))
    if unknown:
        raise InputError(f"result.json lists pictures this export does not know: {', '.join(unknown)}")
    return [(name, out_dir / found[name]) for name in ORDER if name in found]


def read_rgb(path: Path) -> np.ndarray:
    """The picture at ``path`` as (rows, columns, 3) uint8 RGB."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read picture {path.name}: {exc}") from exc


def display_orientation(direction: tuple[float, ...], radiological: bool) -> tuple[str, str]:
    """Patient Orientation (toward the picture's right, toward its bottom) of a slice drawn from
    a grid with SimpleITK ``direction``: as stored, or mirrored into radiological convention
    (x toward patient left, y toward posterior) like ``triage.report.render`` does."""
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    letters = []
    for axis, wanted in ((0, "L"), (1, "P")):
        cosines = matrix[:, axis]
        k = int(np.argmax(np.abs(cosines)))
        high = ("LPS"[k] if cosines[k] > 0 else "RAI"[k])
        pair = {"LPS"[k], "RAI"[k]}
        letters.append(wanted if radiological and wanted in pair else high)
    return letters[0], letters[1]


def secondary_captures(out_dir: Path, result: dict, context: ExportContext,
                       direction: tuple[float, ...]) -> list[tuple[str, hd.sc.SCImage]]:
    """One ``(name, SCImage)`` per picture of ``out_dir``; ``direction`` is the maps' grid."""
    images = []
    for name, path in pictures(out_dir, result):
        series_uid, series_number = context.series(name)
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=context.reference,
            pixel_array=read_rgb(path),
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            patient_orientation=display_orientation(direction, radiological=name != "aif"),
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=context.uid("instance", name),
            instance_number=1,
            transfer_syntax_uid=RLELossless,
            **context.equipment(DESCRIPTIONS[name]),
        )
        image.copy_patient_and_study_information(context.reference)
        image.BurnedInAnnotation = "YES"
        image.RecognizableVisualFeatures = "NO"
        image.ImageComments = RESEARCH_USE
        image.BodyPartExamined = "HEAD"   # an unpaired part: no Laterality
        images.append((name, image))
    return images
