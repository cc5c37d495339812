"""Physics tests of the transport core: lead modes, mode-matching S-matrix, Landauer sums.

Analytic references are derived in the docstrings of the helpers below. Units
are arbitrary (spring constants and masses of O(1)) except in the Landauer
tests, which use SI.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import constants as sc

from hpc_itc.core.transport.landauer import bose_einstein_dfdT, conductance_contributions_MW_m2K, conductance_MW_m2K, cumulative_conductance, mode_heat_capacity_J_K, radiation_limit_MW_m2K, spectral_transmission
from hpc_itc.core.transport.leads import LeadBlocks, LeadModeError, lead_modes
from hpc_itc.core.transport.scattering import caroli_transmission, solve_scattering


# ----------------------------------------------------------------------------
# Model builders
# ----------------------------------------------------------------------------


def chain_q(omega, k, m):
    """Wavenumber (per atom spacing) of the monatomic chain, omega^2 = (2k/m)(1 - cos q)."""
    return np.arccos(1.0 - omega**2 * m / (2.0 * k))


def t_mass_junction(omega, k, m1, m2):
    """Closed form for two semi-infinite chains (masses m1 | m2, all springs k).

    Left u_j = e^{i q1 j} + B e^{-i q1 j} (j <= 0), right u_j = C e^{i q2 j}
    (j >= 1). Each bulk solution, extended by one virtual site, must coincide
    with the other on sites 0 and 1: 1 + B = C, e^{iq1} + B e^{-iq1} = C e^{iq2}.
    Hence C = 2 i sin q1 / (e^{iq2} - e^{-iq1}). Energy flux of e^{iqj} is
    omega k sin q, so
        T = 4 sin q1 sin q2 / |e^{iq2} - e^{-iq1}|^2 = 2 sin q1 sin q2 / (1 - cos(q1 + q2)).
    """
    q1, q2 = chain_q(omega, k, m1), chain_q(omega, k, m2)
    return 2 * np.sin(q1) * np.sin(q2) / (1 - np.cos(q1 + q2))


def t_spring_junction(omega, k, kp, m):
    """Closed form for a uniform chain (mass m, springs k) with one bond kp.

    With alpha = kp/k and z = e^{iq}, matching the bulk-extended left solution
    e^{iqj} + B e^{-iqj} and right solution C e^{iqj} across the odd bond gives
    C = alpha (1 + z) / ((2 alpha - 1) z + 1), so
        T = |C|^2 = 2 alpha^2 (1 + cos q) / ((2 alpha - 1)^2 + 1 + 2 (2 alpha - 1) cos q).
    """
    q = chain_q(omega, k, m)
    a = kp / k
    return 2 * a**2 * (1 + np.cos(q)) / ((2 * a - 1) ** 2 + 1 + 2 * (2 * a - 1) * np.cos(q))


class Junction:
    """Lead blocks and device blocks extracted from a finite spring model."""

    def __init__(self, left, right, h_d, v_ld, v_dr):
        self.left, self.right, self.h_d, self.v_ld, self.v_dr = left, right, h_d, v_ld, v_dr

    @property
    def args(self):
        return (self.left, self.right, self.h_d, self.v_ld, self.v_dr)


def build_junction(
    cell_left, pl_left, cell_right, pl_right, device, z_device, spring, dof=1, n_pl=3, transverse=None
):
    """Assemble a junction from a spring model and cut it into the standard blocks.

    ``cell_left`` / ``cell_right``: lists of (position (3,), mass) of one lead PL,
    with z in [0, pl_left) resp. [0, pl_right); ``device``: list of
    (position, mass) with z in [0, z_device). Left PL j (j <= 0) is shifted to
    z + (j - 1) pl_left, right PL j (j >= 1) to z_device + (j - 1) pl_right.
    ``spring(a, b)`` gets two site dicts (pos, region, index) and returns the
    spring constant (0 for none). ``dof`` = 1 (scalar springs: Laplacian) or 3
    (central springs k r r^T). Any such model with k >= 0 is mechanically
    stable (positive semi-definite force constants). The lead blocks are taken
    from inner PLs and checked to be identical on the PLs next to the device,
    so a builder mistake cannot silently produce an inconsistent junction.

    ``transverse = (period_x, theta)`` (dof = 1 only) makes the model periodic
    along x with Bloch phase theta (a transverse wavevector): a site also
    bonds to the +x image of every site, with off-diagonal -k exp(i theta).
    The blocks are then complex Hermitian and still positive semi-definite.
    """
    sites = []
    for j in range(-n_pl + 1, 1):
        for pos, m in cell_left:
            p = np.array(pos, float) + [0, 0, (j - 1) * pl_left]
            sites.append(dict(pos=p, mass=m, region="L", pl=j))
    for pos, m in device:
        sites.append(dict(pos=np.array(pos, float), mass=m, region="D", pl=None))
    for j in range(1, n_pl + 1):
        for pos, m in cell_right:
            p = np.array(pos, float) + [0, 0, z_device + (j - 1) * pl_right]
            sites.append(dict(pos=p, mass=m, region="R", pl=j))
    for i, s in enumerate(sites):
        s["index"] = i
    ns = len(sites)
    phi = np.zeros((ns * dof, ns * dof))
    for a in range(ns):
        for b in range(a + 1, ns):
            kab = spring(sites[a], sites[b])
            if kab == 0:
                continue
            if dof == 1:
                blk = np.array([[kab]])
            else:
                d = sites[b]["pos"] - sites[a]["pos"]
                d = d / np.linalg.norm(d)
                blk = kab * np.outer(d, d)
            ia, ib = slice(a * dof, a * dof + dof), slice(b * dof, b * dof + dof)
            phi[ia, ib] -= blk
            phi[ib, ia] -= blk
            phi[ia, ia] += blk
            phi[ib, ib] += blk
    if transverse is not None:
        assert dof == 1
        period, theta = transverse
        phi = phi.astype(complex)
        for a in range(ns):
            for b in range(ns):
                image = dict(sites[b], pos=sites[b]["pos"] + [period, 0, 0])
                kab = spring(sites[a], image)
                if kab == 0:
                    continue
                phi[a, b] -= kab * np.exp(1j * theta)
                phi[b, a] -= kab * np.exp(-1j * theta)
                phi[a, a] += kab
                phi[b, b] += kab
    minv = np.repeat([1 / np.sqrt(s["mass"]) for s in sites], dof)
    dyn = phi * minv[:, None] * minv[None, :]

    def idx(pred):
        return np.concatenate([np.arange(s["index"] * dof, s["index"] * dof + dof) for s in sites if pred(s)])

    def lpl(j):
        return idx(lambda s: s["region"] == "L" and s["pl"] == j)

    def rpl(j):
        return idx(lambda s: s["region"] == "R" and s["pl"] == j)

    dev = idx(lambda s: s["region"] == "D")
    sub = lambda a, b: dyn[np.ix_(a, b)]  # noqa: E731
    h00l, h01l = sub(lpl(-1), lpl(-1)), sub(lpl(-1), lpl(0))
    h00r, h01r = sub(rpl(2), rpl(2)), sub(rpl(2), rpl(3))
    np.testing.assert_allclose(sub(lpl(0), lpl(0)), h00l, atol=1e-12)
    np.testing.assert_allclose(sub(lpl(-2), lpl(-1)), h01l, atol=1e-12)
    np.testing.assert_allclose(sub(rpl(1), rpl(1)), h00r, atol=1e-12)
    np.testing.assert_allclose(sub(rpl(1), rpl(2)), h01r, atol=1e-12)
    assert np.abs(sub(lpl(-1), dev)).max() == 0 and np.abs(sub(dev, rpl(2))).max() == 0
    return Junction(
        LeadBlocks(h00l, h01l),
        LeadBlocks(h00r, h01r),
        sub(dev, dev),
        sub(lpl(0), dev),
        sub(dev, rpl(1)),
    )


def chain_cell(n_atoms, mass, chains=1):
    """One PL of ``chains`` parallel 1D chains (x = chain index), ``n_atoms`` sites each."""
    return [((c, 0, z), mass) for z in range(n_atoms) for c in range(chains)]


def make_spring(left_k, right_k, device_k, cutoff):
    """Spring law: bonds touching a lead site use that lead's law, others the device law.

    Each law maps (distance, a, b) -> k. Bonds between the last lead PL and the
    device thus have bulk-lead springs, so lead PL 0 keeps its bulk on-site block.
    """

    def spring(a, b):
        d = np.linalg.norm(a["pos"] - b["pos"])
        if d > cutoff + 1e-9:
            return 0.0
        regions = {a["region"], b["region"]}
        assert regions != {"L", "R"}, "device too short for this cutoff"
        if "L" in regions:
            return left_k(d, a, b)
        if "R" in regions:
            return right_k(d, a, b)
        return device_k(d, a, b)

    return spring


def second_neighbour_law(k1, k2, couple_chains=0.0):
    """Along-chain springs k1 (distance 1) and k2 (distance 2); inter-chain k only if asked."""

    def law(d, a, b):
        same_chain = a["pos"][0] == b["pos"][0]
        if not same_chain:
            return couple_chains if abs(d - 1) < 1e-9 else 0.0
        return k1 if abs(d - 1) < 1e-9 else (k2 if abs(d - 2) < 1e-9 else 0.0)

    return law


def random_law(seed, lo=0.3, hi=2.0):
    """Deterministic random spring per bond (depends on the pair of site indices)."""

    def law(d, a, b):
        i, j = sorted((a["index"], b["index"]))
        return float(np.random.default_rng([seed, i, j]).uniform(lo, hi)) / d

    return law


def flux(pair, h01, omega):
    """Flux matrix J_ab = -omega Im-part form x_a^H K x_b of pair vectors [psi_j; psi_j+1]."""
    n = h01.shape[0]
    u, w = pair[:n], pair[n:]
    return 0.5j * omega * (u.conj().T @ h01 @ w - w.conj().T @ h01.conj().T @ u)


def wire_junction(seed=3, n_layers_device=31):
    """3D central-force wire: 2x2 cross-section, nn + 2nn springs, PL = 2 layers.

    24 dof per lead PL (h01 rank-deficient: only the second layer of a PL
    touches the next PL); 126 device atoms = 378 dof (31 layers of 4 atoms plus
    two interstitials) with random masses and springs. Left lead ~ Cu-like
    (mass 63.5, soft), right ~ diamond-like (mass 12, stiff).
    """
    rng = np.random.default_rng(seed)
    square = [(0, 0), (1, 0), (0, 1), (1, 1)]
    cell_l = [((x, y, z), 63.5) for z in (0, 1) for x, y in square]
    cell_r = [((x, y, z), 12.0) for z in (0, 1) for x, y in square]
    device = [((x, y, z), float(rng.uniform(10, 70))) for z in range(n_layers_device) for x, y in square]
    device += [((0.5, 0.5, 10.5), 28.0), ((0.5, 0.5, 20.5), 28.0)]
    spring = make_spring(
        lambda d, a, b: 2.0 / d**2,
        lambda d, a, b: 12.0 / d**2,
        random_law(seed, 1.0, 10.0),
        cutoff=1.5,
    )
    return build_junction(cell_l, 2.0, cell_r, 2.0, device, float(n_layers_device), spring, dof=3)


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


# ----------------------------------------------------------------------------
# Scattering: 1D closed forms
# ----------------------------------------------------------------------------


def mass_junction(k, m1, m2):
    """Left chain m1 | one device atom m2 | right chain m2 (all springs k)."""
    return (
        LeadBlocks(np.array([[2 * k / m1]]), np.array([[-k / m1]])),
        LeadBlocks(np.array([[2 * k / m2]]), np.array([[-k / m2]])),
        np.array([[2 * k / m2]]),
        np.array([[-k / np.sqrt(m1 * m2)]]),
        np.array([[-k / m2]]),
    )


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


def degenerate_ladder(seed):
    """Two identical *decoupled* 2nd-neighbour chains in each lead (exact two-fold
    degeneracy of every channel, rank-deficient h01), different leads left and
    right, and a random device that couples the chains."""
    cell_l = chain_cell(3, 1.0, chains=2)
    cell_r = chain_cell(3, 0.6, chains=2)
    rng = np.random.default_rng(seed)
    device = [((c, 0, z), float(rng.uniform(0.5, 1.5))) for z in range(7) for c in range(2)]
    spring = make_spring(
        second_neighbour_law(1.0, 0.45),
        second_neighbour_law(0.8, 0.3),
        random_law(seed),
        cutoff=2.0,
    )

    # Random device law may couple the chains at distance 1 (rungs) and sqrt(2), sqrt(5).
    def spring_all(a, b):
        d = np.linalg.norm(a["pos"] - b["pos"])
        if a["region"] == b["region"] == "D" and d <= 2.3:
            return random_law(seed)(d, a, b)
        return spring(a, b)

    return build_junction(cell_l, 3.0, cell_r, 3.0, device, 7.0, spring_all)


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


def transverse_ladder(theta=0.9, n_device=9):
    """Two-leg ladder periodic along x with a transverse Bloch phase theta: complex Hermitian blocks."""
    rng = np.random.default_rng(4)
    cell_l = [((c, 0, z), 1.0 + 0.3 * c) for z in range(3) for c in range(2)]
    cell_r = [((c, 0, z), 0.7) for z in range(3) for c in range(2)]
    device = [((c, 0, z), float(rng.uniform(0.5, 1.5))) for z in range(n_device) for c in range(2)]

    def law(k1, k2, kx):
        def f(d, a, b):
            if abs(d - 1) < 1e-9:
                return k1 if a["pos"][0] == b["pos"][0] else kx
            return k2 if abs(d - 2) < 1e-9 and a["pos"][0] == b["pos"][0] else 0.0

        return f

    spring = make_spring(law(1.0, 0.4, 0.5), law(1.5, 0.2, 0.8), random_law(9, 0.3, 1.5), cutoff=2.0)
    return build_junction(cell_l, 3.0, cell_r, 3.0, device, float(n_device), spring, transverse=(2.0, theta))


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
