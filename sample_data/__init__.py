"""Synthetic CT perfusion phantom with known truth (research use only).

``make_phantom(PhantomConfig(...))`` builds the 4D HU series and its truth; ``write_dicom`` and
``write_truth`` put them on disk; ``python -m sample_data`` does both from the command line.
"""

from .dicom_writer import VARIANTS, DicomVariant, write_dicom
from .phantom import CASES, Phantom, PhantomConfig, Truth, make_phantom, write_truth

__all__ = ["CASES", "VARIANTS", "DicomVariant", "Phantom", "PhantomConfig", "Truth",
           "make_phantom", "write_dicom", "write_truth"]
