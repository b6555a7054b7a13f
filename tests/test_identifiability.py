"""Why some issue-11 targets are not reachable from one curve: twin curves (tests/support/twins.py).

A dispersed penumbra and an undispersed one 2-3 s earlier, or a flat-residue tissue and a gamma-2
tissue of much higher flow, give curves closer than the noise of a denoised voxel (~1 HU). These
tests hold the phantom to that fact (so the documented limits in docs/accuracy.md stay true), and
check that the twin search does find the curve itself when it is in the family.
"""

import pytest

from sample_data import curves
from tests.support.twins import sampled, twin

PENUMBRA = (35.0, 4.5, 8.0)  # CBF mL/100 g/min, CBV mL/100 g, Tmax s


def test_twin_search_recovers_a_curve_of_its_own_family():
    cbf, cbv, tmax = PENUMBRA
    mtt = 60.0 * cbv / cbf
    found = twin(sampled("gamma2", cbf, mtt, tmax, 0.0), "gamma2", 0.8 * cbf, 1.3 * mtt, tmax - 1.0)
    assert found.rms < 0.01
    assert found.onset == pytest.approx(tmax, abs=0.1)
    assert found.cbf == pytest.approx(cbf, rel=0.02)


@pytest.mark.parametrize("tau", [1.5, 3.0])
def test_dispersed_penumbra_has_an_earlier_twin_within_noise(tau):
    cbf, cbv, tmax = PENUMBRA
    mtt = 60.0 * cbv / cbf
    onset, used = curves.onset_for_tmax(tmax, mtt, tau, "lognormal")
    assert used == tau
    found = twin(sampled("lognormal", cbf, mtt, onset, tau), "lognormal", cbf, mtt, onset + tau / 2)
    assert found.distinguishable_below() < 1.0  # HU: below a denoised voxel's noise
    assert tmax - found.onset > 2.0  # s: Tmax of the twin, too early for Tmax > 6 s at the rim


@pytest.mark.parametrize("shape, least_ratio", [("gamma3", 1.12), ("linear", 1.12), ("box", 1.8)])
def test_flat_residue_has_a_gamma2_twin_of_higher_flow_within_noise(shape, least_ratio):
    cbf, cbv, tmax = PENUMBRA
    mtt = 60.0 * cbv / cbf
    found = twin(sampled(shape, cbf, mtt, tmax, 0.0), "gamma2", cbf, mtt, tmax)
    assert found.distinguishable_below() < 1.0
    assert found.cbf / cbf > least_ratio
