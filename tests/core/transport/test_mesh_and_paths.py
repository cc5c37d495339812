"""Mesh-level speed-ups must not change the physics: closed-channel screen, degenerate-frequency
sharing, in-plane symmetry reduction; and the mode-resolved path maps."""

import numpy as np
import pytest
from springs import DEFAULT_SPRINGS, spring_bulk, spring_interface

from hpc_itc.core.harmonic import OMEGA_UNIT_RAD_S, RealSpaceIFC, bulk_modes
from hpc_itc.core.transport import landauer
from hpc_itc.core.transport.bzpath import lead_path, special_points
from hpc_itc.core.transport.leads import count_propagating, lead_modes
from hpc_itc.core.transport.solve import (
    CLOSED_BY_BOUND,
    CLOSED_BY_COUNT,
    DIRECTION_SIDE,
    SOLVED_RGF,
    ChannelScreen,
    direction_sums,
    path_transmission,
    solve_column,
    solve_orbits,
)
from hpc_itc.core.transport.symmetry import InplaneSymmetry, find_inplane_symmetry, reduce_mesh
from hpc_itc.core.transport.system import build_system, homogeneous_system

# a softer "diamond" than the default springs: its bands overlap Cu's more, so that a
# 4x4x4 mesh has many open-channel solves as well as closed ones
SOFT = dict(DEFAULT_SPRINGS)
SOFT[("C", "C")] = (3.0, 1.54)
SOFT[("C", "Cu")] = (1.5, 2.0)
MESH = (4, 4, 4)
DIRECTIONS = ("left_to_right", "right_to_left")


@pytest.fixture(scope="module")
def small():
    lp, rp, dev, _ = spring_interface(4, 4, 3.0, springs=SOFT)
    return build_system(lp, rp, dev, (1, 1), (4, 4))


def test_screen_and_shared_solves_match_plain_dense(small):
    codes = []
    for direction in DIRECTIONS:
        for i in range(MESH[0]):
            for j in range(MESH[1]):
                fast = solve_column(small, direction, MESH, i, j)
                plain = solve_column(small, direction, MESH, i, j, method="dense", screen=False, group=False)
                assert np.array_equal(fast["mesh_index"], plain["mesh_index"])
                np.testing.assert_allclose(fast["transmission"], plain["transmission"], atol=1e-10)
                np.testing.assert_allclose(fast["reflection"], plain["reflection"], atol=1e-10)
                closed = fast["solve_code"] < SOLVED_RGF
                assert np.all(fast["transmission"][closed] == 0.0) and np.all(fast["reflection"][closed] == 1.0)
                codes.append(fast["solve_code"])
    counts = np.bincount(np.concatenate(codes), minlength=5)
    assert counts[CLOSED_BY_BOUND] > 0 and counts[CLOSED_BY_COUNT] > 0 and counts[SOLVED_RGF] > 20


def test_channel_screen_is_an_outer_bound(small):
    rng = np.random.default_rng(1)
    psi = np.linspace(0, 2 * np.pi, 4001)
    n_closed = n_open = 0
    for theta in rng.uniform(0, 2 * np.pi, (3, 2)):
        for lead in (small.left, small.right):
            h00, h01 = lead.blocks(theta)
            screen = ChannelScreen.of_lead(h00, h01, n_samples=8)  # coarse: the margin must do the work
            h = h00[None] + h01[None] * np.exp(1j * psi)[:, None, None] + h01.conj().T[None] * np.exp(-1j * psi)[:, None, None]
            e = np.linalg.eigvalsh(h)
            assert np.all((e >= screen.lo[None]) & (e <= screen.hi[None]))
            for omega in np.sqrt(np.linspace(1e-4, 1.3 * e.max(), 40)):
                if not screen.may_propagate(omega):
                    n_closed += 1
                    assert count_propagating(h00, h01, omega) == 0
                    assert lead_modes(h00, h01, omega).n_prop_right == 0
                elif count_propagating(h00, h01, omega):
                    n_open += 1
    assert n_closed > 10 and n_open > 10


