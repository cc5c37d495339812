"""The mode-matching scattering matrix (hpc_itc.core.transport.scattering): 1D closed forms, transparency of
identical leads, unitarity, Caroli agreement and reciprocity with degenerate channels, and its cost."""

from __future__ import annotations

import time

import numpy as np
import pytest
from chain_models import (
    build_junction,
    chain_cell,
    chain_q,
    degenerate_ladder,
    flux,
    make_spring,
    mass_junction,
    random_law,
    second_neighbour_law,
    t_mass_junction,
    t_spring_junction,
    transverse_ladder,
    wire_junction,
)

from hpc_itc.core.transport.leads import LeadBlocks, lead_modes
from hpc_itc.core.transport.scattering import caroli_transmission, solve_scattering

# ----------------------------------------------------------------------------
# Scattering: 1D closed forms
# ----------------------------------------------------------------------------



def test_mass_junction_closed_form():
    k, m1, m2 = 1.3, 4.0, 1.5  # heavy left: cutoff 2 sqrt(k/m1) ~ 1.14, right ~ 1.86
    args = mass_junction(k, m1, m2)
    for omega in (0.05, 0.3, 0.7, 1.0, 1.1):
        s = solve_scattering(*args, omega)
        t_l, r_l = s.transmission_from_left()
        t_r, r_r = s.transmission_from_right()
        exact = t_mass_junction(omega, k, m1, m2)
        np.testing.assert_allclose(t_l, [exact], rtol=1e-9)
        np.testing.assert_allclose(t_r, [exact], rtol=1e-9)
        np.testing.assert_allclose(t_l + r_l, [1.0], atol=1e-12)
        np.testing.assert_allclose(t_r + r_r, [1.0], atol=1e-12)
        assert abs(caroli_transmission(*args, omega) - exact) < 1e-8
        assert 0 < exact < 1
    # Between the two cutoffs only the light (right) side propagates: total reflection.
    for omega in (1.2, 1.5, 1.8):
        s = solve_scattering(*args, omega)
        assert s.t_LR.shape == (1, 0) and s.transmission_from_left()[0].size == 0
        t_r, r_r = s.transmission_from_right()
        np.testing.assert_allclose(t_r, [0.0], atol=1e-14)
        np.testing.assert_allclose(r_r, [1.0], atol=1e-12)
        assert abs(caroli_transmission(*args, omega)) < 1e-8


def test_mass_junction_near_band_edge():
    """q1 within 1e-6 of the zone boundary of the heavy chain: still unitary and continuous."""
    k, m1, m2 = 1.0, 2.0, 1.0
    args = mass_junction(k, m1, m2)
    for dq in (1e-3, 1e-6):
        omega = np.sqrt(2 * k / m1 * (1 - np.cos(np.pi - dq)))
        s = solve_scattering(*args, omega)
        t_l, r_l = s.transmission_from_left()
        np.testing.assert_allclose(t_l + r_l, [1.0], atol=1e-10)
        np.testing.assert_allclose(t_l, [t_mass_junction(omega, k, m1, m2)], rtol=1e-4, atol=1e-9)
        # v ~ dq is ill-conditioned in omega (see test_chain_lead_velocity_and_flux).
        np.testing.assert_allclose(s.vel_in_L, [k * np.sin(np.pi - dq) / (m1 * omega)], rtol=1e-3)
    assert s.edge_in_L.all() and s.edge_out_L.all()  # v ~ 5e-7 of the sound speed
    assert not solve_scattering(*args, 1.0).edge_in_L.any()
    # On the edge to rounding (Jordan block or its O(eps) splitting): unitary, flagged, v ~ 0.
    s = solve_scattering(*args, np.sqrt(4 * k / m1))
    t_l, r_l = s.transmission_from_left()
    np.testing.assert_allclose(t_l + r_l, 1.0, atol=1e-10)
    assert s.edge_in_L.all() and np.all(np.abs(s.vel_in_L) < 1e-7)


