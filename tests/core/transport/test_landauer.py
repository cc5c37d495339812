"""Landauer sums (hpc_itc.core.transport.landauer) in SI: Bose-Einstein derivative, hand sums, classical and Debye limits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import constants as sc

from hpc_itc.core.transport.landauer import (
    bose_einstein_dfdT,
    conductance_contributions_MW_m2K,
    conductance_MW_m2K,
    cumulative_conductance,
    mode_heat_capacity_J_K,
    radiation_limit_MW_m2K,
    spectral_transmission,
)

# ----------------------------------------------------------------------------
# Landauer
# ----------------------------------------------------------------------------


def test_bose_einstein_derivative():
    omega = np.array([1e11, 1e13, 5e13, 2e14])
    temp = 300.0
    h = 1e-4
    f = lambda t: 1 / np.expm1(sc.hbar * omega / (sc.k * t))  # noqa: E731
    fd = (f(temp + h) - f(temp - h)) / (2 * h)
    np.testing.assert_allclose(bose_einstein_dfdT(omega, temp), fd, rtol=1e-6)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow for huge x
        big = bose_einstein_dfdT(np.array([1e16, 1e18]), np.array([[1.0], [10.0]]))
    assert big.shape == (2, 2) and np.all(big == 0)
    np.testing.assert_allclose(mode_heat_capacity_J_K(np.array([0.0, 1.0]), 300.0), sc.k, rtol=1e-12)
    assert np.isinf(bose_einstein_dfdT(0.0, 300.0))


def test_conductance_matches_hand_sum_and_classical_limit():
    rng = np.random.default_rng(0)
    omega = rng.uniform(1e12, 8e13, 50)
    vz = rng.uniform(-5e3, 5e3, 50)
    trans = rng.uniform(0, 1, 50)
    temps = np.array([50.0, 300.0])
    vol, nq = 11.8, 7
    h = conductance_MW_m2K(omega, vz, trans, temps, vol, nq)
    for i, t in enumerate(temps):
        x = sc.hbar * omega / (sc.k * t)
        dfdt = x / t * np.exp(x) / np.expm1(x) ** 2
        hand = sum(sc.hbar * w * v * tr * d for w, v, tr, d in zip(omega, vz, trans, dfdt) if v > 0)
        hand /= nq * vol * 1e-30 * 1e6
        assert abs(h[i] - hand) < 1e-12 * hand
    # High-T: hbar omega df/dT -> k_B, so h -> k_B sum_{v>0} v T / (N_q V).
    h_hot = conductance_MW_m2K(omega, vz, trans, [1e7], vol, nq)
    classical = sc.k * np.sum(np.where(vz > 0, vz * trans, 0)) / (nq * vol * 1e-30) / 1e6
    np.testing.assert_allclose(h_hot, [classical], rtol=1e-6)
    rad = radiation_limit_MW_m2K(omega, vz, temps, vol, nq)
    assert np.all(rad > h) and rad.shape == (2,)
    contrib = conductance_contributions_MW_m2K(omega, vz, trans, temps, vol, nq)
    np.testing.assert_allclose(contrib.sum(axis=0), h, rtol=1e-13)


def test_radiation_limit_debye_sphere():
    """Isotropic linear branch omega = c|q| sampled uniformly in a Debye sphere.

    (1/(N_q V)) sum -> int d^3q/(2 pi)^3 and V = 6 pi^2 / q_D^3 (sphere volume =
    BZ volume). At high T each mode carries k_B, and the half-space average of
    v_z is c/4, so h_rad -> k_B c / (4 V): kinetic-theory phonon radiation.
    """
    q_d = 1.0e10  # 1/m
    c = 5000.0  # m/s
    g = np.linspace(-q_d, q_d, 81)
    qx, qy, qz = np.meshgrid(g, g, g, indexing="ij")
    qn = np.sqrt(qx**2 + qy**2 + qz**2)
    inside = (qn <= q_d) & (qn > 0)
    omega = c * qn[inside]
    vz = c * qz[inside] / qn[inside]
    nq = inside.sum()
    vol_m3 = 6 * np.pi**2 / q_d**3
    h = radiation_limit_MW_m2K(omega, vz, [1e6], vol_m3 * 1e30, nq)[0]
    expected = sc.k * c / (4 * vol_m3) / 1e6
    assert abs(h / expected - 1) < 0.02


def test_spectral_and_cumulative():
    freq = np.array([0.5, 1.5, 1.7, 3.2, 3.9])
    w = np.array([1.0, 1.0, 3.0, 0.0, 2.0])
    t = np.array([0.2, 0.4, 0.8, 0.9, 0.1])
    spec = spectral_transmission(freq, w, t, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(spec[:2], [0.2, (0.4 + 3 * 0.8) / 4])
    assert np.isnan(spec[2]) and spec[3] == pytest.approx(0.1)
    contrib = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0]])
    cum = cumulative_conductance(freq, contrib, [0.5, 1.6, 10.0])
    np.testing.assert_allclose(cum, [[0, 0], [3, 30], [15, 150]])


