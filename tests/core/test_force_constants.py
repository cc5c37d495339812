"""Finite-displacement force constants (hpc_itc.core.force_constants): settings, symmetry reduction, fcc points."""

import numpy as np
import pytest
from ase.calculators.emt import EMT

from hpc_itc import config
from hpc_itc.core import force_constants as fc
from hpc_itc.core.phonons import FCC_POINTS_CUBIC, reduced_qpoint
from hpc_itc.core.structure import cubic_layer_cell
from hpc_itc.errors import InputError

A_EMT = 3.59  # EMT's cubic Cu lattice constant (3.5898 Å)


# ---- settings -------------------------------------------------------------------------------
def fc_settings(**keys):
    """[force_constants] through the validator (defaults filled in)."""
    return config.validate({"force_constants": keys}).force_constants


def test_settings_defaults_and_errors():
    base = fc_settings(cutoff_A=4.0)
    assert (base.device_route, base.interface_radius_A, base.batch_size, base.phonon_mesh) == ("full", 0.0, 1, (16, 16, 16))
    assert fc.interface_radius(base) == 10.0 and fc.interface_radius(fc_settings(cutoff_A=4.0, interface_radius_A=7.5)) == 7.5
    assert fc.interface_radius(base, "default") == 10.0  # shipped model: r_max 5 Å x 2 interactions
    for key, bad in (("device_route", "partial"), ("interface_radius_A", -1.0), ("batch_size", 0), ("batch_size", 2.5),
                     ("phonon_mesh", [4, 4])):
        with pytest.raises(InputError) as err:
            fc_settings(**{key: bad})
        assert err.value.key == f"force_constants.{key}"


# ---- 1. symmetry-reduced displacements --------------------------------------------------------
def _emt_fc(phonon):
    forces = []
    for k in range(len(phonon.supercells_with_displacements)):
        atoms = fc.displaced_atoms(phonon, k)
        atoms.calc = EMT()
        forces.append(atoms.get_forces())
    fc.produce(phonon, np.array(forces))
    return phonon.force_constants


def test_symmetry_reduced_displacements_give_the_unreduced_force_constants():
    from phonopy import Phonopy

    cell = cubic_layer_cell("cu", A_EMT).atoms()
    reduced = fc.make_phonopy(cell, (3, 3, 4), 0.01, 1e-5)
    plain = Phonopy(fc.to_phonopy_atoms(cell), supercell_matrix=np.diag((3, 3, 4)), primitive_matrix="P", is_symmetry=False, log_level=0)
    plain.generate_displacements(distance=0.01, is_plusminus=True)
    assert len(reduced.supercells_with_displacements) < len(plain.supercells_with_displacements) == 6
    assert np.abs(_emt_fc(reduced) - _emt_fc(plain)).max() < 1e-6


# ---- 6. lead phonons ------------------------------------------------------------------------------
@pytest.mark.parametrize("strain", [0.0, 0.03])
def test_fcc_points_are_half_reciprocal_vectors(strain):
    lattice = cubic_layer_cell("diamond", 3.567).lattice * np.array([1.0 + strain, 1.0 + strain, 1.0 - strain])[None, :]
    expected = {"G": (0, 0, 0), "X": (0, 0, 0.5), "L": (0.5, 0, 0.5), "W": (0.25, -0.25, 0.5), "X_inplane": (0.5, -0.5, 0)}
    for name, q in expected.items():
        assert np.allclose(reduced_qpoint(lattice, FCC_POINTS_CUBIC[name]), q, atol=1e-12)