def test_spring_junction_closed_form():
    k, kp, m = 1.0, 0.35, 1.0
    # left PL0 -k- D1 -kp- D2 -k- right PL1
    lead = LeadBlocks(np.array([[2 * k / m]]), np.array([[-k / m]]))
    h_d = np.array([[k + kp, -kp], [-kp, kp + k]]) / m
    v_ld = np.array([[-k / m, 0.0]])
    v_dr = np.array([[0.0], [-k / m]])
    for omega in (0.1, 0.9, 1.5, 1.99):
        s = solve_scattering(lead, lead, h_d, v_ld, v_dr, omega)
        t_l, r_l = s.transmission_from_left()
        exact = t_spring_junction(omega, k, kp, m)
        np.testing.assert_allclose(t_l, [exact], rtol=1e-9)
        np.testing.assert_allclose(t_l + r_l, [1.0], atol=1e-12)
        assert abs(caroli_transmission(lead, lead, h_d, v_ld, v_dr, omega) - exact) < 1e-8
    s = solve_scattering(lead, lead, h_d, v_ld, v_dr, 2.05)  # above the band
    assert s.t_LR.size == 0 and s.t_RL.size == 0


# ----------------------------------------------------------------------------
# Scattering: multi-dof leads, degeneracies, singular h01
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("copies", [1, 4])
def test_identical_material_is_transparent(copies):
    # Two chains coupled by rungs, 2nd-neighbour springs, PL of 3 atoms x 2 chains (6 dof).
    law = second_neighbour_law(1.0, 0.4, couple_chains=0.3)
    cell = [((c, 0, z), 1.0 + 0.5 * c) for z in range(3) for c in range(2)]
    device = [((c, 0, z), 1.0 + 0.5 * c) for z in range(3 * copies) for c in range(2)]
    jn = build_junction(cell, 3.0, cell, 3.0, device, 3.0 * copies, make_spring(law, law, law, 2.0))
    h = jn.left
    # The device is literally `copies` lead PLs.
    np.testing.assert_allclose(jn.h_d[:6, :6], h.h00, atol=1e-14)
    np.testing.assert_allclose(jn.v_ld, np.hstack([h.h01, np.zeros((6, 6 * copies - 6))]), atol=1e-14)
    n_channels = set()
    for omega in (0.3, 0.9, 1.4, 1.9, 2.2):
        s = solve_scattering(*jn.args, omega)
        t_l, r_l = s.transmission_from_left()
        t_r, r_r = s.transmission_from_right()
        n_channels.add(t_l.size)
        np.testing.assert_allclose(t_l, 1.0, atol=1e-10)
        np.testing.assert_allclose(t_r, 1.0, atol=1e-10)
        np.testing.assert_allclose(r_l, 0.0, atol=1e-10)
        np.testing.assert_allclose(r_r, 0.0, atol=1e-10)
        # The scattering state inside the device is the incident Bloch wave itself:
        # device PL p (p = 1..copies) holds lam^p times the vector on lead PL 0.
        for i in range(t_l.size):
            bloch = np.concatenate([s.lam_in_L[i] ** p * s.vec_in_L[:, i] for p in range(1, copies + 1)])
            np.testing.assert_allclose(s.psi_D_from_left[:, i], bloch, atol=1e-10)
    assert max(n_channels) >= 2



