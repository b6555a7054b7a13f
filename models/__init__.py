"""Tracer-kinetic models and lesion threshold profiles."""

from .base import PerfusionFit
from .parametric import ExponentialResidueModel
from .svd import BlockCirculantSVDModel
from .tikhonov import TikhonovModel

__all__ = ["BlockCirculantSVDModel", "ExponentialResidueModel", "PerfusionFit", "TikhonovModel"]
