"""Block-tridiagonal (RGF-order) solve of the scattering problem against the dense solve.

Both paths solve the same mode-matching equations; the block elimination must
give the same amplitudes and scattering states to rounding, on devices with
singular and rank-deficient lead couplings, exact channel degeneracies, complex
(transverse-wavevector) blocks, and must fall back to the dense solve when a
block pivot is singular (a bound state that does not couple to the leads).
"""

import numpy as np
import pytest
from chain_models import (
    build_junction,
    chain_cell,
    degenerate_ladder,
    make_spring,
    random_law,
    second_neighbour_law,
    t_spring_junction,
    transverse_ladder,
    wire_junction,
)

from hpc_itc.core.transport.leads import LeadBlocks, lead_modes
from hpc_itc.core.transport.scattering import Junction, block_partition, solve_scattering

FIELDS = ("t_LR", "r_LL", "t_RL", "r_RR", "psi_D_from_left", "psi_D_from_right")


def chain_with_random_device(seed=5, n_device=14):
    """2nd-neighbour chains (rank(h01) = 2 of 3: singular) and a random 14-site device."""
    rng = np.random.default_rng(seed)
    device = [((0, 0, z), float(rng.uniform(0.5, 2.0))) for z in range(n_device)]
    spring = make_spring(second_neighbour_law(1.0, 0.6), second_neighbour_law(1.4, 0.3), random_law(seed), cutoff=2.0)
    return build_junction(chain_cell(3, 1.0), 3.0, chain_cell(3, 0.8), 3.0, device, float(n_device), spring)


CASES = {
    "wire_3d_rank_deficient_h01": (wire_junction, (0.1, 0.25)),
    "chain_singular_h01": (chain_with_random_device, (0.5, 1.3, 2.1)),
    "degenerate_ladder": (lambda: degenerate_ladder(2), (0.6, 1.2, 1.7)),
    "complex_transverse": (transverse_ladder, (0.6, 1.3, 2.0)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("target", [0, 6])
def test_rgf_equals_dense(case, target):
    build, omegas = CASES[case]
    jn = build()
    junction = Junction(*jn.args, target=target)
    assert junction.bounds.size > 3  # really several blocks
    n_channels = 0
    for omega in omegas:
        lm, rm = junction.lead_modes("left", omega), junction.lead_modes("right", omega)
        a = junction.solve(omega, method="rgf", left_modes=lm, right_modes=rm)
        b = junction.solve(omega, method="dense", left_modes=lm, right_modes=rm)
        assert a.solver == "rgf" and b.solver == "dense"
        for name in FIELDS:
            x, y = getattr(a, name), getattr(b, name)
            assert x.shape == y.shape
            if x.size:
                assert np.abs(x - y).max() < 1e-10, (name, omega)
        t, r = a.transmission_from_left()
        np.testing.assert_allclose(t + r, 1.0, atol=1e-10)
        t, r = a.transmission_from_right()
        np.testing.assert_allclose(t + r, 1.0, atol=1e-10)
        n_channels += t.size
    assert n_channels > 0


def test_block_partition_is_block_tridiagonal():
    jn = wire_junction()
    n = jn.h_d.shape[0]
    for target in (0, 30, 100):
        b = block_partition(jn.h_d, jn.v_ld, jn.v_dr, target=target)
        assert b[0] == 0 and b[-1] == n and np.all(np.diff(b) > 0)
        assert np.abs(jn.v_ld[:, b[1] :]).max() == 0 and np.abs(jn.v_dr[: b[-2]]).max() == 0
        for k in range(len(b) - 3):
            assert np.abs(jn.h_d[b[k] : b[k + 1], b[k + 2] :]).max() == 0
        if target:
            fine = block_partition(jn.h_d, jn.v_ld, jn.v_dr)
            # merged blocks respect the target unless a single fine block is larger
            assert np.all((np.diff(b) <= target) | np.isin(np.diff(b), np.diff(fine)))
    with pytest.raises(ValueError):
        Junction(*jn.args, partition=[0, 5, n])  # block 0 couples beyond its neighbour


def test_singular_block_falls_back_to_dense():
    """A device dof with no springs and on-site omega0^2: at omega0 the system is singular.

    The block elimination meets a singular pivot and hands over to the dense
    solve (least squares); the transmission is the closed form without the
    decoupled dof.
    """
    k, kp, m, omega0 = 1.0, 0.35, 1.0, 1.1
    lead = LeadBlocks(np.array([[2 * k / m]]), np.array([[-k / m]]))
    # device: D1 (-kp-) D2 -k- D3 -k- D4, and an isolated dof X between D2 and D3
    h_d = np.zeros((5, 5))
    chain = [0, 1, 3, 4]
    bonds = [(0, 1, kp), (1, 3, k), (3, 4, k)]
    for a, b_, kk in bonds:
        h_d[a, a] += kk
        h_d[b_, b_] += kk
        h_d[a, b_] -= kk
        h_d[b_, a] -= kk
    h_d[0, 0] += k  # bond to the left lead
    h_d[4, 4] += k  # bond to the right lead
    h_d[2, 2] = omega0**2
    v_ld = np.zeros((1, 5))
    v_ld[0, 0] = -k
    v_dr = np.zeros((5, 1))
    v_dr[4, 0] = -k
    junction = Junction(lead, lead, h_d, v_ld, v_dr, target=0)
    assert junction.bounds.size > 3 and chain
    s = junction.solve(omega0, method="rgf")
    assert s.solver == "rgf->dense"
    t, r = s.transmission_from_left()
    np.testing.assert_allclose(t, [t_spring_junction(omega0, k, kp, m)], rtol=1e-9)
    np.testing.assert_allclose(t + r, 1.0, atol=1e-12)
    s2 = junction.solve(0.7, method="rgf")  # away from the bound state: no fallback
    assert s2.solver == "rgf"
    np.testing.assert_allclose(s2.transmission_from_left()[0], [t_spring_junction(0.7, k, kp, m)], rtol=1e-9)


def test_lead_modes_one_side_and_solve_scattering_default():
    jn = chain_with_random_device()
    omega = 1.3
    full = lead_modes(jn.left.h00, jn.left.h01, omega)
    left_only = lead_modes(jn.left.h00, jn.left.h01, omega, sides=("left",))
    assert left_only.evan_right is None
    # the same subspace (orthonormal bases: equal projectors)
    p1 = full.evan_left @ full.evan_left.conj().T
    p2 = left_only.evan_left @ left_only.evan_left.conj().T
    assert np.abs(p1 - p2).max() < 1e-10
    np.testing.assert_allclose(full.lam_right, left_only.lam_right, atol=1e-12)
    with pytest.raises(ValueError, match="not computed"):
        left_only.outgoing_basis("right")
    # the public one-shot API defaults to the block solve and matches the dense one
    wire = wire_junction()
    a = solve_scattering(*wire.args, 0.2)
    b = solve_scattering(*wire.args, 0.2, method="dense")
    assert a.solver == "rgf" and b.solver == "dense"
    assert np.abs(a.t_LR - b.t_LR).max() < 1e-10 and a.t_LR.size
    with pytest.raises(ValueError):
        solve_scattering(*jn.args, omega, method="lu")
