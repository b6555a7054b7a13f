"""Tracer-kinetic models and lesion threshold profiles.

``make_model(name, aif, times)`` builds a model of :data:`MODELS`; ``model.fit(curves, mask,
guide=FitGuide(...))`` returns a :class:`PerfusionFit` with the maps cbf (mL/100 g/min),
cbv (mL/100 g), mtt, tmax and ttp (s).
"""

from .base import FitGuide, PerfusionFit, PerfusionModel
from .parametric import ParametricResidueModel
from .registry import MODELS, make_model
from .svd import BlockCirculantSVDModel
from .tikhonov import TikhonovModel

__all__ = [
    "MODELS",
    "BlockCirculantSVDModel",
    "FitGuide",
    "ParametricResidueModel",
    "PerfusionFit",
    "PerfusionModel",
    "TikhonovModel",
    "make_model",
]
