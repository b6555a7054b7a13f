"""The perfusion models by name: what ``AnalysisSettings.model`` selects.

Every entry builds a :class:`models.base.PerfusionModel` from the arterial input (ΔHU, already
scaled for partial volume) and the frame times (s); its ``fit(curves, mask, guide=...)``
accepts the same :class:`models.base.FitGuide` whether it uses it or not.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from triage.base.errors import InputError

from .base import PerfusionModel
from .parametric import DISPERSION_SEARCH, MIDDLE_SHAPE, SHAPE_SEARCH, ParametricResidueModel
from .svd import BlockCirculantSVDModel
from .tikhonov import TikhonovModel

MODELS: dict[str, Callable[..., PerfusionModel]] = {
    # Parametric fits; they use the guide (coarse-scale MTT, smoothed delay-search MTT).
    # Gamma transit times of shape 2 (CV 0.71): the middle of the shapes tissue may have.
    "gamma": partial(ParametricResidueModel, shapes=(MIDDLE_SHAPE,)),
    "gamma-dispersed": partial(ParametricResidueModel, shapes=(MIDDLE_SHAPE,), dispersions=DISPERSION_SEARCH),
    # The shape searched per voxel on the guide (under evaluation: weakly determined).
    "gamma-shapes": partial(ParametricResidueModel, shapes=SHAPE_SEARCH),
    # The one-compartment exponential residue (shape 1).
    "exponential": ParametricResidueModel,
    # With the dispersion search; fits the curves as they are (guide ignored).
    "exponential-dispersed": partial(ParametricResidueModel, dispersions=DISPERSION_SEARCH, guided=False),
    # Block-circulant deconvolutions, regularised per voxel; guide ignored.
    "bcsvd": BlockCirculantSVDModel,
    "tikhonov": TikhonovModel,
}
"""Model factories by name, ``MODELS[name](aif, times)``; names in the order they are offered."""


def make_model(name: str, aif, times) -> PerfusionModel:
    """The model ``name`` of :data:`MODELS`, configured with ``aif`` (t,) ΔHU and ``times`` (t,) s.

    Raises
    ------
    InputError
        Unknown name, or an AIF and times the model refuses (see
        :func:`models.base.check_aif_and_times`).
    """
    try:
        factory = MODELS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None
    return factory(aif, times)
