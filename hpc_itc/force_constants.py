"""Second-order force constants by finite displacements (phonopy), forces from the MLIP.

Three parts are computed: ``left_lead`` and ``right_lead`` (bulk layer cells on
a supercell) and ``device`` (the relaxed slab on an in-plane supercell).  The
numerical core is phonopy's; this module chooses supercells, distributes the
displaced supercells over ranks (one checkpoint file per finished displacement,
so nothing is ever computed twice) and stores everything in the results file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from . import log as logmod
from .errors import InputError
from .harmonic import RealSpaceIFC
from .parallel import my_share
from .pipeline import load_relaxed
from .results import StageTimer, write_array

_log = logmod.get("force_constants")

STAGE = "force_constants"
PARTS = ("left_lead", "right_lead", "device")


def to_phonopy_atoms(atoms: Atoms) -> PhonopyAtoms:
    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.array(atoms.cell),
                        scaled_positions=atoms.get_scaled_positions(wrap=False), masses=atoms.get_masses())


def make_phonopy(unitcell: Atoms, supercell: tuple[int, int, int], displacement_A: float, symprec: float,
                 plusminus: bool | str = "auto") -> Phonopy:
    """A phonopy object with symmetry-reduced displacements generated."""
    phonon = Phonopy(to_phonopy_atoms(unitcell), supercell_matrix=np.diag(supercell), primitive_matrix="P",
                     symprec=symprec, log_level=0)
    phonon.generate_displacements(distance=displacement_A, is_plusminus=plusminus)
    return phonon


def displaced_atoms(phonon: Phonopy, index: int) -> Atoms:
    sc = phonon.supercells_with_displacements[index]
    return Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)


def inplane_supercell_for(cutoff_A: float, inplane_A: float, requested: int, key: str = "force_constants.supercell_inplane") -> int:
    """Smallest in-plane supercell whose half width exceeds the cutoff, or check the requested one."""
    needed = math.floor(2.0 * cutoff_A / inplane_A) + 1
    if requested == 0:
        return needed
    if requested * inplane_A <= 2.0 * cutoff_A:
        raise InputError(key, f"{requested} x {inplane_A:.3f} Å does not exceed 2 x cutoff_A = {2 * cutoff_A:.2f} Å; allowed: >= {needed}, or 0 for automatic")
    return requested


def z_supercell_for(cutoff_A: float, layer_step_A: float) -> int:
    """Layers along a3 so that pairs within the cutoff have a unique shortest image."""
    return math.floor(2.0 * cutoff_A / layer_step_A) + 1


@dataclass
class PartPlan:
    """What one part needs: its unit cell (unwrapped), supercell and phonopy object."""

    name: str
    unitcell: Atoms
    supercell: tuple[int, int, int]
    phonon: Phonopy

    @property
    def n_displacements(self) -> int:
        return len(self.phonon.supercells_with_displacements)


def plan_parts(left_cell: Atoms, right_cell: Atoms, slab: Atoms, inplane_repeat: tuple[int, int],
               left_step_A: float, right_step_A: float, inplane_A: float, fc_cfg: dict) -> list[PartPlan]:
    """Phonopy objects for the two leads and the device slab (deterministic on every rank)."""
    cutoff, disp, symprec = fc_cfg["cutoff_A"], fc_cfg["displacement_A"], fc_cfg["symprec"]
    n, m = inplane_repeat
    s_prim = inplane_supercell_for(cutoff, inplane_A, 0)
    s_dev_req = fc_cfg["supercell_inplane"]
    s_dev = inplane_supercell_for(cutoff, inplane_A * min(n, m), s_dev_req)
    plans = []
    for name, cell, step in (("left_lead", left_cell, left_step_A), ("right_lead", right_cell, right_step_A)):
        sc = (s_prim, s_prim, z_supercell_for(cutoff, step))
        plans.append(PartPlan(name, cell, sc, make_phonopy(cell, sc, disp, symprec, "auto")))
    # the relaxed slab has small residual forces: +/- displacements cancel them to first order
    sc = (s_dev, s_dev, 1)
    plans.append(PartPlan("device", slab, sc, make_phonopy(slab, sc, disp, symprec, True)))
    return plans


def produce(phonon: Phonopy, forces: np.ndarray) -> dict[str, float]:
    """Force constants from forces; phonopy symmetrisation imposes the sum rule.

    Returns the sum-rule violation before and after (max |sum_j Phi_ij|, eV/Å^2).
    """
    phonon.forces = forces
    phonon.produce_force_constants(calculate_full_force_constants=False)
    before = _asr_violation(phonon.force_constants)
    phonon.symmetrize_force_constants()
    after = _asr_violation(phonon.force_constants)
    return {"asr_violation_before_eV_A2": before, "asr_violation_after_eV_A2": after}


def _asr_violation(fc: np.ndarray) -> float:
    return float(np.abs(fc.sum(axis=1)).max())


def real_space_ifc(phonon: Phonopy, unitcell: Atoms) -> RealSpaceIFC:
    """Pairs in the unwrapped frame of ``unitcell`` (the frame the builder used)."""
    frac = np.linalg.solve(np.array(unitcell.cell).T, unitcell.positions.T).T
    return RealSpaceIFC.from_phonopy(phonon, frac, unitcell.get_masses())


# ---- stage shell: distribution, checkpoints, HDF5 -------------------------------------------
def force_constant_plans(ctx):
    het = load_relaxed(ctx)
    left, right = het.left_lead, het.right_lead
    return het, plan_parts(left.atoms(), right.atoms(), het.atoms, het.inplane_repeat, left.layer_step_A,
                           right.layer_step_A, left.inplane_A, ctx.cfg["force_constants"])


def stage_force_constants(ctx) -> None:
    timer = StageTimer()
    stage = "force_constants"
    het, plans = force_constant_plans(ctx)
    calc = ctx.calculator()
    total = sum(p.n_displacements for p in plans)
    done_before = ctx.finished_tasks(stage, [p.name for p in plans])
    n_done = sum(len(v) for v in done_before.values())
    if ctx.is_root:
        _log.info("force constants: %d displaced supercells (%s), %d already checkpointed, %d ranks",
                  total, ", ".join(f"{p.name} {p.n_displacements} x {len(p.phonon.supercell)} atoms" for p in plans), n_done, ctx.comm.size)
    progress = logmod.Progress(_log, "force evaluations (rank 0 share)", 0, ctx.cfg["run"]["progress_seconds"])
    ok, message = True, ""
    try:
        todo = [(p, t) for p in plans for t in range(p.n_displacements) if t not in done_before[p.name]]
        mine = [todo[k] for k in my_share(range(len(todo)), ctx.comm)]
        progress.total = len(mine)
        for plan, task in mine:
            atoms = displaced_atoms(plan.phonon, task)
            atoms.calc = calc
            forces = atoms.get_forces()
            ctx.results.save_task(stage, plan.name, task, forces=forces)
            progress.update()
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported collectively so no rank hangs
        if ctx.comm.size == 1:
            raise
        ok, message = False, f"{type(exc).__name__}: {exc}"
    ctx.check_all(ok, message)

    def write_all() -> None:
        def write(g) -> None:
            n_calls = 0
            for plan in plans:
                forces = np.array([ctx.results.load_task(stage, plan.name, t)["forces"] for t in range(plan.n_displacements)])
                sums = produce(plan.phonon, forces)
                n_calls += plan.n_displacements
                sub = g.create_group(plan.name)
                cell = plan.unitcell
                write_array(sub, "unitcell_positions", cell.positions, "Å")
                write_array(sub, "unitcell_cell", np.array(cell.cell), "Å")
                write_array(sub, "unitcell_symbols", np.array(cell.get_chemical_symbols(), dtype="S2"))
                write_array(sub, "unitcell_masses", cell.get_masses(), "amu")
                write_array(sub, "supercell_matrix", np.diag(plan.supercell))
                write_array(sub, "displacements", np.array([d[1:4] for d in plan.phonon.displacements]), "Å")
                write_array(sub, "displaced_atoms", np.array([int(d[0]) for d in plan.phonon.displacements]))
                write_array(sub, "forces", forces, "eV/Å")
                write_array(sub, "force_constants", plan.phonon.force_constants, "eV/Å^2",
                            doc="phonopy compact format (unit-cell atom, supercell atom, 3, 3)")
                for k, v in sums.items():
                    sub.attrs[k] = v
                sub.attrs["n_force_evaluations"] = plan.n_displacements
                _log.info("%s: %d force calls, sum-rule violation %.2e -> %.2e eV/Å^2", plan.name, plan.n_displacements,
                          sums["asr_violation_before_eV_A2"], sums["asr_violation_after_eV_A2"])
            g.attrs["n_force_evaluations"] = n_calls
            g.attrs["cutoff_A"] = ctx.cfg["force_constants"]["cutoff_A"]

        ctx.results.write_stage(stage, write, timer.seconds)

    ctx.on_root(write_all)


def load_force_constants(ctx):
    """RealSpaceIFC for each part, from the stored force constants."""
    het, plans = force_constant_plans(ctx)
    out = {}
    with ctx.results.open() as f:
        for plan in plans:
            plan.phonon.force_constants = f["force_constants"][plan.name]["force_constants"][()]
            out[plan.name] = real_space_ifc(plan.phonon, plan.unitcell)
    return het, out
