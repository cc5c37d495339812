"""Second-order force constants by finite displacements (phonopy), forces from the MLIP.

Three parts are computed: ``left_lead`` and ``right_lead`` (bulk layer cells on a
supercell) and ``device`` (the relaxed slab on an in-plane supercell).  The numerical
core is phonopy's: symmetry-reduced displacements, the force-constant solve, and the
symmetrisation that imposes Phi_ij = Phi_ji^T and the acoustic sum rule.  This module
chooses supercells, evaluates forces (one displaced supercell per ASE call, or several per
MACE model call with ``force_constants.batch_size``), distributes the displaced supercells
over MPI ranks (one checkpoint file per finished displacement, so nothing is ever computed
twice), and stores everything in the results file.

Device routes (``force_constants.device_route``):

* ``"full"``: every symmetry-independent displacement of the slab is evaluated.
* ``"interface"``: only atoms within ``interface_radius_A`` of the interface plane (and their
  symmetry images) are displaced; 0 (the default) takes the MLIP's receptive field,
  r_max x num_interactions (10 Å for the shipped model).  For the other displacements phonopy gets *bulk* forces,
  F_j = -u . Phi_bulk(i, j), from the lead force constants, mapped pair by pair with the slab's
  (side, layer, in-plane cell, basis) bookkeeping; phonopy's solve and symmetrisation then
  join the two kinds of rows (Phi_ij = Phi_ji^T, sum rule restored).  Atoms farther than the
  MLIP's reach from the interface see a bulk environment, so their rows are bulk rows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from hpc_itc import log as logmod
from hpc_itc.errors import InputError
from hpc_itc.core.harmonic import RealSpaceIFC
from hpc_itc.parallel import my_share
from hpc_itc.store.file import StageTimer, write_array, write_str_list

_log = logmod.get("force_constants")

STAGE = "force_constants"
PARTS = ("left_lead", "right_lead", "device")
LEADS = ("left_lead", "right_lead")
DEVICE_ROUTES = ("full", "interface")

# settings this module reads with defaults, so it works before the schema has them
DEFAULTS = {"device_route": "full", "interface_radius_A": 0.0, "batch_size": 1, "phonon_mesh": [16, 16, 16]}


def settings(fc_cfg: dict) -> dict:
    """The force-constant settings with defaults filled in and checked (InputError naming the key)."""
    out = {k: fc_cfg.get(k, v) for k, v in DEFAULTS.items()}
    if out["device_route"] not in DEVICE_ROUTES:
        raise InputError("force_constants.device_route", f"got {out['device_route']!r}; allowed: one of 'full', 'interface'")
    r = out["interface_radius_A"]
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r < 0:
        raise InputError("force_constants.interface_radius_A", f"got {r!r}; allowed: a number >= 0 (Å; 0: the MLIP's receptive field)")
    b = out["batch_size"]
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise InputError("force_constants.batch_size", f"got {b!r}; allowed: an integer >= 1")
    mesh = out["phonon_mesh"]
    if not (isinstance(mesh, (list, tuple)) and len(mesh) == 3 and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in mesh)):
        raise InputError("force_constants.phonon_mesh", f"got {mesh!r}; allowed: a list of 3 integers >= 1")
    out["interface_radius_A"] = float(r)
    out["phonon_mesh"] = [int(x) for x in mesh]
    return out


# ---- phonopy core -----------------------------------------------------------------------------
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
    """What one part needs: its unit cell (unwrapped), supercell and phonopy object.

    ``tasks`` are the displacement indices evaluated with the MLIP (None: all of them);
    ``zone`` marks the unit-cell atoms whose rows come from MLIP forces (None: all).
    """

    name: str
    unitcell: Atoms
    supercell: tuple[int, int, int]
    phonon: Phonopy
    tasks: list[int] | None = None
    zone: np.ndarray | None = None
    radius_A: float | None = None  # interface zone radius (interface route)

    @property
    def n_displacements(self) -> int:
        """Symmetry-reduced displacements of the whole part (phonopy's count)."""
        return len(self.phonon.supercells_with_displacements)

    @property
    def task_ids(self) -> list[int]:
        return list(range(self.n_displacements)) if self.tasks is None else list(self.tasks)

    @property
    def n_force_evaluations(self) -> int:
        return len(self.task_ids)

    @property
    def n_displacements_naive(self) -> int:
        """6 x atoms of the unit cell: +/- x, y, z for every atom, no symmetry."""
        return 6 * len(self.unitcell)


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


def interface_radius(fc_cfg: dict, model: str | None = None) -> float:
    """The interface zone's radius (Å): the setting, or for 0 the MLIP's receptive field.

    A MACE model with ``num_interactions`` message-passing layers of cutoff ``r_max`` sees
    ``r_max x num_interactions`` far (10 Å for the shipped model); an atom that far from the
    interface has (nearly) bulk force constants.  Without a model 0 means 10 Å.
    """
    radius = settings(fc_cfg)["interface_radius_A"]
    if radius > 0:
        return radius
    if model is None:
        return 10.0
    from hpc_itc.core import mlip

    summary = mlip.model_summary(model)
    return float(summary.r_max_A * summary.num_interactions)


def plans_for(het, fc_cfg: dict, model: str | None = None) -> list[PartPlan]:
    """Plans of a heterostructure, with the device restricted to the interface zone if asked."""
    left, right = het.left_lead, het.right_lead
    plans = plan_parts(left.atoms(), right.atoms(), het.atoms, het.inplane_repeat, left.layer_step_A,
                       right.layer_step_A, left.inplane_A, fc_cfg)
    if settings(fc_cfg)["device_route"] == "interface":
        device = plans[2]
        device.radius_A = interface_radius(fc_cfg, model)
        device.tasks, device.zone, _ = interface_zone(het, device.phonon, device.radius_A)
    return plans


def produce(phonon: Phonopy, forces: np.ndarray) -> dict[str, float]:
    """Force constants from forces; phonopy symmetrisation imposes the sum rule.

    Returns the sum-rule violation before and after (max |sum_j Phi_ij|, eV/Å^2).
    """
    phonon.forces = forces
    phonon.produce_force_constants(calculate_full_force_constants=False)
    before = _asr_violation(phonon.force_constants)
    phonon.symmetrize_force_constants(show_drift=False)
    after = _asr_violation(phonon.force_constants)
    return {"asr_violation_before_eV_A2": before, "asr_violation_after_eV_A2": after}


def _asr_violation(fc: np.ndarray) -> float:
    return float(np.abs(fc.sum(axis=1)).max())


def real_space_ifc(phonon: Phonopy, unitcell: Atoms) -> RealSpaceIFC:
    """Pairs in the unwrapped frame of ``unitcell`` (the frame the builder used)."""
    frac = np.linalg.solve(np.array(unitcell.cell).T, unitcell.positions.T).T
    return RealSpaceIFC.from_phonopy(phonon, frac, unitcell.get_masses())


def cutoff_correction(ifc: RealSpaceIFC, cutoff_A: float, atoms: np.ndarray | None = None) -> dict[str, float]:
    """Size of the sum-rule correction that imposing the cutoff applies.

    :meth:`RealSpaceIFC.truncated` adds what it drops from each row to that atom's on-site block.
    Returns max |dropped row sum| (eV/Å^2, over ``atoms`` or all atoms and the 3 x 3 elements), the
    same relative to the largest on-site element, and the sum-rule violation left afterwards.
    """
    dist = np.linalg.norm(ifc.pair_vectors(), axis=1)
    onsite = (ifc.i == ifc.j) & ~ifc.shift.any(axis=1)
    dropped_mask = (dist > cutoff_A + 1e-9) & ~onsite
    dropped = np.zeros((ifc.n_atoms, 3, 3))
    np.add.at(dropped, ifc.i[dropped_mask], ifc.phi[dropped_mask])
    onsite_blocks = np.zeros((ifc.n_atoms, 3, 3))
    np.add.at(onsite_blocks, ifc.i[onsite], ifc.phi[onsite])
    sel = np.arange(ifc.n_atoms) if atoms is None else np.asarray(atoms)
    biggest = float(np.abs(dropped[sel]).max()) if len(sel) else 0.0
    scale = float(np.abs(onsite_blocks[sel]).max()) if len(sel) else 1.0
    _, after = ifc.truncated(cutoff_A)
    return {"cutoff_correction_max_eV_A2": biggest, "cutoff_correction_relative": biggest / scale if scale > 0 else 0.0,
            "asr_violation_after_cutoff_eV_A2": float(after)}


# ---- interface route ---------------------------------------------------------------------------
def _supercell_map(phonon: Phonopy) -> tuple[np.ndarray, np.ndarray]:
    """Unit-cell atom of every supercell atom and the unit-cell lattice translation that carries it there."""
    sc = phonon.supercell
    u_of_s = np.array([sc.u2u_map[k] for k in sc.s2u_map], dtype=int)
    unit_pos = np.asarray(phonon.unitcell.positions, float)
    cell = np.asarray(phonon.unitcell.cell, float)
    shift = np.linalg.solve(cell.T, (np.asarray(sc.positions, float) - unit_pos[u_of_s]).T).T
    return u_of_s, np.rint(shift).astype(int)


def interface_plane_z(het) -> float:
    """z of the interface plane: midway between the last atomic plane on the left and the first on the right."""
    z = het.atoms.positions[:, 2]
    return 0.5 * (float(z[het.side == 0].max()) + float(z[het.side == 1].min()))


def interface_zone(het, phonon: Phonopy, radius_A: float) -> tuple[list[int], np.ndarray, float]:
    """Displacements to evaluate for the interface route.

    An independent atom (phonopy's displaced atom) is kept when any of its symmetry images lies
    within ``radius_A`` of the interface plane; returns (kept displacement indices, mask of the
    unit-cell atoms whose rows those displacements give, z of the plane).
    """
    z_plane = interface_plane_z(het)
    near_unit = np.abs(het.atoms.positions[:, 2] - z_plane) <= radius_A + 1e-9
    u_of_s, _ = _supercell_map(phonon)
    rep = np.asarray(phonon.symmetry.get_map_atoms(), dtype=int)  # supercell atom -> its independent atom
    kept = set(rep[near_unit[u_of_s]].tolist())
    tasks = [k for k, d in enumerate(phonon.displacements) if int(d[0]) in kept]
    zone = np.zeros(len(het.atoms), bool)
    zone[u_of_s[np.isin(rep, list(kept))]] = True
    return tasks, zone, z_plane


def bulk_site_deviation(het) -> np.ndarray:
    """Displacement (Å) of every slab atom from its ideal bulk site, relative to its side's fixed buffer.

    Ideal sites come from the bookkeeping (basis + layer a3 + c1 a1 + c2 a2 of the side's lead cell);
    the buffers are held at bulk sites during the relaxation, so their offset defines each side's origin.
    Rows taken from the bulk leads are exact only where this is ~0.
    """
    pos = het.atoms.positions
    out = np.zeros(len(pos))
    for side, lead in ((0, het.left_lead), (1, het.right_lead)):
        sel = np.flatnonzero(het.side == side)
        lat = lead.lattice
        ideal = (lead.positions[het.basis_index[sel]] + het.layer[sel, None] * lat[2]
                 + het.cell_index[sel, 0, None] * lat[0] + het.cell_index[sel, 1, None] * lat[1])
        dev = pos[sel] - ideal
        buffer = het.region[sel] != 1
        ref = dev[buffer].mean(axis=0) if buffer.any() else dev.mean(axis=0)
        out[sel] = np.linalg.norm(dev - ref, axis=1)
    return out


def _pair_table(ifc: RealSpaceIFC, periods: tuple[int, int]) -> dict[tuple, np.ndarray]:
    """Bulk pair force constants keyed by (i, j, shift1 mod P1, shift2 mod P2, shift3)."""
    table: dict[tuple, np.ndarray] = {}
    p1, p2 = periods
    for i, j, s, phi in zip(ifc.i, ifc.j, ifc.shift, ifc.phi):
        key = (int(i), int(j), int(s[0]) % p1, int(s[1]) % p2, int(s[2]))
        table[key] = table[key] + phi if key in table else phi.copy()
    return table


def bulk_forces(plan: PartPlan, het, lead_ifcs: dict[int, RealSpaceIFC], indices: Sequence[int]) -> dict[int, np.ndarray]:
    """Forces the bulk leads predict for device displacements ``indices``: F_j = -u . Phi_bulk(i, j).

    Pairs are mapped with the slab's bookkeeping: atoms on the same side as the displaced atom
    couple with the bulk pair constant of (basis_i, basis_j, in-plane cell difference modulo the
    supercell, layer difference); atoms on the other side get no force.
    """
    phonon = plan.phonon
    n, m = het.inplane_repeat
    periods = (n * plan.supercell[0], m * plan.supercell[1])
    u_of_s, t = _supercell_map(phonon)
    c1 = het.cell_index[u_of_s, 0] + n * t[:, 0]
    c2 = het.cell_index[u_of_s, 1] + m * t[:, 1]
    layer, side, basis = het.layer[u_of_s], het.side[u_of_s], het.basis_index[u_of_s]
    tables = {s: _pair_table(ifc, periods) for s, ifc in lead_ifcs.items()}
    n_sc = len(u_of_s)
    out = {}
    for k in indices:
        d = phonon.displacements[k]
        r, vec = int(d[0]), np.array(d[1:4], float)
        forces = np.zeros((n_sc, 3))
        table = tables[int(side[r])]
        for j in np.flatnonzero(side == side[r]):
            key = (int(basis[r]), int(basis[j]), int(c1[j] - c1[r]) % periods[0], int(c2[j] - c2[r]) % periods[1], int(layer[j] - layer[r]))
            phi = table.get(key)
            if phi is not None:
                forces[j] = -vec @ phi
        out[k] = forces
    return out


def part_forces(plan: PartPlan, computed: dict[int, np.ndarray], het=None, lead_ifcs: dict[int, RealSpaceIFC] | None = None) -> np.ndarray:
    """All displacement forces of a part: MLIP forces where computed, bulk forces elsewhere (interface route)."""
    missing = [k for k in range(plan.n_displacements) if k not in computed]
    if missing:
        if plan.tasks is None or het is None or lead_ifcs is None:
            raise RuntimeError(f"{plan.name}: forces of displacements {missing[:5]}... are missing")
        computed = {**computed, **bulk_forces(plan, het, lead_ifcs, missing)}
    return np.array([computed[k] for k in range(plan.n_displacements)])


# ---- force evaluation -------------------------------------------------------------------------
def _is_batchable_mace(calc) -> bool:
    return (type(calc).__name__ == "MACECalculator" and getattr(calc, "model_type", "") == "MACE"
            and not getattr(calc, "use_compile", False) and hasattr(calc, "models") and hasattr(calc, "z_table"))


def mace_batch_forces(calc, structures: Sequence[Atoms]) -> list[np.ndarray]:
    """Forces of several structures from one model call per committee member (mace's own batching).

    Builds one ``AtomicData`` graph per structure exactly as ``MACECalculator`` does and joins them
    into a ``torch_geometric`` batch; the model returns forces for all atoms of the batch.
    """
    import torch
    from mace import data as mace_data
    from mace.tools import torch_geometric, torch_tools

    arrays_keys = dict(calc.arrays_keys)
    arrays_keys.update({calc.charges_key: "charges"})
    keyspec = mace_data.KeySpecification(info_keys=calc.info_keys, arrays_keys=arrays_keys)
    with torch_tools.default_dtype(calc.default_dtype):
        graphs = [mace_data.AtomicData.from_config(mace_data.config_from_atoms(a, key_specification=keyspec, head_name=calc.head),
                                                   z_table=calc.z_table, cutoff=calc.r_max, heads=calc.available_heads)
                  for a in structures]
    batch = torch_geometric.Batch.from_data_list(graphs).to(calc.device)
    members = []
    for model in calc.models:
        b = batch.clone()
        dtype = next(model.parameters()).dtype
        for key in b.keys:
            value = b[key]
            if torch.is_tensor(value) and torch.is_floating_point(value):
                b[key] = value.to(dtype=dtype)
        out = model(b.to_dict(), compute_stress=False, training=False)
        members.append(out["forces"].detach())
    forces = torch.stack(members).mean(dim=0).cpu().numpy().astype(float) * (calc.energy_units_to_eV / calc.length_units_to_A)
    ptr = batch["ptr"].cpu().numpy()
    return [forces[ptr[k] : ptr[k + 1]].copy() for k in range(len(structures))]


def evaluate_forces(calc, structures: Sequence[Atoms], batch_size: int = 1) -> list[np.ndarray]:
    """Forces of ``structures``: batches of ``batch_size`` per MACE model call, else one ASE call each."""
    if batch_size > 1 and _is_batchable_mace(calc):
        out: list[np.ndarray] = []
        for start in range(0, len(structures), batch_size):
            out.extend(mace_batch_forces(calc, structures[start : start + batch_size]))
        return out
    out = []
    for atoms in structures:
        atoms.calc = calc
        out.append(np.array(atoms.get_forces(), float))
        atoms.calc = None
    return out


# ---- serial driver (tests, benchmarks) ---------------------------------------------------------
def compute_parts(plans: list[PartPlan], calc, het=None, batch_size: int = 1,
                  cutoff_A: float | None = None) -> dict[str, dict]:
    """Evaluate and produce every part in one process (leads first, then the device).

    Returns per part the produce statistics plus ``n_force_evaluations`` and ``seconds``.
    """
    stats: dict[str, dict] = {}
    lead_ifcs: dict[int, RealSpaceIFC] = {}
    for plan in sorted(plans, key=lambda p: PARTS.index(p.name)):
        t0 = time.perf_counter()
        ids = plan.task_ids
        forces = evaluate_forces(calc, [displaced_atoms(plan.phonon, k) for k in ids], batch_size)
        seconds = time.perf_counter() - t0
        all_forces = part_forces(plan, dict(zip(ids, forces)), het, lead_ifcs)
        s = produce(plan.phonon, all_forces)
        s.update(n_force_evaluations=len(ids), seconds=seconds)
        if plan.name in LEADS:
            lead_ifcs[LEADS.index(plan.name)] = real_space_ifc(plan.phonon, plan.unitcell)
        if cutoff_A is not None:
            s.update(cutoff_correction(real_space_ifc(plan.phonon, plan.unitcell), cutoff_A))
        stats[plan.name] = s
    return stats


# ---- stage shell: distribution, checkpoints, HDF5 -------------------------------------------
def force_constant_plans(ctx):
    from hpc_itc.stages.context import load_relaxed

    het = load_relaxed(ctx)
    return het, plans_for(het, ctx.cfg["force_constants"], ctx.cfg.model)


def _checkpointed(ctx, plans: list[PartPlan]) -> dict[str, set[int]]:
    """Finished tasks per part as rank 0 sees them; a checkpoint of another displacement is discarded."""

    def scan() -> dict[str, set[int]]:
        done = {}
        for plan in plans:
            ids = ctx.results.finished_tasks(STAGE, plan.name)
            good = set()
            for k in sorted(ids):
                path = ctx.results.checkpoint_dir(STAGE, plan.name) / f"task_{k:08d}.npz"
                ok = k < plan.n_displacements
                if ok:
                    try:
                        with np.load(path) as data:
                            if "displacement" in data.files:
                                d = plan.phonon.displacements[k]
                                ok = int(data["displaced_atom"]) == int(d[0]) and np.allclose(data["displacement"], d[1:4], rtol=0, atol=1e-12)
                            ok = ok and data["forces"].shape == (len(plan.phonon.supercell), 3)
                    except Exception:  # noqa: BLE001 - unreadable: compute again
                        ok = False
                if ok:
                    good.add(k)
                else:
                    _log.warning("%s: checkpoint %s does not belong to this displacement set; it is recomputed", plan.name, path.name)
                    path.unlink(missing_ok=True)
            done[plan.name] = good
        return done

    return ctx.on_root(scan)


def stage_force_constants(ctx) -> None:
    timer = StageTimer()
    opts = settings(ctx.cfg["force_constants"])
    het, plans = force_constant_plans(ctx)
    calc = ctx.calculator()
    total = sum(p.n_force_evaluations for p in plans)
    done_before = _checkpointed(ctx, plans)
    todo = [(p, t) for p in plans for t in p.task_ids if t not in done_before[p.name]]
    if ctx.is_root:
        _log.info("force constants: %d displaced supercells (%s), %d already checkpointed, %d to evaluate, %d ranks, batch size %d",
                  total, ", ".join(f"{p.name} {p.n_force_evaluations} x {len(p.phonon.supercell)} atoms" for p in plans),
                  total - len(todo), len(todo), ctx.comm.size, opts["batch_size"])
        if opts["device_route"] == "interface":
            dev = plans[2]
            _log.info("device route 'interface': %d of %d device displacements (atoms within %.2f Å of the interface plane: %d of %d)",
                      dev.n_force_evaluations, dev.n_displacements, dev.radius_A, int(dev.zone.sum()), len(dev.zone))
    progress = logmod.Progress(_log, "force evaluations (rank 0 share)", 0, ctx.cfg["run"]["progress_seconds"])
    evaluated = 0

    def my_tasks() -> None:
        nonlocal evaluated
        mine = [todo[k] for k in my_share(range(len(todo)), ctx.comm)]
        progress.total = len(mine)
        step = opts["batch_size"]
        for start in range(0, len(mine), step):
            chunk = mine[start : start + step]
            forces = evaluate_forces(calc, [displaced_atoms(plan.phonon, task) for plan, task in chunk], step)
            for (plan, task), f in zip(chunk, forces):
                d = plan.phonon.displacements[task]
                ctx.results.save_task(STAGE, plan.name, task, forces=f, displaced_atom=np.int64(d[0]),
                                      displacement=np.array(d[1:4], float))
                evaluated += 1
                _log.debug("evaluated %s displacement %d", plan.name, task)
            progress.update(len(chunk))

    ctx.run_share(my_tasks)
    evaluated_all = ctx.comm.allreduce(evaluated)
    if ctx.is_root:
        _log.info("force constants: %d force evaluations in this run, %d taken from checkpoints", evaluated_all, total - len(todo))

    ctx.write_stage(STAGE, lambda: _stage_writer(ctx, het, plans, opts), timer)


def _force_rows(ctx, plan: PartPlan, forces: np.ndarray) -> list:
    """Rows of the ``forces`` table: the checkpoint of each evaluated displacement (read by the rank that
    writes it under MPI-IO), rank 0's bulk-lead forces for the others (interface route).  The root
    writer takes them all from ``forces``, which rank 0 has already read."""
    from hpc_itc.store.rows import MemoryRows

    if ctx.writer_mode() == "root":
        return [MemoryRows(forces)]
    computed = set(plan.task_ids)
    return [ctx.results.checkpoint_rows(STAGE, plan.name, k, "forces", one_row=True) if k in computed else MemoryRows(forces[k : k + 1])
            for k in range(plan.n_displacements)]


def _stage_writer(ctx, het, plans: list[PartPlan], opts: dict):
    """Rank 0: force constants from the checkpoints, lead phonons; returns the stage's writer."""
    from hpc_itc.store.rows import write_rows
    from hpc_itc.core.phonons import lead_phonons, plot_phonons, write_phonons

    cutoff = ctx.cfg["force_constants"]["cutoff_A"]
    lead_ifcs: dict[int, RealSpaceIFC] = {}
    phonons = {}
    records = []
    for plan in plans:  # leads first: the interface route's device needs their force constants
        computed = {t: ctx.results.load_task(STAGE, plan.name, t)["forces"] for t in plan.task_ids}
        forces = part_forces(plan, computed, het, lead_ifcs)
        sums = produce(plan.phonon, forces)
        ifc = real_space_ifc(plan.phonon, plan.unitcell)
        attrs = {**sums, **cutoff_correction(ifc, cutoff), "n_force_evaluations": plan.n_force_evaluations,
                 "n_displacements_symmetry_reduced": plan.n_displacements, "n_displacements_naive": plan.n_displacements_naive}
        _log.info("%s: %d force calls (%d symmetry-reduced displacements, %d naive), sum-rule violation %.2e -> %.2e eV/Å^2, "
                  "cutoff %.2f Å moves up to %.2e eV/Å^2 (%.1e of the largest on-site element) into the on-site blocks",
                  plan.name, plan.n_force_evaluations, plan.n_displacements, plan.n_displacements_naive,
                  sums["asr_violation_before_eV_A2"], sums["asr_violation_after_eV_A2"], cutoff,
                  attrs["cutoff_correction_max_eV_A2"], attrs["cutoff_correction_relative"])
        if plan.name == "device":
            attrs["cutoff_correction_device_atoms_max_eV_A2"] = cutoff_correction(ifc, cutoff, het.device_indices)["cutoff_correction_max_eV_A2"]
            attrs["device_route"] = opts["device_route"]
            if plan.zone is not None:
                deviation = bulk_site_deviation(het)
                outside = float(deviation[~plan.zone].max()) if (~plan.zone).any() else 0.0
                attrs.update(interface_radius_A=plan.radius_A, interface_plane_z_A=interface_plane_z(het),
                             max_bulk_site_deviation_outside_zone_A=outside)
                _log.info("device route 'interface': atoms outside the zone sit up to %.4f Å from their bulk sites "
                          "(their rows are bulk rows; the zone's atoms up to %.4f Å)", outside,
                          float(deviation[plan.zone].max()) if plan.zone.any() else 0.0)
        if plan.name in LEADS:
            side = LEADS.index(plan.name)
            lead_ifcs[side] = ifc
            lead = het.left_lead if side == 0 else het.right_lead
            ph = lead_phonons(plan.phonon, lead.lattice, lead.material, opts["phonon_mesh"])
            phonons[plan.name] = ph
            _log.info("%s (%s) phonons: Gamma max %.2f, X %s, L %s THz%s", plan.name, lead.material,
                      ph.frequencies_at("G").max(), np.round(ph.frequencies_at("X"), 2).tolist(),
                      np.round(ph.frequencies_at("L"), 2).tolist(),
                      ("; vs experiment: " + ", ".join(f"{l} {c:.2f}/{r:.2f}" for l, c, r in ph.comparison)) if ph.comparison else "")
        if plan.name == "device":
            attrs.update(interface_stability(het, ifc, lead_ifcs, ctx.cfg["structure"]["interface_shift_frac"] != []))
        records.append((plan, forces, plan.phonon.force_constants, attrs))

    def write(g) -> None:
        for plan, forces, fcs, attrs in records:
            sub = g.create_group(plan.name)
            cell = plan.unitcell
            write_array(sub, "unitcell_positions", cell.positions, "Å")
            write_array(sub, "unitcell_cell", np.array(cell.cell), "Å")
            write_array(sub, "unitcell_symbols", np.array(cell.get_chemical_symbols(), dtype="S2"))
            write_array(sub, "unitcell_masses", cell.get_masses(), "amu")
            write_array(sub, "supercell_matrix", np.diag(plan.supercell))
            write_array(sub, "displacements", np.array([d[1:4] for d in plan.phonon.displacements], float), "Å")
            write_array(sub, "displaced_atoms", np.array([int(d[0]) for d in plan.phonon.displacements]))
            write_rows(sub, "forces", _force_rows(ctx, plan, forces), "eV/Å",
                       doc="MLIP forces where 'computed' is true, bulk-lead forces elsewhere (interface route)")
            write_array(sub, "computed", np.isin(np.arange(plan.n_displacements), plan.task_ids), doc="displacement evaluated with the MLIP")
            write_array(sub, "force_constants", fcs, "eV/Å^2", doc="phonopy compact format (unit-cell atom, supercell atom, 3, 3)")
            if plan.name == "device" and plan.zone is not None:
                write_array(sub, "interface_zone", plan.zone, doc="unit-cell atoms whose rows come from MLIP forces")
            for k, v in attrs.items():
                if isinstance(v, list):  # lists of strings (warnings)
                    write_str_list(sub, k, v)
                else:
                    sub.attrs[k] = v
            if plan.name in phonons:
                write_phonons(sub.create_group("phonons"), phonons[plan.name])
        g.attrs["n_force_evaluations"] = sum(p.n_force_evaluations for p in plans)
        g.attrs["n_displacements_symmetry_reduced"] = sum(p.n_displacements for p in plans)
        g.attrs["n_displacements_naive"] = sum(p.n_displacements_naive for p in plans)
        g.attrs["cutoff_A"] = cutoff
        g.attrs["symprec"] = ctx.cfg["force_constants"]["symprec"]
        g.attrs["device_route"] = opts["device_route"]

    out = ctx.results.path
    try:
        png = plot_phonons(phonons, out.with_name(out.stem + "_phonons.png"))
        if png is not None:
            _log.info("lead phonon dispersions and DOS: %s", png)
    except Exception as exc:  # noqa: BLE001 - a plot never fails the stage
        _log.warning("phonon plot not written (%s: %s)", type(exc).__name__, exc)
    return write


def interface_stability(het, device_ifc: RealSpaceIFC, lead_ifcs: dict[int, RealSpaceIFC], registry_given: bool) -> dict:
    """Interface stiffness, lead interplanar stiffness, lowest device Gamma frequency and warnings (logged)."""
    from hpc_itc.core import interface as itf

    area = itf.interface_area_A2(het.atoms)
    k = itf.interface_stiffness(device_ifc, het.side, area)
    lead_zz = [float(itf.lead_interplanar_stiffness(lead_ifcs[s], lead.inplane_A**2)[2, 2])
               for s, lead in ((0, het.left_lead), (1, het.right_lead))]
    freqs = itf.gamma_frequencies_THz(device_ifc)
    warnings = itf.stiffness_warnings(k, min(lead_zz), float(freqs[0]), registry_given)
    _log.info("interface stiffness per area (xx, yy, zz) = (%.3f, %.3f, %.3f) eV/Å^4 (lead interplanar zz: left %.3f, right %.3f); "
              "lowest device Gamma frequencies %s THz", k[0, 0], k[1, 1], k[2, 2], lead_zz[0], lead_zz[1], np.round(freqs[:4], 3).tolist())
    for w in warnings:
        _log.warning("%s", w)
    return {"interface_stiffness_eV_A4": k, "lead_interplanar_stiffness_zz_eV_A4": np.array(lead_zz),
            "lowest_gamma_frequency_THz": float(freqs[0]), "gamma_frequencies_lowest_THz": freqs[:6],
            "interface_warnings": list(warnings)}


def load_force_constants(ctx):
    """RealSpaceIFC for each part, from the stored force constants."""
    from hpc_itc.stages.context import load_relaxed

    het = load_relaxed(ctx)
    out = {}
    with ctx.results.open() as f:
        for name in PARTS:
            out[name] = _stored_ifc(f[STAGE][name], ctx.cfg["force_constants"]["symprec"])
    return het, out


def _stored_phonopy(group, symprec: float | None = None) -> Phonopy:
    """A phonopy object (no displacements generated) with the stored force constants of one part."""
    from hpc_itc.store.file import read_str_array

    cell = group["unitcell_cell"][()]
    positions = group["unitcell_positions"][()]
    unit = PhonopyAtoms(symbols=read_str_array(group["unitcell_symbols"]), cell=cell,
                        scaled_positions=np.linalg.solve(cell.T, positions.T).T, masses=group["unitcell_masses"][()])
    if symprec is None:
        symprec = float(group.parent.attrs.get("symprec", 1e-5))
    phonon = Phonopy(unit, supercell_matrix=group["supercell_matrix"][()], primitive_matrix="P", symprec=symprec, log_level=0)
    phonon.force_constants = group["force_constants"][()]
    return phonon


def _stored_ifc(group, symprec: float | None = None) -> RealSpaceIFC:
    phonon = _stored_phonopy(group, symprec)
    cell = group["unitcell_cell"][()]
    frac = np.linalg.solve(cell.T, group["unitcell_positions"][()].T).T
    return RealSpaceIFC.from_phonopy(phonon, frac, group["unitcell_masses"][()])


# ---- export ----------------------------------------------------------------------------------
def export_phonopy(result_h5: str | Path, part: str | None, out_dir: str | Path) -> list[Path]:
    """Write ``OUT_DIR/<part>/phonopy_params.yaml`` (with force constants) for one part or all.

    ``phonopy.load(".../phonopy_params.yaml")`` then gives the same frequencies as hpc_itc.  The
    displacement dataset and forces are included when every displacement was evaluated with the
    MLIP (not for a device from the interface route, whose far rows come from the leads).
    """
    import h5py

    path = Path(result_h5)
    if not path.is_file():
        raise InputError("result", f"'{result_h5}' not found; give a results file written by hpc_itc")
    parts = PARTS if part in (None, "all") else (part,)
    if any(p not in PARTS for p in parts):
        raise InputError("--part", f"got {part!r}; allowed: one of {', '.join(PARTS)}, or all")
    written = []
    with h5py.File(path, "r") as f:
        if STAGE not in f or not f[STAGE].attrs.get("complete", False):
            raise InputError("result", f"'{result_h5}' has no finished force_constants stage")
        for name in parts:
            g = f[STAGE][name]
            phonon = _stored_phonopy(g)
            all_computed = bool(np.all(g["computed"][()])) if "computed" in g else True
            settings_ = {"force_constants": True, "displacements": all_computed, "force_sets": all_computed}
            if all_computed:
                phonon.dataset = {"natom": len(phonon.supercell), "first_atoms": [
                    {"number": int(a), "displacement": np.array(d, float), "forces": np.array(fs, float)}
                    for a, d, fs in zip(g["displaced_atoms"][()], g["displacements"][()], g["forces"][()])]}
                phonon.force_constants = g["force_constants"][()]
            target = Path(out_dir) / name
            target.mkdir(parents=True, exist_ok=True)
            phonon.save(target / "phonopy_params.yaml", settings=settings_)
            written.append(target / "phonopy_params.yaml")
    return written
