"""Long-wavelength end of the transport sums: the junction's acoustic sum rule, lead channels at low
frequency, and the q_z quadrature at Gamma.

Three known answers:

* a rigid translation of the whole junction costs no energy.  A device whose
  contact rows do not sum to zero with the leads' couplings pins the junction to a
  fixed frame and reflects every long wave (T -> 0 as omega -> 0); restoring the
  sum rule (:func:`enforce_junction_sum_rule`) must give back the unpinned
  junction exactly.
* on the Gamma column of a perfect crystal (T = 1) the q_z sum of Eq. 5 is an
  integral over frequency: sum_b int_0^{nu_top,b} hbar omega df/dT dnu / (N1 N2 A),
  independent of the dispersion.  The plain Riemann sum misses half a cell at
  q_z = 0 (first order in the step); the trapezoid end weights make it second order.
* the scattering matrix is unitary, also at 0.01 THz where a lead's two transverse
  acoustic branches are split only slightly (a strained lead) and their channels'
  cross-currents are at the mercy of rounding unless treated together.
"""

import numpy as np
import pytest
from springs import spring_interface

from hpc_itc.core.force_constants import real_space_ifc
from hpc_itc.core.harmonic import OMEGA_TO_THZ, OMEGA_UNIT_RAD_S, RealSpaceIFC, bulk_modes
from hpc_itc.core.transport import landauer, leads
from hpc_itc.core.transport.qz_sampling import N_ACOUSTIC, qz_end_weights
from hpc_itc.core.transport.solve import OMEGA_MIN_THZ
from hpc_itc.core.transport.system import (
    build_system,
    enforce_junction_sum_rule,
    homogeneous_system,
    incident_modes_at,
    junction_sum_rule_residual,
)


@pytest.fixture(scope="module")
def cu_bulk(emt_cu_phonopy):
    phonon, cell = emt_cu_phonopy
    ifc, _ = real_space_ifc(phonon, cell).truncated(4.0)
    return ifc


def pinned(system, atoms, k_eV_A2):
    """The system with an extra on-site spring k (eV/Å^2, isotropic) on the given device atoms."""
    dev = system.device
    phi = dev.phi.copy()
    phi[dev.onsite_pairs()[list(atoms)]] += k_eV_A2 * np.eye(3)
    device = RealSpaceIFC(dev.lattice, dev.positions, dev.masses, dev.i, dev.j, dev.shift, phi)
    from dataclasses import replace

    return replace(system, device=device, _partition=None)


def gamma_total_transmission(system, freqs_THz):
    junction = system.junction(np.zeros(2))
    return np.array([junction.solve(f / OMEGA_TO_THZ).total_transmission("left") for f in freqs_THz])


def test_pinned_contacts_reflect_long_waves_and_the_sum_rule_restores_them(cu_bulk):
    system = homogeneous_system(cu_bulk, 4)
    assert np.abs(junction_sum_rule_residual(system)).max() < 1e-9
    n = system.device.n_atoms
    contacts = [0, n - 1]  # an atom of each contact principal layer
    bad = pinned(system, contacts, 0.05)
    residual = junction_sum_rule_residual(bad)
    np.testing.assert_allclose(residual[contacts], [0.05 * np.eye(3)] * 2, atol=1e-9)
    freqs = np.array([0.005, 0.02, 0.1, 1.0, 3.0])
    t_perfect = gamma_total_transmission(system, freqs)
    np.testing.assert_allclose(t_perfect, 3.0, atol=1e-8)  # three acoustic channels, all transmitted
    t_pinned = gamma_total_transmission(bad, freqs)
    assert t_pinned[0] < 0.1 and t_pinned[-1] > 2.5  # long waves reflected by the pinning spring
    fixed = enforce_junction_sum_rule(bad)
    assert fixed.sum_rule_correction_eV_A2 == pytest.approx(0.05, rel=1e-9)
    assert np.abs(junction_sum_rule_residual(fixed)).max() < 1e-9
    np.testing.assert_allclose(gamma_total_transmission(fixed, freqs), t_perfect, atol=1e-8)


def test_build_system_restores_the_sum_rule_of_a_slab_device():
    """A spring slab whose device has a pinned contact: build_system hands out the unpinned junction."""
    lp, rp, dev, _ = spring_interface(4, 4, 3.0)
    good = build_system(lp, rp, dev, (1, 1), (4, 4))
    assert good.sum_rule_correction_eV_A2 < 1e-9
    phi = dev.phi.copy()
    phi[dev.onsite_pairs()[dev.n_atoms - 1]] += 0.2 * np.eye(3)
    bad_device = RealSpaceIFC(dev.lattice, dev.positions, dev.masses, dev.i, dev.j, dev.shift, phi)
    fixed = build_system(lp, rp, bad_device, (1, 1), (4, 4))
    assert fixed.sum_rule_correction_eV_A2 == pytest.approx(0.2, rel=1e-9)
    freqs = np.array([0.01, 0.5, 2.0])
    np.testing.assert_allclose(gamma_total_transmission(fixed, freqs), gamma_total_transmission(good, freqs), atol=1e-8)


