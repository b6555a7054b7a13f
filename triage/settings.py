"""One settings object for the whole service, fed by defaults, a TOML file, environment and flags.

Precedence, lowest first: the defaults below, the file named by ``--config`` or the
``TRIAGE_CONFIG`` environment variable, ``TRIAGE_<FIELD>`` environment variables (e.g.
``TRIAGE_PROFILE=rcbf38``), then command-line flags. The TOML file holds the same field names at
its top level, e.g. ``profile = "rapid-like"``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from triage.errors import InputError

ENV_PREFIX = "TRIAGE_"


@dataclass(frozen=True)
class Settings:
    """Analysis settings (units in the names or below).

    profile : threshold profile name or JSON path (see ``models.profiles``)
    model : deconvolution model, ``"exponential"`` (parametric fit of a delayed exponential
        residue), ``"bcsvd"`` (block-circulant SVD, oscillation-index regularised) or
        ``"tikhonov"``
    max_matrix : in-plane matrix the perfusion is computed on; larger acquisitions are
        block-averaged in-plane (512 → 256), maps are written back on the acquisition grid
    smoothing_fwhm_mm : spatial (Gaussian) FWHM of the edge-preserving bilateral filter of the
        tissue curves within the parenchyma before deconvolution (0 = no denoising); the
        dominant temporal components keep this scale
    coarse_fwhm_mm : in-plane smoothing of the weak temporal components, and of the curves
        that set the MTT of the exponential model (see ``triage.denoise.denoise_curves``)
    motion_exclude_mm : frames displaced more than this are left out of the analysis
    """

    profile: str = "rapid-like"
    model: str = "exponential"
    max_matrix: int = 256
    smoothing_fwhm_mm: float = 12.0
    coarse_fwhm_mm: float = 14.0
    motion_exclude_mm: float = 10.0

    def replace(self, **changes) -> "Settings":
        """A copy with the given fields changed; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _coerce(name: str, kind: type, value) -> object:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(f"setting {name}: {value!r} is not a valid {kind.__name__}") from None


def load_settings(config_file: Path | None = None, environ: dict | None = None, **flags) -> Settings:
    """Settings from defaults, ``config_file`` (or ``$TRIAGE_CONFIG``), environment, then ``flags``."""
    environ = os.environ if environ is None else environ
    kinds = {f.name: type(f.default) for f in fields(Settings)}
    values: dict = {}
    config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise InputError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"config file {path} is not valid TOML: {exc}") from None
        unknown = sorted(set(data) - set(kinds))
        if unknown:
            raise InputError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
        values.update(data)
    for name in kinds:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    values.update({k: v for k, v in flags.items() if v is not None})
    return Settings(**{k: _coerce(k, kinds[k], v) for k, v in values.items()})
