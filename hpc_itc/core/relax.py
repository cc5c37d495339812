"""Relaxation with an ASE optimizer: bulk lattices of the leads, then the interface.

1. ``lattice = "model"``: the unstrained side's cubic lattice constant is relaxed
   with the MLIP, and the strained side's layer step (out-of-plane) is relaxed at
   the shared in-plane lattice, so both leads are stress-free along z.
2. ``registry_search``: a rigid scan of in-plane shift x gap on a thin slab picks the
   registry of lowest energy (:mod:`hpc_itc.core.interface`); otherwise the builder's
   registry (the bonded one by default) is kept.
3. The slab is rebuilt with these leads and its device atoms are relaxed to fmax.
   The left buffer is held at bulk positions; with ``relax_gap`` the right buffer
   moves as one rigid block along z (:class:`RigidZ`), so the gap and the device
   length relax and the device layers away from the interface keep the leads'
   spacing; without it both buffers are held.  A seeded rattle of the device atoms
   (``rattle_A``) can break a symmetry that would hold the slab on a saddle.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.constraints import FixAtoms
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE, LBFGS

from hpc_itc.config import RelaxSettings
from hpc_itc.core import interface as itf
from hpc_itc.core.structure import Heterostructure, InterfaceSpec, LayerCell, build, cubic_layer_cell, lead_cells, resolve_registry

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


class RigidZ:
    """ASE constraint: the atoms ``indices`` move together along z only (one collective coordinate).

    The force on the block is the sum of its atoms' z forces, handed to each atom as the mean (the
    projection of the force on the collective coordinate, so energy and forces stay consistent for the
    optimizer); its step is the mean z step of the block.
    """

    def __init__(self, indices):
        self.index = np.asarray(indices, dtype=int)

    def get_removed_dof(self, atoms) -> int:
        return 3 * len(self.index) - 1

    def adjust_positions(self, atoms, new) -> None:
        old = atoms.positions[self.index]
        dz = float((new[self.index, 2] - old[:, 2]).mean())
        new[self.index] = old
        new[self.index, 2] += dz

    def adjust_forces(self, atoms, forces) -> None:
        fz = float(forces[self.index, 2].mean())
        forces[self.index] = 0.0
        forces[self.index, 2] = fz

    def index_shuffle(self, atoms, ind) -> None:  # pragma: no cover - ASE API; slabs are never re-ordered
        raise NotImplementedError

    def todict(self) -> dict:
        return {"name": "RigidZ", "kwargs": {"indices": self.index.tolist()}}

    def __repr__(self) -> str:
        return f"RigidZ({len(self.index)} atoms)"


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
    spec: InterfaceSpec | None = None  # the spec the slab was built from (registry and starting gap filled in)
    registry: itf.RegistryScan | None = None
    rattle_max_A: float = 0.0
    right_buffer_dz_A: float = 0.0  # how far the right buffer moved along z (relax_gap)
    right_buffer_force_z_eV_A: float = 0.0  # total z force left on the right buffer


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
                    on_step=None, relax_gap: bool = False) -> tuple[list[float], list[float], bool, np.ndarray]:
    """Relax device atoms in place; returns (energy trace, fmax trace, converged, final unconstrained forces eV/Å).

    The left buffer is fixed; the right buffer is fixed too, or with ``relax_gap`` moves rigidly along z.
    The traces end at the final positions (ASE calls observers before each step and stops without one).
    """
    atoms: Atoms = het.atoms
    if relax_gap:
        atoms.set_constraint([FixAtoms(indices=np.flatnonzero(het.region == 0)), RigidZ(np.flatnonzero(het.region == 2))])
    else:
        atoms.set_constraint(FixAtoms(indices=np.flatnonzero(het.region != 1)))
    atoms.calc = calculator
    energies: list[float] = []
    fmaxes: list[float] = []
    raw: list[np.ndarray] = []

    def record() -> None:
        forces = atoms.get_forces()  # constrained forces: fixed atoms report zero
        raw[:] = [atoms.get_forces(apply_constraint=False)]  # the calculator's cached result, no new call
        energies.append(float(atoms.get_potential_energy()))
        fmaxes.append(float(np.sqrt((forces**2).sum(axis=1)).max()))
        if on_step is not None:
            on_step(len(energies), energies[-1], fmaxes[-1])

    opt = OPTIMIZERS[optimizer](atoms, logfile=None)
    opt.attach(record, interval=1)
    converged = bool(opt.run(fmax=fmax, steps=max_steps))
    atoms.set_constraint()
    atoms.calc = None
    return energies, fmaxes, converged, raw[0]


GAP_GRID_A = np.round(np.arange(1.0, 4.01, 0.2), 10)  # rigid gaps scanned per shift (refined around the best)


def scan_slab_spec(spec: InterfaceSpec, layers: int) -> InterfaceSpec:
    """Thin slab of ``layers`` cells per side (no buffers) for the registry scan, same termination."""
    return replace(spec, n_cells_left=layers, n_cells_right=layers, buffer_cells=0)


def search_registry(spec: InterfaceSpec, left: LayerCell, right: LayerCell, calculator, n_grid: int, layers: int,
                    on_call=None) -> itf.RegistryScan:
    """Rigid in-plane shift x gap scan of a thin slab (symmetry-reduced grid), starting from ``spec``'s registry."""
    spec = resolve_registry(spec, left, right)
    thin = scan_slab_spec(spec, layers)
    probe = build(replace(thin, interface_shift_frac=(0.0, 0.0)), left, right)
    ops = [itf.half_crystal_ops(probe.atoms[np.flatnonzero(probe.side == s)]) for s in (0, 1)]
    shifts, owner = itf.irreducible_shifts(n_grid, ops[0], ops[1], spec.inplane_repeat)

    def energy(shift, gap) -> float:
        het = build(replace(thin, interface_shift_frac=shift, interface_spacing_A=gap), left, right)
        het.atoms.calc = calculator
        if on_call is not None:
            on_call()
        return float(het.atoms.get_potential_energy())

    return itf.scan_registry(energy, shifts, owner, spec.interface_shift_frac, GAP_GRID_A)


