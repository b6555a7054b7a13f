"""Reader of OSIPI's DSC reference curves (external truth, not made by this project) and the fit
of our models to them in OSIPI's convention.

The curves are an unchanged copy of the workplace's shared reference data, in
``tests/data/osipi-dsc/dsc_data.csv`` with its README and the Apache-2.0 licence of the OSIPI
DCE-DSC-MRI Code Collection; the environment variable ``TRIAGE_OSIPI_DSC`` (the CSV file, or the
directory holding ``dsc_data.csv``) reads another copy. A missing file is an error, not a
reason to skip.

Convention: OSIPI's CBV (mL/100 mL) is 100·∫C_t/∫C_a and its CBF (mL/100 mL/min) is 6000·F, with
no hematocrit or density factor, while ours include k_H/ρ (``models.base``):
CBF_osipi = CBF_ours · ρ/k_H, CBV_osipi = CBV_ours · ρ/k_H. The models are linear in the curves,
so the MR concentrations are passed unchanged. Used by ``tests/test_osipi_reference.py`` and
``benchmarks/bench_osipi.py``.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import make_model
from models.base import K_H, RHO_BRAIN

ENV_VAR = "TRIAGE_OSIPI_DSC"
CSV_NAME = "dsc_data.csv"
DEFAULT_CSV = Path(__file__).resolve().parents[1] / "data" / "osipi-dsc" / CSV_NAME
COLUMNS = ("label", "C_tis", "C_aif", "cbv", "cbf", "tr")
CT_TO_OSIPI = RHO_BRAIN / K_H  # our CBF/CBV (with k_H/ρ) -> OSIPI's (without)
TOLERANCE = 0.10  # OSIPI's relative tolerance for CBF and CBV


@dataclass(frozen=True)
class OsipiCase:
    """One reference case: tissue and arterial concentration curves with their truth.

    Attributes
    ----------
    label : str
    tissue, aif : ndarray, shape (t,)
        Concentrations (arbitrary units, the same for both).
    cbv : float
        True CBV, mL/100 mL.
    cbf : float
        True CBF, mL/100 mL/min.
    tr : float
        Sampling interval, s.
    """

    label: str
    tissue: np.ndarray
    aif: np.ndarray
    cbv: float
    cbf: float
    tr: float

    @property
    def times(self) -> np.ndarray:
        """Frame times, s from the first frame."""
        return self.tr * np.arange(self.aif.size)


def reference_csv() -> Path:
    """The CSV to read: ``$TRIAGE_OSIPI_DSC`` (file or directory) if set, else :data:`DEFAULT_CSV`."""
    override = os.environ.get(ENV_VAR)
    if not override:
        return DEFAULT_CSV
    path = Path(override).expanduser()
    return path / CSV_NAME if path.is_dir() else path


def read_cases(path: str | Path | None = None) -> list[OsipiCase]:
    """Read every case of the OSIPI DSC CSV (default: :func:`reference_csv`).

    Raises
    ------
    FileNotFoundError
        The file does not exist (the message names the path and ``TRIAGE_OSIPI_DSC``).
    ValueError
        Missing columns, or a case whose tissue and arterial curves differ in length.
    """
    path = Path(path) if path is not None else reference_csv()
    if not path.is_file():
        raise FileNotFoundError(
            f"OSIPI DSC reference curves not found at {path}: the repository keeps them in "
            f"tests/data/osipi-dsc/; set {ENV_VAR} to the CSV (or its directory) to read another copy")
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        cases = [_case(row) for row in reader]
    return cases


def _case(row: dict) -> OsipiCase:
    tissue = np.array(row["C_tis"].split(), dtype=np.float64)
    aif = np.array(row["C_aif"].split(), dtype=np.float64)
    if tissue.size != aif.size:
        raise ValueError(f"case {row['label']}: {tissue.size} tissue but {aif.size} arterial samples")
    return OsipiCase(label=row["label"], tissue=tissue, aif=aif, cbv=float(row["cbv"]),
                     cbf=float(row["cbf"]), tr=float(row["tr"]))


@dataclass(frozen=True, repr=False)
class OsipiFit:
    """One model's measurements of the cases, in OSIPI's convention, in the cases' order.

    Attributes
    ----------
    cbf, cbv : ndarray, shape (cases,)
        mL/100 mL/min and mL/100 mL.
    seconds : float
        Wall time of building the models and fitting (all groups).
    fits : int
        Number of fit calls (one per distinct AIF and sampling).
    """

    cbf: np.ndarray
    cbv: np.ndarray
    seconds: float
    fits: int


def fit_cases(name: str, cases: list[OsipiCase]) -> OsipiFit:
    """Fit model ``name`` of ``models.MODELS`` to the cases, one fit per distinct (AIF, tr).

    Cases sharing the same arterial curve and sampling are fitted in one call (their tissue
    curves as voxels); the results are converted to OSIPI's convention (:data:`CT_TO_OSIPI`).
    """
    groups: dict[tuple, list[int]] = {}
    for index, case in enumerate(cases):
        groups.setdefault((case.tr, case.aif.tobytes()), []).append(index)
    cbf, cbv = np.zeros(len(cases)), np.zeros(len(cases))
    start = time.perf_counter()
    for members in groups.values():
        first = cases[members[0]]
        curves = np.stack([cases[i].tissue for i in members], axis=1).astype(np.float32)
        fit = make_model(name, first.aif, first.times).fit(curves)
        cbf[members] = fit.cbf * CT_TO_OSIPI
        cbv[members] = fit.cbv * CT_TO_OSIPI
    return OsipiFit(cbf=cbf, cbv=cbv, seconds=time.perf_counter() - start, fits=len(groups))


def relative_errors(measured: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(measured − truth) / truth, per case."""
    return np.asarray(measured, dtype=np.float64) / np.asarray(truth, dtype=np.float64) - 1.0
