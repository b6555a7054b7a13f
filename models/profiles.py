"""Lesion threshold profiles, kept as data in ``models/profiles/*.json``.

A profile fixes the cut-offs that turn perfusion maps into lesion masks. Vendors and studies
differ (core rCBF thresholds from about 30 % to 38 % are published), so the cut-offs are named
data, never constants in code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from triage.base.errors import InputError

PROFILE_DIR = Path(__file__).with_name("profiles")
DEFAULT_PROFILE = "rapid-like"
REFERENCES = ("contralateral-normal",)


@dataclass(frozen=True)
class ThresholdProfile:
    """Cut-offs for the core and the hypoperfused tissue.

    Attributes
    ----------
    name, description : str
    core_rcbf_below : float
        Core where CBF / reference CBF is below this fraction (0.30 = 30 %).
    hypoperfusion_tmax_above_s, severe_tmax_above_s : float
        Tmax cut-offs in s for hypoperfused and severely hypoperfused tissue.
    reference : str
        How the normal CBF is found. ``"contralateral-normal"``: median CBF of the parenchyma of
        the hemisphere opposite the lesion with Tmax below ``reference_tmax_below_s``.
    reference_tmax_below_s : float
    core_within_hypoperfusion : bool
        Count core only inside the hypoperfused region (low CBF with normal Tmax is taken as
        noise or chronic change, not acute core).
    min_cluster_ml : float
        Connected components of a lesion mask smaller than this (mL) are dropped.
    """

    name: str
    description: str
    core_rcbf_below: float
    hypoperfusion_tmax_above_s: float
    severe_tmax_above_s: float
    reference: str
    reference_tmax_below_s: float
    core_within_hypoperfusion: bool
    min_cluster_ml: float

    def as_dict(self) -> dict:
        return asdict(self)


def available_profiles() -> list[str]:
    """Names of the profiles shipped in ``models/profiles``."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def load_profile(name_or_path: str) -> ThresholdProfile:
    """Load a shipped profile by name, or a profile JSON file by path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = PROFILE_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise InputError(
            f"unknown threshold profile {name_or_path!r}; available: {', '.join(available_profiles())}"
        )
    try:
        profile = ThresholdProfile(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise InputError(f"threshold profile {path} is not valid: {exc}") from None
    if profile.reference not in REFERENCES:
        raise InputError(f"threshold profile {path}: unknown reference {profile.reference!r}")
    return profile