def test_point_group_of_cu_on_diamond(small):
    sym = find_inplane_symmetry(small)
    assert sym.order == 4 and sym.max_ifc_violation < 1e-12  # C2v: mirrors x -> -x and y -> -y
    diag = {tuple(np.diag(r)) for r in sym.rotations}
    assert diag == {(1, 1, 1), (-1, 1, 1), (1, -1, 1), (-1, -1, 1)}
    assert all(np.allclose(r, np.diag(np.diag(r))) for r in sym.rotations)
    red = reduce_mesh(sym, small.primitive("left").lattice, (4, 4, 4))
    assert len(red.representatives) == 9 and red.n_ops_used == 4
    covered = sorted((i, j) for m in red.members for i, j, _ in m)
    assert covered == [(i, j) for i in range(4) for j in range(4)]
    # a mesh that the mirrors do not map onto itself (N3 not a multiple of N1) is not reduced
    assert len(reduce_mesh(sym, small.primitive("left").lattice, (5, 5, 7)).representatives) == 25


def test_asymmetric_force_constants_reduce_the_group(small):
    dev = small.device
    phi = dev.phi.copy()
    # strengthen one bond and its reverse only: breaks the mirror that maps it elsewhere
    pick = np.flatnonzero((dev.i != dev.j) & (dev.shift[:, 0] == 1) & (dev.shift[:, 1] == 0))[0]
    rev = np.flatnonzero((dev.i == dev.j[pick]) & (dev.j == dev.i[pick]) & np.all(dev.shift == -dev.shift[pick], axis=1))[0]
    bump = 1e-2 * np.abs(dev.phi).max() * np.array([[1.0, 0.3, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 1.0]])
    phi[pick] += bump
    phi[rev] += bump.T
    bad = RealSpaceIFC(dev.lattice, dev.positions, dev.masses, dev.i, dev.j, dev.shift, phi)
    broken = build_system(small.left_primitive, small.right_primitive, bad, (1, 1), (4, 4))
    sym = find_inplane_symmetry(broken)
    assert sym.order < 4 and sym.rejected > 0
    loose = find_inplane_symmetry(broken, ifc_tol=0.1)  # the mismatch is measured, and a tolerance applies
    assert loose.order == 4 and 5e-3 < loose.max_ifc_violation < 0.1


def _run(system, symmetry, temps):
    """Every mode of MESH per direction, solved orbit by orbit (the transport stage's tasks, in one go)."""
    out = {}
    for direction in DIRECTIONS:
        side, _ = DIRECTION_SIDE[direction]
        red = reduce_mesh(symmetry, system.primitive(side).lattice, MESH)
        out[direction] = solve_orbits(system, direction, MESH, red, range(len(red.representatives)))
    return out


