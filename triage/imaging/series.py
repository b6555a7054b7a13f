"""The 4D perfusion series as the pipeline passes it from stage to stage.

Conventions: see :mod:`triage.base.grid`. Attenuation is in HU as float32; times are seconds
(float64) from the first frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from triage.base.grid import Geometry


@dataclass
class PerfusionSeries:
    """One CT perfusion acquisition assembled into a 4D array.

    Attributes
    ----------
    data : ndarray, float32, shape (t, z, y, x)
        Attenuation in HU, rescale slope and intercept applied per instance.
    times : ndarray, float64, shape (t,)
        Acquisition time of each frame in s from the first frame, strictly increasing.
    geometry : Geometry
        Grid shared by every frame.
    study_uid, series_uid : str
        Study Instance UID and Series Instance UID of the source.
    patient_age : float or None
        Age in years from (0010,1010) Patient's Age when present.
    attributes : dict
        Other source identifiers worth keeping (PatientID, AccessionNumber, SeriesDescription, ...).
    acquisition_geometry : Geometry or None
        Grid of the source images when ``data`` was reduced in-plane for processing
        (None when ``geometry`` is the acquisition grid). Output maps are written on this grid.
    acquisition_shape : (z, y, x) or None
        Shape of the source grid, with ``acquisition_geometry``.
    warnings : list of str
        Things about the input the reader of the result must know (ignored files, time source, ...).
    frames_left_out : int
        Time points at the end of the acquisition left out because they lack slices (an aborted
        scan, analysed with ``assemble(..., drop_incomplete_end=True)``); 0 when none.
    """

    data: np.ndarray
    times: np.ndarray
    geometry: Geometry
    study_uid: str
    series_uid: str
    patient_age: float | None = None
    attributes: dict = field(default_factory=dict)
    acquisition_geometry: Geometry | None = None
    acquisition_shape: tuple[int, int, int] | None = None
    warnings: list[str] = field(default_factory=list)
    frames_left_out: int = 0

    @property
    def shape3d(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[1:])
