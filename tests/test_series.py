"""Voxel index <-> patient coordinates agree with SimpleITK."""

import numpy as np
import SimpleITK as sitk

from triage.base.grid import Geometry


def test_index_physical_round_trip_matches_simpleitk():
    c, s = np.cos(0.2), np.sin(0.2)
    geometry = Geometry(spacing=(0.5, 0.6, 5.0), origin=(-120.0, -100.0, 30.0), direction=(c, -s, 0, s, c, 0, 0, 0, 1))
    image = sitk.Image(10, 12, 4, sitk.sitkFloat32)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    zyx = (3, 7, 2)
    expected = image.TransformIndexToPhysicalPoint((2, 7, 3))
    assert np.allclose(geometry.to_physical(zyx), expected)
    assert np.allclose(geometry.to_index(expected), zyx)
    assert geometry.voxel_volume_ml == 0.5 * 0.6 * 5.0 / 1000