@pytest.mark.parametrize("seed", [1, 2])
def test_degenerate_channels_unitarity_caroli_reciprocity(seed):
    jn = degenerate_ladder(seed)
    assert np.linalg.matrix_rank(jn.left.h01) == 4  # 6 dof, singular
    seen_degenerate = False
    for omega in (0.4, 1.1, 1.7, 2.05, 2.25):
        s = solve_scattering(*jn.args, omega)
        t_l, r_l = s.transmission_from_left()
        t_r, r_r = s.transmission_from_right()
        np.testing.assert_allclose(t_l + r_l, 1.0, atol=1e-10)
        np.testing.assert_allclose(t_r + r_r, 1.0, atol=1e-10)
        total_lr, total_rl = t_l.sum(), t_r.sum()
        assert abs(total_lr - total_rl) < 1e-10  # reciprocity
        caroli = caroli_transmission(*jn.args, omega)
        assert abs(caroli - total_lr) < 1e-8, (omega, caroli, total_lr)
        # Full S-matrix unitarity (rows as well as columns).
        smat = np.block([[s.r_LL, s.t_RL], [s.t_LR, s.r_RR]])
        np.testing.assert_allclose(smat.conj().T @ smat, np.eye(smat.shape[1]), atol=1e-10)
        # Degenerate channels are current-orthogonal and flux-normalised.
        lm = lead_modes(jn.left.h00, jn.left.h01, omega)
        jmat = flux(lm.pair_right, jn.left.h01, omega)
        np.testing.assert_allclose(jmat, np.eye(lm.n_prop_right), atol=1e-10)
        d = np.abs(lm.lam_right[:, None] - lm.lam_right[None, :]) < 1e-9
        seen_degenerate |= bool(d.sum() > d.shape[0])
    assert seen_degenerate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_band_crossing_degeneracy_in_rotated_basis(seed):
    """Accidental degeneracy with *different* velocities: current-orthogonalisation matters.

    Lead = two decoupled chains, PL of 2 sites each: A (nn spring 1) and B
    (nn k1b, 2nd-nn k2b) with k1b chosen so both dispersions cross at q0:
    omega0^2 = 2 (1 - cos q0) = 2 k1b (1 - cos q0) + 2 k2b (1 - cos 2 q0).
    At omega0 both chains have lam = exp(2 i q0) but v_A != v_B. The dof basis
    is rotated by a random orthogonal matrix so that the eigensolver returns
    arbitrary mixtures of the two degenerate modes; only a correct
    current-diagonalisation recovers the analytic velocities
    v_A = sin q0 / (2 omega0), v_B = (k1b sin q0 + 2 k2b sin 2q0) / (2 omega0).
    """
    q0, k2b = 1.0, 0.3
    k1b = 1 - k2b * (1 - np.cos(2 * q0)) / (1 - np.cos(q0))
    omega0 = np.sqrt(2 * (1 - np.cos(q0)))

    def lead_law(d, a, b):
        if a["pos"][0] != b["pos"][0]:
            return 0.0
        if a["pos"][0] == 0:
            return 1.0 if abs(d - 1) < 1e-9 else 0.0
        return k1b if abs(d - 1) < 1e-9 else (k2b if abs(d - 2) < 1e-9 else 0.0)

    rng = np.random.default_rng(seed)
    device = [((c, 0, z), float(rng.uniform(0.6, 1.4))) for z in range(6) for c in range(2)]

    def spring(a, b):
        d = np.linalg.norm(a["pos"] - b["pos"])
        if a["region"] == b["region"] == "D":
            return random_law(seed)(d, a, b) if d <= 2.3 else 0.0
        return lead_law(d, a, b) if d <= 2 + 1e-9 else 0.0

    cell = chain_cell(2, 1.0, chains=2)
    jn = build_junction(cell, 2.0, cell, 2.0, device, 6.0, spring)
    rot, _ = np.linalg.qr(np.random.default_rng(100 + seed).standard_normal((4, 4)))
    left = LeadBlocks(rot.T @ jn.left.h00 @ rot, rot.T @ jn.left.h01 @ rot)
    v_ld = rot.T @ jn.v_ld

    lm = lead_modes(left.h00, left.h01, omega0)
    on_cross = np.abs(lm.lam_right - np.exp(2j * q0)) < 1e-9
    assert on_cross.sum() == 2
    v_a = np.sin(q0) / (2 * omega0)
    v_b = (k1b * np.sin(q0) + 2 * k2b * np.sin(2 * q0)) / (2 * omega0)
    np.testing.assert_allclose(np.sort(lm.vel_right[on_cross]), np.sort([v_a, v_b]), rtol=1e-8)
    np.testing.assert_allclose(flux(lm.pair_right, left.h01, omega0), np.eye(3), atol=1e-10)

    args = (left, jn.right, jn.h_d, v_ld, jn.v_dr)
    s = solve_scattering(*args, omega0)
    t_l, r_l = s.transmission_from_left()
    t_r, r_r = s.transmission_from_right()
    np.testing.assert_allclose(t_l + r_l, 1.0, atol=1e-10)
    np.testing.assert_allclose(t_r + r_r, 1.0, atol=1e-10)
    assert abs(caroli_transmission(*args, omega0) - t_l.sum()) < 1e-8
    # Rotating the lead basis must not change the physics.
    s0 = solve_scattering(*jn.args, omega0)
    assert abs(s0.transmission_from_left()[0].sum() - t_l.sum()) < 1e-10



