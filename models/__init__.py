"""Tracer-kinetic models and lesion threshold profiles."""

from .base import PerfusionFit
from .svd import BlockCirculantSVDModel
from .tikhonov import TikhonovModel

__all__ = ["BlockCirculantSVDModel", "PerfusionFit", "TikhonovModel"]
