"""The transport stage's numerics on 3D crystals: identical junction, mass junction, Caroli, reciprocity."""

import numpy as np
import pytest

from hpc_itc.core.force_constants import real_space_ifc
from hpc_itc.core.harmonic import OMEGA_UNIT_RAD_S, RealSpaceIFC
from hpc_itc.core.transport import landauer
from hpc_itc.core.transport.scattering import caroli_transmission, solve_scattering
from hpc_itc.core.transport.solve import solve_column
from hpc_itc.core.transport.system import InterfaceSystem, homogeneous_system


@pytest.fixture(scope="module")
def cu_bulk(emt_cu_phonopy):
    phonon, cell = emt_cu_phonopy
    ifc, _ = real_space_ifc(phonon, cell).truncated(4.0)
    return ifc


def _h(result, ifc, mesh, temps):
    omega = result["omega"] * OMEGA_UNIT_RAD_S
    speed = np.abs(result["vz"]) * OMEGA_UNIT_RAD_S * 1e-10
    volume = abs(np.linalg.det(ifc.lattice))
    h = landauer.conductance_MW_m2K(omega, speed, result["transmission"], temps, volume, int(np.prod(mesh)))
    rad = landauer.radiation_limit_MW_m2K(omega, speed, temps, volume, int(np.prod(mesh)))
    return h, rad


@pytest.mark.parametrize("repeat", [(1, 1), (2, 1)])
def test_identical_junction_transmits_everything(cu_bulk, repeat):
    system = homogeneous_system(cu_bulk, 4, repeat)
    mesh = (3, 3, 4)
    temps = np.array([100.0, 300.0])
    for direction in ("left_to_right", "right_to_left"):
        parts = [solve_column(system, direction, mesh, i, j) for i in range(mesh[0]) for j in range(mesh[1])]
        result = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        assert len(result["omega"]) > 20
        assert np.allclose(result["transmission"], 1.0, atol=1e-8)
        assert np.allclose(result["reflection"], 0.0, atol=1e-8)
        h, rad = _h(result, cu_bulk, mesh, temps)
        assert np.allclose(h, rad, rtol=1e-6)


def heavy(ifc: RealSpaceIFC, factor: float) -> RealSpaceIFC:
    return RealSpaceIFC(ifc.lattice, ifc.positions, ifc.masses * factor, ifc.i, ifc.j, ifc.shift, ifc.phi)


def mass_junction(cu_bulk, factor=3.0) -> InterfaceSystem:
    """Cu | Cu with the masses of the right half multiplied: same springs, a pure mass mismatch."""
    base = homogeneous_system(cu_bulk, 4)
    right_prim = heavy(cu_bulk, factor)
    right = homogeneous_system(right_prim, 4).right
    n_left = base.device.n_atoms // 2
    masses = base.device.masses.copy()
    masses[n_left:] *= factor
    device = RealSpaceIFC(base.device.lattice, base.device.positions, masses, base.device.i, base.device.j, base.device.shift, base.device.phi)
    return InterfaceSystem(cu_bulk, right_prim, base.left, right, device, (1, 1))


def test_mass_junction_conserves_energy_and_matches_caroli(cu_bulk):
    system = mass_junction(cu_bulk)
    mesh = (4, 4, 4)
    result = solve_column(system, "left_to_right", mesh, 1, 0)
    assert len(result["omega"]) > 3
    assert np.all(np.abs(result["transmission"] + result["reflection"] - 1) < 1e-8)
    assert np.all(result["transmission"] < 1 - 1e-3)  # a real mismatch scatters
    theta = 2 * np.pi * np.array([1 / 4, 0])
    left, right, h_d, v_ld, v_dr = system.blocks(theta)
    for omega in result["omega"][:4]:
        sm = solve_scattering(left, right, h_d, v_ld, v_dr, omega)
        t_left, _ = sm.transmission_from_left()
        t_right, _ = sm.transmission_from_right()
        caroli = caroli_transmission(left, right, h_d, v_ld, v_dr, omega)
        assert t_left.sum() == pytest.approx(caroli, abs=1e-8)
        assert t_right.sum() == pytest.approx(t_left.sum(), abs=1e-8)  # reciprocity at fixed (k_par, omega)


def test_normal_incidence_mass_junction_acoustic_limit(cu_bulk):
    """Long-wavelength LA at normal incidence: T -> 4 Z1 Z2 / (Z1 + Z2)^2 with Z = rho c (acoustic mismatch)."""
    factor = 3.0
    system = mass_junction(cu_bulk, factor)
    mesh = (1, 1, 200)
    result = solve_column(system, "left_to_right", mesh, 0, 0)
    first = result["mesh_index"][:, 2] == 1
    la = np.argmax(np.where(first, result["omega"], -1))
    # same springs, masses x factor: c2 = c1 / sqrt(factor), rho2 = factor rho1 -> Z2 = sqrt(factor) Z1
    r = np.sqrt(factor)
    expected = 4 * r / (1 + r) ** 2
    assert result["transmission"][la] == pytest.approx(expected, rel=2e-3)