def rattle_device(het: Heterostructure, amplitude_A: float, seed: int) -> float:
    """Gaussian displacement (std ``amplitude_A``) of the device atoms, reproducible from ``seed``; returns the largest."""
    if amplitude_A <= 0:
        return 0.0
    rng = np.random.default_rng(seed)
    dev = het.device_indices
    step = rng.normal(scale=amplitude_A, size=(len(dev), 3))
    het.atoms.positions[dev] += step
    return float(np.linalg.norm(step, axis=1).max())


def relax(spec: InterfaceSpec, a_left: float, a_right: float, calculator, settings: RelaxSettings, on_step=None,
          on_scan=None) -> RelaxResult:
    left, right, strain, lattice_constants = relax_leads(spec, a_left, a_right, calculator, settings.lattice)
    spec = resolve_registry(spec, left, right)
    scan = None
    if settings.registry_search:
        scan = search_registry(spec, left, right, calculator, settings.registry_grid, settings.registry_layers, on_scan)
        k = scan.chosen
        spec = replace(spec, interface_shift_frac=tuple(float(v) for v in scan.shifts_frac[k]),
                       interface_spacing_A=float(scan.best_gap_A[k]))
    het = build(spec, left, right)
    rattled = rattle_device(het, settings.rattle_A, settings.rattle_seed)
    buffer_right = np.flatnonzero(het.region == 2)
    z0 = float(het.atoms.positions[buffer_right, 2].mean()) if len(buffer_right) else 0.0
    energies, fmaxes, converged, forces = relax_interface(het, calculator, settings.fmax_eV_A, settings.max_steps,
                                                          settings.optimizer, on_step=on_step, relax_gap=settings.relax_gap)
    dz = float(het.atoms.positions[buffer_right, 2].mean()) - z0 if len(buffer_right) else 0.0
    fz = float(forces[buffer_right, 2].sum()) if len(buffer_right) else 0.0
    return RelaxResult(left, right, strain, het, energies, fmaxes, converged, lattice_constants, spec, scan, rattled, dz, fz)


__all__ = ["relax", "RigidZ", "search_registry", "rattle_device", "relax_leads", "relax_interface", "relax_cubic_lattice", "relax_layer_step", "RelaxResult", "cubic_layer_cell"]
