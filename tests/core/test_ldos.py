"""LDOS from scattering states: a junction of one material with itself gives phonopy's projected DOS."""

import numpy as np
import pytest

from hpc_itc.core.force_constants import real_space_ifc
from hpc_itc.core.ldos import broadened, overlap_factor, scattering_amplitudes
from hpc_itc.core.transport.system import homogeneous_system


@pytest.fixture(scope="module")
def cu_phonopy(emt_cu_phonopy):
    return emt_cu_phonopy


def test_identical_junction_ldos_is_phonopy_pdos(cu_phonopy):
    phonon, cell = cu_phonopy
    ifc = real_space_ifc(phonon, cell)  # untruncated: exactly phonopy's force constants
    system = homogeneous_system(ifc, 4)
    mesh = (3, 3, 4)
    freq, weight = [], []
    for direction in ("left_to_right", "right_to_left"):
        for i in range(mesh[0]):
            for j in range(mesh[1]):
                part = scattering_amplitudes(system, direction, mesh, i, j)
                freq.append(part["frequency"])
                weight.append(part["weight"])
    freq = np.concatenate(freq)
    weight = np.concatenate(weight)
    grid = np.linspace(0.5, 9.0, 200)
    sigma = 0.3
    ldos = broadened(freq, weight, grid, sigma) / np.prod(mesh)

    # reference: phonopy's frequencies, eigenvectors and group velocities on the same Gamma-centred
    # mesh.  Modes standing along z (v_z = 0, on mirror planes) and the acoustic modes at Gamma are
    # incident from neither side, so Eq. 7 (and the reference) sums over the propagating ones.
    qpoints = [[i / mesh[0], j / mesh[1], k / mesh[2]] for i in range(mesh[0]) for j in range(mesh[1]) for k in range(mesh[2])]
    phonon.run_qpoints(qpoints, with_eigenvectors=True, with_group_velocities=True)
    d = phonon.get_qpoints_dict()
    f = d["frequencies"].ravel()
    vz = d["group_velocities"][..., 2].ravel()  # Cartesian z, our transport direction
    w = (np.abs(d["eigenvectors"]) ** 2).sum(axis=1).ravel()  # one atom: |e|^2 summed over x, y, z
    keep = (f > 1e-3) & (np.abs(vz) > 1e-6 * np.abs(vz).max())
    reference = broadened(f[keep], w[keep][:, None], grid, sigma)[:, 0] / np.prod(mesh)
    assert keep.sum() == len(freq)  # the same modes, from both directions together
    for atom in range(system.device.n_atoms):
        assert np.allclose(ldos[:, atom], reference, rtol=1e-6, atol=1e-9 * reference.max())
    # one atom per layer cell: each mode puts weight 1 on every atom of a perfect crystal
    assert np.allclose(weight, 1.0, rtol=1e-8)


def test_overlap_factor_known_answers():
    f = np.linspace(0, 10, 10001)
    box1 = np.where(f < 4, 1.0, 0.0)
    box2 = np.where((f >= 2) & (f < 6), 1.0, 0.0)
    # S = overlap length / (len1 * len2) = 2 / 16
    assert overlap_factor(f, box1, box2) == pytest.approx(2 / 16, rel=1e-3)
    assert overlap_factor(f, 3 * box1, box2) == pytest.approx(2 / 16, rel=1e-3)  # scale invariant
