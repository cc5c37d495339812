"""Model lead and junction builders for the transport-core tests (analytic references in the docstrings).

Units are arbitrary (spring constants and masses of O(1)).
"""

from __future__ import annotations

import numpy as np

from hpc_itc.core.transport.leads import LeadBlocks

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


def mass_junction(k, m1, m2):
    """Left chain m1 | one device atom m2 | right chain m2 (all springs k)."""
    return (
        LeadBlocks(np.array([[2 * k / m1]]), np.array([[-k / m1]])),
        LeadBlocks(np.array([[2 * k / m2]]), np.array([[-k / m2]])),
        np.array([[2 * k / m2]]),
        np.array([[-k / np.sqrt(m1 * m2)]]),
        np.array([[-k / m2]]),
    )


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