def test_end_weights_sit_on_the_acoustic_modes_next_to_gamma():
    n3 = 8
    idx = np.array([(i, j, k) for i in range(2) for j in range(2) for k in range(n3) for _ in range(4)])
    band = np.tile(np.arange(4), len(idx) // 4)
    up = qz_end_weights(idx, band, n3, +1)
    down = qz_end_weights(idx, band, n3, -1)
    gamma_acoustic = (idx[:, 0] == 0) & (idx[:, 1] == 0) & (band < N_ACOUSTIC)
    assert np.all(up[gamma_acoustic & (idx[:, 2] == 1)] == 2.0) and np.all(up[gamma_acoustic & (idx[:, 2] == 2)] == 0.5)
    assert np.all(down[gamma_acoustic & (idx[:, 2] == 7)] == 2.0) and np.all(down[gamma_acoustic & (idx[:, 2] == 6)] == 0.5)
    assert np.count_nonzero(up != 1) == np.count_nonzero(down != 1) == 2 * N_ACOUSTIC
    short = qz_end_weights(idx[idx[:, 2] < 4], band[idx[:, 2] < 4], 4, +1)
    assert np.count_nonzero(short == 1.5) == N_ACOUSTIC and np.count_nonzero(short != 1) == N_ACOUSTIC
    assert np.all(qz_end_weights(idx[idx[:, 2] < 2], band[idx[:, 2] < 2], 2, +1) == 1)


def gamma_column_radiation(ifc, n3, weighted, temperature=300.0):
    mesh = (1, 1, n3)
    modes = incident_modes_at(ifc, mesh, 0, 0, +1, OMEGA_MIN_THZ / OMEGA_TO_THZ)
    weights = qz_end_weights(modes.mesh_index, modes.band, n3, +1) if weighted else None
    return landauer.radiation_limit_MW_m2K(modes.omega * OMEGA_UNIT_RAD_S, modes.vz * OMEGA_UNIT_RAD_S * 1e-10,
                                           temperature, abs(np.linalg.det(ifc.lattice)), n3, weights)[0]


def test_gamma_column_sum_is_second_order_with_the_end_weights(cu_bulk):
    """Perfect crystal, k_par = 0: the column sum against the frequency integral it approximates."""
    lattice = np.asarray(cu_bulk.lattice)
    area_m2 = abs(np.linalg.det(lattice)) / lattice[2, 2] * 1e-20
    top, _, _ = bulk_modes(cu_bulk, np.array([0.0, 0.0, np.pi]))  # q = b3/2 = X: each branch rises monotonically to it
    top_THz = np.sort(top) * OMEGA_TO_THZ
    exact = 0.0
    for nu_top in top_THz:
        nu = np.linspace(0.0, nu_top, 20001)
        exact += np.trapezoid(landauer.mode_heat_capacity_J_K(2 * np.pi * nu * 1e12, 300.0), nu * 1e12)
    exact *= 1e-6 / area_m2
    errors = {}
    for n3 in (40, 80, 160):
        errors[n3] = [abs(gamma_column_radiation(cu_bulk, n3, w) / exact - 1) for w in (False, True)]
    # plain: first order, 4 % low at N3 = 40 (the error halves with the step); end weights: ~1e-4 and
    # second order (measured 2.5e-4, 9.4e-5, 2.7e-5; at N3 = 20 the error happens to cross zero)
    assert errors[40][0] > 0.03 and errors[40][0] / errors[160][0] == pytest.approx(4.0, rel=0.1)
    assert all(errors[n][1] < errors[n][0] / 100 for n in errors)
    assert errors[40][1] / errors[160][1] > 6


def test_nearly_degenerate_acoustic_channels_keep_the_scattering_matrix_unitary(cu_bulk, monkeypatch):
    """Mass junction between Cu leads whose TA branches are split by ~5e-4 (xx force constants x 1.001)."""
    from dataclasses import replace

    phi = cu_bulk.phi.copy()
    phi[:, 0, 0] *= 1.001  # keeps the sum rule and Phi_ij = Phi_ji^T; breaks the 4-fold axis slightly
    lead = RealSpaceIFC(cu_bulk.lattice, cu_bulk.positions, cu_bulk.masses, cu_bulk.i, cu_bulk.j, cu_bulk.shift, phi)
    heavy = RealSpaceIFC(lead.lattice, lead.positions, 3 * lead.masses, lead.i, lead.j, lead.shift, lead.phi)
    base = homogeneous_system(lead, 4)
    masses = base.device.masses.copy()
    masses[len(masses) // 2 :] *= 3
    device = RealSpaceIFC(base.device.lattice, base.device.positions, masses, base.device.i, base.device.j,
                          base.device.shift, base.device.phi)
    system = replace(base, right_primitive=heavy, right=homogeneous_system(heavy, 4).right, device=device, _partition=None)
    junction = system.junction(np.zeros(2))

    def unitarity_error(freq_THz):
        sm = junction.solve(freq_THz / OMEGA_TO_THZ)
        s_matrix = np.block([[sm.r_LL, sm.t_RL], [sm.t_LR, sm.r_RR]])
        assert s_matrix.shape == (6, 6)
        return np.abs(s_matrix.conj().T @ s_matrix - np.eye(6)).max()

    errors = [unitarity_error(f) for f in (0.01, 0.05, 0.2)]
    assert max(errors) < 5e-10  # measured 6e-11, 5e-12, 1e-11
    monkeypatch.setattr(leads, "_CROSS_CURRENT_MERGE", np.inf)  # channels of each Bloch factor on their own
    assert unitarity_error(0.01) > 1e-9  # measured 7e-9: the error the merge removes