@pytest.mark.parametrize("theta", [0.7, 2.0])
def test_complex_hermitian_blocks_transverse_wavevector(theta):
    """Ladder periodic along x with a transverse Bloch phase: complex Hermitian blocks,
    no time-reversal pairing of channels; unitarity, Caroli and the equality of the
    total transmissions in both directions must still hold."""
    jn = transverse_ladder(theta, n_device=5)
    assert np.abs(jn.left.h01.imag).max() > 0 or np.abs(jn.left.h00.imag).max() > 0
    n_channels = []
    for omega in (0.6, 1.3, 1.6, 2.0):
        s = solve_scattering(*jn.args, omega)
        t_l, r_l = s.transmission_from_left()
        t_r, r_r = s.transmission_from_right()
        n_channels.append(t_l.size)
        np.testing.assert_allclose(t_l + r_l, 1.0, atol=1e-10)
        np.testing.assert_allclose(t_r + r_r, 1.0, atol=1e-10)
        assert abs(t_l.sum() - t_r.sum()) < 1e-10
        assert abs(caroli_transmission(*jn.args, omega) - t_l.sum()) < 1e-8
    assert max(n_channels) >= 2


def test_incident_bulk_vector_in_degenerate_lead():
    """Two decoupled identical chains (degenerate channels), bond kA on chain A, kB on chain B.

    A bulk phonon living on chain A only must see the single-chain closed form
    for kA, whatever basis the solver picked in the degenerate channel pair.
    """
    k, m, ka, kb = 1.0, 1.0, 0.3, 2.5
    h00 = np.eye(2) * 2 * k / m
    h01 = -np.eye(2) * k / m
    lead = LeadBlocks(h00, h01)
    # Device: D1 = (A1, B1), D2 = (A2, B2) with odd bonds A1-A2 (ka), B1-B2 (kb).
    h_d = np.array(
        [[k + ka, 0, -ka, 0], [0, k + kb, 0, -kb], [-ka, 0, k + ka, 0], [0, -kb, 0, k + kb]]
    ) / m
    v_ld = np.hstack([-np.eye(2) * k / m, np.zeros((2, 2))])
    v_dr = np.vstack([np.zeros((2, 2)), -np.eye(2) * k / m])
    for omega in (0.4, 1.2, 1.8):
        s = solve_scattering(lead, lead, h_d, v_ld, v_dr, omega)
        lam = np.exp(1j * chain_q(omega, k, m))
        for side, lam_in in (("left", lam), ("right", np.conj(lam))):
            for vec, kp in (([1.0, 0.0], ka), ([0.0, 2.0j], kb)):
                t, r = s.incident(side, lam_in, vec)
                assert abs(t - t_spring_junction(omega, k, kp, m)) < 1e-10
                assert abs(t + r - 1) < 1e-12
            t, r = s.incident(side, lam_in, [1.0, 1.0])  # equal-flux mixture: mean of both
            mean = 0.5 * (t_spring_junction(omega, k, ka, m) + t_spring_junction(omega, k, kb, m))
            assert abs(t - mean) < 1e-10
        with pytest.raises(ValueError):
            s.incident("left", np.conj(lam), [1.0, 0.0])  # outgoing Bloch factor
        with pytest.raises(ValueError):
            s.incident("left", lam, [0.0, 0.0])


def test_wire_3d_unitarity_and_caroli():
    jn = wire_junction()
    assert jn.left.n == jn.right.n == 24 and jn.h_d.shape == (378, 378)
    assert np.linalg.matrix_rank(jn.left.h01) < 24
    for omega in (0.1, 0.25):  # the soft (Cu-like) lead has its top band at ~0.3
        s = solve_scattering(*jn.args, omega)
        t_l, r_l = s.transmission_from_left()
        t_r, r_r = s.transmission_from_right()
        assert t_l.size >= 3
        np.testing.assert_allclose(t_l + r_l, 1.0, atol=1e-10)
        np.testing.assert_allclose(t_r + r_r, 1.0, atol=1e-10)
        assert abs(t_l.sum() - t_r.sum()) < 1e-10
        assert abs(caroli_transmission(*jn.args, omega) - t_l.sum()) < 1e-8
        assert s.psi_D_from_left.shape == (378, t_l.size)
        # psi_D solves the device equation with the lead parts of the scattering state.
        assert np.all(np.isfinite(s.psi_D_from_right))


# ----------------------------------------------------------------------------
# Cost (informative; keeps the suite honest about speed)
# ----------------------------------------------------------------------------


def test_solve_scattering_cost_wire():
    jn = wire_junction()
    solve_scattering(*jn.args, 0.5)
    t0 = time.perf_counter()
    reps = 5
    for omega in np.linspace(0.05, 0.3, reps):
        solve_scattering(*jn.args, omega)
    per_call = (time.perf_counter() - t0) / reps
    print(f"solve_scattering n_L=n_R=24, N=378: {per_call * 1e3:.1f} ms/call")
    assert per_call < 2.0

