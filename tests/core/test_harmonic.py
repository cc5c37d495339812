"""Real-space IFCs and Bloch blocks against phonopy, and principal layers against the bulk."""

import numpy as np
import pytest

from hpc_itc.core.force_constants import real_space_ifc
from hpc_itc.core.harmonic import OMEGA_TO_THZ, PrincipalLayerLead, bulk_modes


@pytest.fixture(scope="module")
def cu_emt(emt_cu_phonopy):
    phonon, cell = emt_cu_phonopy
    return phonon, real_space_ifc(phonon, cell), cell


def test_frequencies_match_phonopy(cu_emt):
    phonon, ifc, cell = cu_emt
    rng = np.random.default_rng(0)
    for q_red in [*rng.random((5, 3)), np.array([0.0, 0.0, 0.5])]:
        phases = 2 * np.pi * q_red
        omega, _, _ = bulk_modes(ifc, phases)
        phonon.run_qpoints([q_red])
        reference = phonon.get_qpoints_dict()["frequencies"][0]
        assert np.allclose(omega * OMEGA_TO_THZ, reference, atol=1e-5)


def test_x_point_degenerate_transverse_and_zero_velocity(cu_emt):
    _, ifc, cell = cu_emt
    a = 3.59
    q = np.array([0, 0, 2 * np.pi / a])  # X along the transport direction
    omega, vz, _ = bulk_modes(ifc, cell.cell @ q)
    f = np.sort(omega * OMEGA_TO_THZ)
    # the tilted supercell is not fully cubic: aliased images split the TA pair by ~1e-5 relative
    assert f[0] == pytest.approx(f[1], rel=1e-4) and f[2] > 1.3 * f[1]
    assert np.allclose(vz, 0, atol=1e-8)


def test_group_velocity_is_derivative_of_frequency(cu_emt):
    _, ifc, cell = cu_emt
    phases = np.array([0.3, 0.7, 1.1])
    a3z = cell.cell[2, 2]
    h = 1e-5
    # q_z changes phi3 only, by a3_z dq_z
    w_p, _, _ = bulk_modes(ifc, phases + [0, 0, a3z * h])
    w_m, _, _ = bulk_modes(ifc, phases - [0, 0, a3z * h])
    _, vz, _ = bulk_modes(ifc, phases)
    assert np.allclose((w_p - w_m) / (2 * h), vz, atol=1e-6)


def test_truncation_restores_sum_rule(cu_emt):
    _, ifc, _ = cu_emt
    short, violation = ifc.truncated(3.0)
    assert len(short.i) < len(ifc.i)
    assert violation < 1e-10
    omega, _, _ = bulk_modes(short, np.zeros(3))
    assert np.allclose(omega, 0, atol=1e-6)


@pytest.mark.parametrize("repeat", [(1, 1), (2, 1)])
def test_principal_layer_blocks_reproduce_bulk(cu_emt, repeat):
    """Eigenvalues of h00 + h01 lam + h10/lam are the bulk frequencies folded onto the principal layer."""
    _, ifc, _ = cu_emt
    short, _ = ifc.truncated(4.0)
    lead = PrincipalLayerLead.from_bulk(short.inplane_supercell(*repeat))
    theta_prim = np.array([0.4, 1.3])
    phi3 = 0.9
    theta = np.array([repeat[0] * theta_prim[0], repeat[1] * theta_prim[1]])
    h00, h01 = lead.blocks(theta)
    lam = np.exp(1j * lead.p * phi3)
    w2 = np.linalg.eigvalsh(h00 + h01 * lam + h01.conj().T / lam)
    folded = []
    for c1 in range(repeat[0]):
        for c2 in range(repeat[1]):
            for l in range(lead.p):
                ph = np.array([(theta[0] + 2 * np.pi * c1) / repeat[0], (theta[1] + 2 * np.pi * c2) / repeat[1], (phi3 * lead.p + 2 * np.pi * l) / lead.p])
                omega, _, _ = bulk_modes(short, ph)
                folded.extend(omega**2)
    assert np.allclose(np.sort(w2), np.sort(folded), atol=1e-9)
    # a bulk eigenvector laid on the principal layer solves the chain equation
    ph = np.array([theta_prim[0], theta_prim[1], phi3])
    omega, _, vecs = bulk_modes(short, ph)
    vec = lead.bloch_vector(vecs[:, 0], ph, repeat)
    residual = (h00 + h01 * lam + h01.conj().T / lam) @ vec - omega[0] ** 2 * vec
    assert np.linalg.norm(residual) < 1e-9 * np.linalg.norm(vec)
