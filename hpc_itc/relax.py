"""Relaxation with an ASE optimizer: bulk lattices of the leads, then the interface.

1. ``lattice = "model"``: the unstrained side's cubic lattice constant is relaxed
   with the MLIP, and the strained side's layer step (out-of-plane) is relaxed at
   the shared in-plane lattice, so both leads are stress-free along z.
2. The slab is rebuilt with these leads and its device atoms are relaxed to
   fmax (buffer layers held at bulk positions); the energy and fmax trace is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.constraints import FixAtoms
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE, LBFGS

from .structure import Heterostructure, InterfaceSpec, LayerCell, build, cubic_layer_cell, lead_cells

OPTIMIZERS = {"FIRE": FIRE, "BFGS": BFGS, "LBFGS": LBFGS}
_ASE_BULK = {"cu": ("Cu", "fcc"), "diamond": ("C", "diamond")}


def relax_cubic_lattice(material: str, a_guess_A: float, calculator, fmax: float = 1e-4, steps: int = 200) -> float:
    """Cubic lattice constant at zero pressure (Å) from a hydrostatic cell relaxation."""
    symbol, kind = _ASE_BULK[material]
    atoms = bulk(symbol, kind, a=a_guess_A, cubic=True)
    atoms.calc = calculator
    opt = BFGS(FrechetCellFilter(atoms, hydrostatic_strain=True), logfile=None)
    opt.run(fmax=fmax, steps=steps)
    return float(np.cbrt(atoms.get_volume() / len(atoms) * (4 if kind == "fcc" else 8)))


def relax_layer_step(cell: LayerCell, calculator, fmax: float = 1e-4, steps: int = 200) -> float:
    """Layer step d (Å) at fixed in-plane lattice, zero zz stress."""
    atoms = cell.conventional()
    atoms.calc = calculator
    opt = BFGS(FrechetCellFilter(atoms, mask=[0, 0, 1, 0, 0, 0]), logfile=None)
    opt.run(fmax=fmax, steps=steps)
    return float(atoms.cell[2, 2] / 2.0)


@dataclass
class RelaxResult:
    left: LayerCell
    right: LayerCell
    strain: dict
    heterostructure: Heterostructure
    energy_trace_eV: list[float] = field(default_factory=list)
    fmax_trace_eV_A: list[float] = field(default_factory=list)
    converged: bool = False
    lattice_constants_A: dict = field(default_factory=dict)


def relax_leads(spec: InterfaceSpec, a_left: float, a_right: float, calculator, lattice: str) -> tuple[LayerCell, LayerCell, dict, dict]:
    """Lead layer cells on the shared in-plane lattice (relaxed with the MLIP when lattice == 'model')."""
    if lattice == "model":
        a_left = relax_cubic_lattice(spec.left_material, a_left, calculator)
        a_right = relax_cubic_lattice(spec.right_material, a_right, calculator)
    left, right, strain = lead_cells(spec, a_left, a_right)
    if lattice == "model":
        strained = left if spec.strained_side == "left" else right
        step = relax_layer_step(strained, calculator)
        left, right, strain = lead_cells(spec, a_left, a_right, strained_layer_step_A=step)
    return left, right, strain, {"left": a_left, "right": a_right}


def relax_interface(het: Heterostructure, calculator, fmax: float, max_steps: int, optimizer: str,
                    on_step=None) -> tuple[list[float], list[float], bool]:
    """Relax device atoms (buffers fixed) in place; returns (energy trace, fmax trace, converged)."""
    atoms: Atoms = het.atoms
    atoms.set_constraint(FixAtoms(indices=np.flatnonzero(het.region != 1)))
    atoms.calc = calculator
    energies: list[float] = []
    fmaxes: list[float] = []

    def record() -> None:
        forces = atoms.get_forces()  # constrained forces: fixed atoms report zero
        energies.append(float(atoms.get_potential_energy()))
        fmaxes.append(float(np.sqrt((forces**2).sum(axis=1)).max()))
        if on_step is not None:
            on_step(len(energies), energies[-1], fmaxes[-1])

    opt = OPTIMIZERS[optimizer](atoms, logfile=None)
    opt.attach(record, interval=1)
    converged = bool(opt.run(fmax=fmax, steps=max_steps))
    atoms.set_constraint()
    atoms.calc = None
    return energies, fmaxes, converged


def relax(spec: InterfaceSpec, a_left: float, a_right: float, calculator, relax_cfg: dict, on_step=None) -> RelaxResult:
    left, right, strain, lattice_constants = relax_leads(spec, a_left, a_right, calculator, relax_cfg["lattice"])
    het = build(spec, left, right)
    energies, fmaxes, converged = relax_interface(het, calculator, relax_cfg["fmax_eV_A"], relax_cfg["max_steps"],
                                                  relax_cfg["optimizer"], on_step=on_step)
    return RelaxResult(left, right, strain, het, energies, fmaxes, converged, lattice_constants)


__all__ = ["relax", "relax_leads", "relax_interface", "relax_cubic_lattice", "relax_layer_step", "RelaxResult", "cubic_layer_cell"]
