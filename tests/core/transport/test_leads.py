"""Lead modes (hpc_itc.core.transport.leads): velocities, fluxes, evanescent and band-edge modes, singular h01."""

from __future__ import annotations

import numpy as np
import pytest
from chain_models import build_junction, chain_cell, flux, make_spring, second_neighbour_law

from hpc_itc.core.transport.leads import LeadModeError, lead_modes

# ----------------------------------------------------------------------------
# Lead modes
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("q", [0.2, 1.0, 2.0, 3.0, np.pi - 1e-3, np.pi - 1e-6])
def test_chain_lead_velocity_and_flux(q):
    # Near the zone boundary v ~ (pi - q) is ill-conditioned in omega itself
    # (rounding of omega^2 shifts pi - q by ~eps / (pi - q)), hence the looser rtol.
    rtol = max(1e-7, 1e-15 / (np.pi - q) ** 2)
    k, m = 1.7, 2.3
    omega = np.sqrt(2 * k / m * (1 - np.cos(q)))
    h00, h01 = np.array([[2 * k / m]]), np.array([[-k / m]])
    lm = lead_modes(h00, h01, omega)
    assert lm.n_prop_right == lm.n_prop_left == 1
    v_exact = k * np.sin(q) / (m * omega)  # d omega / dq, PL length = 1 spacing
    np.testing.assert_allclose(lm.lam_right, [np.exp(1j * q)], atol=1e-9)
    np.testing.assert_allclose(lm.lam_left, [np.exp(-1j * q)], atol=1e-9)
    np.testing.assert_allclose(lm.vel_right, [v_exact], rtol=rtol)
    np.testing.assert_allclose(lm.vel_left, [-v_exact], rtol=rtol)
    # Flux normalisation |J| = 1 with J = -omega Im(psi_0^H h01 psi_1).
    np.testing.assert_allclose(flux(lm.pair_right, h01, omega).real, [[1.0]], atol=1e-9)
    np.testing.assert_allclose(flux(lm.pair_left, h01, omega).real, [[-1.0]], atol=1e-9)
    assert lm.evan_right.shape == (2, 0) and lm.evan_left.shape == (2, 0)


def test_chain_above_band_is_evanescent():
    lm = lead_modes(np.array([[2.0]]), np.array([[-1.0]]), 2.2)
    assert lm.n_prop_right == lm.n_prop_left == 0
    # Evanescent bases are exact solutions: psi_1 = lam psi_0 with lam = x - sqrt(x^2 - 1) < 0.
    x = 1 - 2.2**2 / 2
    lam_r = x + np.sqrt(x * x - 1)
    u, w = lm.evan_right[:, 0]
    assert abs(w / u - lam_r) < 1e-12 and abs(lam_r) < 1


def test_chain_exactly_at_band_edge():
    """omega = 2 sqrt(k/m) exactly: lam = -1 is a Jordan block (defective pencil)."""
    lm = lead_modes(np.array([[2.0]]), np.array([[-1.0]]), 2.0)
    assert lm.n_prop_right == lm.n_prop_left == 1
    assert lm.near_edge_right.all() and lm.near_edge_left.all()
    assert lm.vel_right[0] == 0 and lm.vel_left[0] == 0
    np.testing.assert_allclose(flux(np.hstack([lm.pair_right, lm.pair_left]), np.array([[-1.0]]), 2.0),
                               np.diag([1.0, -1.0]), atol=1e-12)


def test_second_neighbour_chain_modes_singular_h01():
    """PL of 3 atoms with 1st (k1) and 2nd (k2) neighbour springs: rank(h01) = 2.

    Bulk dispersion per atom spacing: omega^2 = 2 k1 (1 - cos q) + 2 k2 (1 - cos 2q)
    (m = 1), non-monotonic for k2 > k1/4. PL Bloch factor lam = exp(3 i q),
    velocity in PL units v = (d omega/dq) / 3 = (k1 sin q + 2 k2 sin 2q) / (3 omega).
    """
    k1, k2 = 1.0, 0.6
    jn = build_junction(
        chain_cell(3, 1.0), 3.0, chain_cell(3, 1.0), 3.0, chain_cell(3, 1.0), 3.0,
        make_spring(*(second_neighbour_law(k1, k2),) * 3, cutoff=2.0),
    )
    h00, h01 = jn.left.h00, jn.left.h01
    assert np.linalg.matrix_rank(h01) == 2
    qs = np.linspace(1e-3, np.pi - 1e-3, 200001)
    w2 = 2 * k1 * (1 - np.cos(qs)) + 2 * k2 * (1 - np.cos(2 * qs))
    for omega in (0.8, 1.5, 2.1, 2.3):
        lm = lead_modes(h00, h01, omega)
        # Analytic roots of the dispersion at this omega (refined by Newton).
        s = np.sign(w2 - omega**2)
        roots = []
        for i in np.nonzero(s[:-1] != s[1:])[0]:
            q = qs[i]
            for _ in range(30):
                f = 2 * k1 * (1 - np.cos(q)) + 2 * k2 * (1 - np.cos(2 * q)) - omega**2
                q -= f / (2 * k1 * np.sin(q) + 4 * k2 * np.sin(2 * q))
            roots.append(q)
        roots = np.array(roots)
        v = (k1 * np.sin(roots) + 2 * k2 * np.sin(2 * roots)) / (3 * omega)
        lam = np.exp(3j * roots)
        # +q roots with v > 0 and -q roots (v < 0 mirrored) together are right-going.
        exp_lam = np.concatenate([lam[v > 0], np.conj(lam[v < 0])])
        exp_v = np.concatenate([v[v > 0], -v[v < 0]])
        assert lm.n_prop_right == exp_lam.size == lm.n_prop_left
        order = np.argsort(np.angle(exp_lam))
        got = np.argsort(np.angle(lm.lam_right))
        np.testing.assert_allclose(lm.lam_right[got], exp_lam[order], atol=1e-8)
        np.testing.assert_allclose(lm.vel_right[got], exp_v[order], rtol=1e-6)
        assert lm.evan_right.shape == (6, 3 - lm.n_prop_right)
    # At omega = 2.1 the band is non-monotonic: two right-going channels (q1 < q2, v of opposite sign in q).
    assert lead_modes(h00, h01, 2.1).n_prop_right == 2


def test_lead_input_validation():
    with pytest.raises(ValueError):
        lead_modes(np.array([[1.0, 2.0], [0.0, 1.0]]), np.eye(2), 1.0)  # non-Hermitian h00
    with pytest.raises(ValueError):
        lead_modes(np.eye(2), np.eye(2), -1.0)
    with pytest.raises(LeadModeError):
        # Second dof is decoupled along the chain with omega^2 = h00 = 1: singular pencil.
        lead_modes(np.diag([2.0, 1.0]), np.diag([-1.0, 0.0]), 1.0)