def test_symmetry_reduced_mesh_equals_full_mesh(small):
    temps = [40.0, 300.0]
    full = _run(small, InplaneSymmetry.identity(), temps)
    reduced = _run(small, find_inplane_symmetry(small), temps)
    edges = np.arange(0.0, 45.0, 0.5)
    for direction in DIRECTIONS:
        f, r = full[direction], reduced[direction]
        key_f = sorted(zip(map(tuple, f["mesh_index"]), f["band"]))
        key_r = sorted(zip(map(tuple, r["mesh_index"]), r["band"]))
        assert key_f == key_r  # the expanded list is exactly the full mesh's list of modes
        assert (~r["symmetry_image"]).sum() < 0.7 * len(r["omega"])  # ... but less than 70% was computed
        assert np.any(f["transmission"] > 0.05)
        sums_f = direction_sums(small, direction, f, MESH, np.array(temps))
        sums_r = direction_sums(small, direction, r, MESH, np.array(temps))
        np.testing.assert_allclose(sums_r.itc, sums_f.itc, rtol=1e-10)
        np.testing.assert_allclose(sums_r.radiation_limit, sums_f.radiation_limit, rtol=1e-10)
        side, towards = DIRECTION_SIDE[direction]
        for temp in temps:
            spec, cum = [], []
            for d in (f, r):
                omega = d["omega"] * OMEGA_UNIT_RAD_S
                speed = towards * d["vz"] * OMEGA_UNIT_RAD_S * 1e-10
                w = landauer.mode_weight(omega, speed, temp)
                freq = d["omega"] * OMEGA_UNIT_RAD_S / (2 * np.pi * 1e12)
                spec.append(landauer.spectral_transmission(freq, w, d["transmission"], edges))
                cum.append(landauer.cumulative_conductance(freq, w * d["transmission"], edges[1:]))
            np.testing.assert_allclose(spec[1], spec[0], rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(cum[1], cum[0], rtol=1e-10, atol=1e-30)


# ---- mode-resolved maps along the fcc path ------------------------------------------------------
def test_special_points_from_seekpath():
    pts = special_points()
    np.testing.assert_allclose(pts["X"], [0, 0, 0.5])  # X along b3, i.e. the interface normal [001]
    a = 3.615
    q_frac, q_cart, distance, names, index = lead_path(np.array([[a / np.sqrt(2), 0, 0], [0, a / np.sqrt(2), 0],
                                                                  [a / (2 * np.sqrt(2)), a / (2 * np.sqrt(2)), a / 2]]), 40)
    assert names == ["GAMMA", "X", "U|K", "GAMMA", "W", "K", "GAMMA", "L"]
    cubic = {n: q_cart[i] * a / (2 * np.pi) for n, i in zip(names, index)}
    # transport frame -> cubic frame: x || [110], y || [-110]
    to_cubic = lambda v: np.array([(v[0] - v[1]) / np.sqrt(2), (v[0] + v[1]) / np.sqrt(2), v[2]])  # noqa: E731
    np.testing.assert_allclose(to_cubic(cubic["X"]), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(to_cubic(cubic["L"]), [0.5, 0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(sorted(np.abs(to_cubic(cubic["W"]))), [0, 0.5, 1], atol=1e-12)
    np.testing.assert_allclose(sorted(np.abs(to_cubic(cubic["U|K"]))), [0.25, 0.25, 1], atol=1e-12)
    assert np.all(np.diff(distance) >= 0) and distance[index[2] + 1] == distance[index[2]]  # no length across U|K


def test_identical_junction_path_is_transparent_and_partners_point_inwards():
    bulk = spring_bulk("cu", 4.0)
    system = homogeneous_system(bulk, 4)
    q_frac = lead_path(bulk.lattice, 24)[0]
    b = 2 * np.pi * np.linalg.inv(bulk.lattice).T
    for direction, towards in (("left_to_right", 1), ("right_to_left", -1)):
        res = path_transmission(system, direction, q_frac)
        ok = np.isfinite(res["transmission"])
        assert ok.mean() > 0.95
        np.testing.assert_allclose(res["transmission"][ok], 1.0, atol=1e-8)
        assert np.all(towards * res["vz"][ok] > 0)
        for n, qf in enumerate(q_frac):
            _, vz, _ = bulk_modes(bulk, 2 * np.pi * qf)
            for band in np.flatnonzero(ok[n]):
                used = res["q_used"][n, band] @ b
                if towards * vz[band] > 1e-3:  # already incident: the mode itself
                    np.testing.assert_allclose(used, qf @ b, atol=1e-12)
                elif towards * vz[band] < -1e-3:  # moving away: its partner at the mirrored q_z
                    np.testing.assert_allclose(used, (qf @ b) * [1, 1, -1], atol=1e-12)


def test_path_on_an_interface_is_physical(small):
    q_frac = lead_path(small.primitive("right").lattice, 16)[0]
    res = path_transmission(small, "right_to_left", q_frac)
    t = res["transmission"][np.isfinite(res["transmission"])]
    assert t.size > 0.9 * res["transmission"].size
    assert np.all((t >= -1e-12) & (t <= 1 + 1e-12)) and t.max() > 0.05 and t.min() == 0.0
