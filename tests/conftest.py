import os
import sys

import pytest

# the tests' own helper modules (small_input.py) sit next to this file
sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from small_input import SMALL  # noqa: E402


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One complete run of the small input on the default model, shared by the end-to-end tests."""
    from hpc_itc.cli import main

    folder = tmp_path_factory.mktemp("run")
    path = folder / "in.toml"
    path.write_text(SMALL.format(out="small.h5"))
    assert main([str(path)]) == 0
    return path, folder / "small.h5"


@pytest.fixture(scope="session")
def finished_run_summary(finished_run):
    from hpc_itc.tools.summary import summary

    return summary(finished_run[1])


@pytest.fixture(scope="session")
def emt_cu_phonopy():
    """phonopy object with EMT force constants of the Cu layer cell (a = 3.59 Å), and the cell."""
    import numpy as np
    from ase.calculators.emt import EMT

    from hpc_itc.core.force_constants import displaced_atoms, make_phonopy, produce
    from hpc_itc.core.structure import cubic_layer_cell

    cell = cubic_layer_cell("cu", 3.59).atoms()
    phonon = make_phonopy(cell, (4, 4, 5), 0.01, 1e-5)
    forces = []
    for k in range(len(phonon.supercells_with_displacements)):
        atoms = displaced_atoms(phonon, k)
        atoms.calc = EMT()
        forces.append(atoms.get_forces())
    produce(phonon, np.array(forces))
    return phonon, cell
