"""Batched MACE forces (hpc_itc.core.mlip.evaluate_forces): one model call for several structures."""

import numpy as np
import pytest
from ase.calculators.emt import EMT

from hpc_itc.core.mlip import evaluate_forces
from hpc_itc.core.structure import cubic_layer_cell

A_EMT = 3.59  # EMT's cubic Cu lattice constant (Å)

# ---- 5. batched MACE forces -----------------------------------------------------------------------
def _displaced_structures(n=5):
    from ase.build import bulk

    out = []
    for k in range(n):
        atoms = (bulk("C", "diamond", a=3.57, cubic=True).repeat((2, 2, 1)) if k % 2
                 else bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1 + k)))
        atoms.rattle(0.03, seed=k)
        out.append(atoms)
    return out


def test_batched_mace_forces_equal_one_by_one():
    from hpc_itc.core import mlip

    calc = mlip.load_calculator("default", dtype="float64")
    structures = _displaced_structures()
    one = evaluate_forces(calc, [a.copy() for a in structures], batch_size=1)
    for batch in (2, 5):
        many = evaluate_forces(calc, [a.copy() for a in structures], batch_size=batch)
        assert max(np.abs(x - y).max() for x, y in zip(one, many)) < 1e-10
    assert max(np.abs(x).max() for x in one) > 1e-2  # real forces, not zeros


def test_batched_falls_back_for_other_calculators():
    structures = [cubic_layer_cell("cu", A_EMT).atoms().repeat((3, 3, 3)) for _ in range(2)]
    structures[1].rattle(0.02, seed=1)
    got = evaluate_forces(EMT(), structures, batch_size=4)
    atoms = structures[1].copy()
    atoms.calc = EMT()
    assert np.abs(got[1] - atoms.get_forces()).max() < 1e-12


def test_batched_mace_forces_on_gpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no GPU here: the batched path was tested on the CPU only")
    from hpc_itc.core import mlip

    calc = mlip.load_calculator("default", device="cuda", dtype="float64")
    structures = _displaced_structures()
    one = evaluate_forces(calc, [a.copy() for a in structures], batch_size=1)
    many = evaluate_forces(calc, [a.copy() for a in structures], batch_size=len(structures))
    assert max(np.abs(x - y).max() for x, y in zip(one, many)) < 1e-10


