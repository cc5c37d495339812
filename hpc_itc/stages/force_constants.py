"""Stage ``force_constants``: finite-displacement forces of the leads and the device, distributed over ranks.

Every displaced supercell is one task, checkpointed as one file when its forces are known (so nothing
is computed twice); rank 0 then turns the forces into force constants with phonopy
(:mod:`hpc_itc.core.force_constants`), computes the lead phonons and the interface stability, and
:mod:`hpc_itc.store.force_constants` writes ``/force_constants``.
"""

from __future__ import annotations

import numpy as np

from hpc_itc import log as logmod
from hpc_itc.core.force_constants import (
    LEADS,
    PartPlan,
    bulk_site_deviation,
    cutoff_correction,
    displaced_atoms,
    interface_plane_z,
    interface_stability,
    part_forces,
    plans_for,
    produce,
    real_space_ifc,
)
from hpc_itc.core.harmonic import RealSpaceIFC
from hpc_itc.core.mlip import evaluate_forces
from hpc_itc.core.phonons import lead_phonons
from hpc_itc.errors import keyed
from hpc_itc.parallel import my_share
from hpc_itc.stages.context import MLIP_KEYS, Context
from hpc_itc.store.file import StageTimer
from hpc_itc.store.force_constants import write_force_constants
from hpc_itc.store.rows import MemoryRows

STAGE = "force_constants"
_log = logmod.get("force_constants")


def plans(ctx: Context) -> list[PartPlan]:
    """The phonopy plans of the three parts for the relaxed slab (deterministic on every rank)."""
    with keyed({"supercell_inplane": "force_constants.supercell_inplane", **MLIP_KEYS}):
        # the receptive field of interface_radius_A = 0 is known for a MACE model; for another calculator 0 means 10 Å
        return plans_for(ctx.relaxed(), ctx.cfg.force_constants, None if ctx.cfg.mlip.calculator else ctx.cfg.model)


def definitions(plans: list[PartPlan]) -> dict[str, dict[int, dict]]:
    """part -> {task: what it evaluates}: the displaced atom and vector of phonopy's displacement, on a
    supercell of so many atoms (a checkpoint of another displacement is not reused)."""
    out: dict[str, dict[int, dict]] = {}
    for plan in plans:
        n_atoms = len(plan.phonon.supercell)
        out[plan.name] = {k: {"atom": int(plan.phonon.displacements[k][0]),
                              "displacement_A": np.round(np.asarray(plan.phonon.displacements[k][1:4], float), 9).tolist(),
                              "supercell_atoms": n_atoms} for k in plan.task_ids}
    return out


def run(ctx: Context) -> None:
    timer = StageTimer()
    opts = ctx.cfg.force_constants
    het = ctx.relaxed()
    part_plans = plans(ctx)
    calc = ctx.calculator()
    total = sum(p.n_force_evaluations for p in part_plans)
    expected = definitions(part_plans)
    done_before = ctx.resume(STAGE, expected)
    todo = [(p, t) for p in part_plans for t in p.task_ids if t not in done_before[p.name]]
    if ctx.is_root:
        _log.info("force constants: %d displaced supercells (%s), %d already checkpointed, %d to evaluate, %d ranks, batch size %d",
                  total, ", ".join(f"{p.name} {p.n_force_evaluations} x {len(p.phonon.supercell)} atoms" for p in part_plans),
                  total - len(todo), len(todo), ctx.comm.size, opts.batch_size)
        if opts.device_route == "interface":
            dev = part_plans[2]
            _log.info("device route 'interface': %d of %d device displacements (atoms within %.2f Å of the interface plane: %d of %d)",
                      dev.n_force_evaluations, dev.n_displacements, dev.radius_A, int(dev.zone.sum()), len(dev.zone))
    evaluated = 0

    def my_tasks() -> None:
        nonlocal evaluated
        mine = [todo[k] for k in my_share(range(len(todo)), ctx.comm)]
        checkpoints = ctx.checkpoints(STAGE)
        # a force call costs about its supercell's atom count (the device's are 4x the leads')
        progress = logmod.Progress(_log, "force evaluations (rank 0 share)", len(mine), ctx.cfg.run.progress_seconds,
                                   total_work=sum(len(plan.phonon.supercell) for plan, _ in mine))
        step = opts.batch_size
        for start in range(0, len(mine), step):
            chunk = mine[start : start + step]
            forces = evaluate_forces(calc, [displaced_atoms(plan.phonon, task) for plan, task in chunk], step)
            for (plan, task), f in zip(chunk, forces):
                d = plan.phonon.displacements[task]
                checkpoints.save(plan.name, task, expected[plan.name][task], forces=f, displaced_atom=np.int64(d[0]),
                                 displacement=np.array(d[1:4], float))
                evaluated += 1
                _log.debug("evaluated %s displacement %d", plan.name, task)
            progress.update(len(chunk), work=sum(len(plan.phonon.supercell) for plan, _ in chunk))

    ctx.run_share(my_tasks)
    evaluated_all = ctx.comm.allreduce(evaluated)
    if ctx.is_root:
        _log.info("force constants: %d force evaluations in this run, %d taken from checkpoints", evaluated_all, total - len(todo))

    ctx.write_stage(STAGE, lambda: _summed(ctx, het, part_plans), timer)


def _force_rows(ctx: Context, plan: PartPlan, forces: np.ndarray) -> list:
    """Rows of the ``forces`` table: the checkpoint of each evaluated displacement (read by the rank that
    writes it under MPI-IO), rank 0's bulk-lead forces for the others (interface route).  The root
    writer takes them all from ``forces``, which rank 0 has already read."""
    if ctx.writer_mode() == "root":
        return [MemoryRows(forces)]
    computed = set(plan.task_ids)
    checkpoints = ctx.checkpoints(STAGE)
    return [checkpoints.rows(plan.name, k, "forces", one_row=True) if k in computed else MemoryRows(forces[k : k + 1])
            for k in range(plan.n_displacements)]


def _summed(ctx: Context, het, part_plans: list[PartPlan]):
    """Rank 0: force constants from the checkpoints, lead phonons, stability; returns the stage's writer."""
    opts = ctx.cfg.force_constants
    cutoff = opts.cutoff_A
    lead_ifcs: dict[int, RealSpaceIFC] = {}
    phonons = {}
    records = []
    for plan in part_plans:  # leads first: the interface route's device needs their force constants
        computed = {t: ctx.checkpoints(STAGE).load(plan.name, t)["forces"] for t in plan.task_ids}
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
            attrs["device_route"] = opts.device_route
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
            ph = lead_phonons(plan.phonon, lead.lattice, lead.material, opts.phonon_mesh)
            phonons[plan.name] = ph
            _log.info("%s (%s) phonons: Gamma max %.2f, X %s, L %s THz%s", plan.name, lead.material,
                      ph.frequencies_at("G").max(), np.round(ph.frequencies_at("X"), 2).tolist(),
                      np.round(ph.frequencies_at("L"), 2).tolist(),
                      ("; vs experiment: " + ", ".join(f"{l} {c:.2f}/{r:.2f}" for l, c, r in ph.comparison)) if ph.comparison else "")
        if plan.name == "device":
            attrs.update(interface_stability(het, ifc, lead_ifcs, ctx.cfg.structure.interface_shift_frac != ()))
        records.append((plan, forces, attrs))

    return lambda g: write_force_constants(g, records, phonons, lambda plan, forces: _force_rows(ctx, plan, forces),
                                           cutoff, opts.symprec, opts.device_route)
