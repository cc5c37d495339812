"""Stage ``transport``: distribute the k_par columns over ranks, checkpoint them, sum up on rank 0.

Tasks (each one checkpoint file; dealt round-robin, so results do not depend on
the number of ranks):

* main mesh: per direction, blocks of ``block_size`` *irreducible* k_par columns
  of the incident lead's q mesh (orbits under the in-plane point group that the
  whole system shares, :mod:`hpc_itc.core.transport.symmetry`).  A task solves its
  representative columns (:func:`~hpc_itc.core.transport.solve.solve_column`) and
  writes the modes of every column of their orbits (copies carry
  ``symmetry_image = True``), so the stored mode list is the full mesh;
* ``transport.q_mesh_sweep``: the same for each extra mesh (convergence check);
* ``transport.path_points``: mode-resolved maps along Gamma-X-U|K-Gamma-W-K-Gamma-L
  of each incident lead, in chunks of points.

Rank 0 then forms the Landauer sums (paper Eqs. 5, 6; :func:`~hpc_itc.core.transport.solve.direction_sums`)
and the Caroli cross-check, and :mod:`hpc_itc.store.transport` writes ``/transport``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from hpc_itc import log as logmod
from hpc_itc.config import TransportSettings
from hpc_itc.core.harmonic import OMEGA_TO_THZ
from hpc_itc.core.structure import display_name
from hpc_itc.core.transport.bzpath import lead_path
from hpc_itc.core.transport.qz_sampling import SampledMeshes, sample_meshes
from hpc_itc.core.transport.solve import DIRECTION_SIDE, SOLVED_RGF, caroli_check, direction_sums, path_transmission, solve_orbits
from hpc_itc.core.transport.symmetry import InplaneSymmetry, find_inplane_symmetry, reduce_mesh
from hpc_itc.core.transport.system import InterfaceSystem, build_system, homogeneous_system
from hpc_itc.errors import keyed
from hpc_itc.parallel import my_share, ranks_on_node
from hpc_itc.stages.context import Context
from hpc_itc.store.file import StageTimer
from hpc_itc.store.rows import MemoryRows
from hpc_itc.store.structure import direction_name
from hpc_itc.store.transport import DirectionResult, SweepResult, mesh_name, write_transport

STAGE = "transport"
_log = logmod.get("transport")
PATH_CHUNK = 25  # path points per task


def interface_system(ctx: Context) -> InterfaceSystem:
    """The finalized system (read once per run): leads from the bulk IFCs, device from the slab (or, for
    ``transport.device_model = "left_lead"``, principal layers of the left lead's bulk)."""

    def make() -> InterfaceSystem:
        het, ifcs = ctx.relaxed(), ctx.force_constants()
        cutoff = ctx.cfg.force_constants.cutoff_A
        s = ctx.cfg.structure
        left, _ = ifcs["left_lead"].truncated(cutoff)
        if ctx.cfg.transport.device_model == "left_lead":  # config allows it only for one material, no N
            return homogeneous_system(left, s.n_cells_left + s.n_cells_right, het.inplane_repeat)
        right, _ = ifcs["right_lead"].truncated(cutoff)
        slab, _ = ifcs["device"].truncated(cutoff)
        device = slab.subset(het.device_indices)
        with keyed({"n_cells_left": "structure.n_cells_left", "n_cells_right": "structure.n_cells_right"}):
            return build_system(left, right, device, het.inplane_repeat, (s.n_cells_left, s.n_cells_right))

    return ctx.memo("interface_system", make)


# ---- tasks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    part: str  # checkpoint folder
    task_id: int
    kind: str  # "mesh" or "path"
    direction: str
    mesh: tuple[int, int, int] | None
    items: tuple  # representative indices (mesh) or point indices (path)


def reductions(system: InterfaceSystem, symmetry: InplaneSymmetry, meshes, directions) -> dict:
    """MeshReduction per (mesh, direction): orbits of the incident lead's k_par columns."""
    out = {}
    for mesh in meshes:
        for direction in directions:
            side, _ = DIRECTION_SIDE[direction]
            out[(tuple(mesh), direction)] = reduce_mesh(symmetry, system.primitive(side).lattice, mesh)
    return out


def lead_paths(system: InterfaceSystem, directions, n_points: int) -> dict:
    """The mode-map path tables (:func:`~hpc_itc.core.transport.bzpath.lead_path`) of each direction's incident lead."""
    if n_points <= 0:
        return {}
    return {d: lead_path(system.primitive(DIRECTION_SIDE[d][0]).lattice, n_points) for d in directions}


def plan(settings: TransportSettings, meshes: SampledMeshes, reds: dict, paths: dict) -> list[Task]:
    """Every task of the stage, in the same order on every rank: main mesh, sweep meshes, paths."""
    tasks = []
    size = settings.block_size
    for mesh in [meshes.main] + [m for m in meshes.sweep if m != meshes.main]:
        kind = "mesh" if mesh == meshes.main else "sweep"
        for direction in settings.directions:
            red = reds[(mesh, direction)]
            # "-w": checkpoints carry quadrature weights (older ones, without, are not mixed in)
            part = f"{kind}-{direction}-{mesh_name(mesh)}-b{size}-g{red.n_ops_used}-w"
            n = len(red.representatives)
            for b in range(0, n, size):
                tasks.append(Task(part, b // size, "mesh", direction, mesh, tuple(range(b, min(b + size, n)))))
    for direction, tables in paths.items():
        part = f"path-{direction}-n{settings.path_points}"
        n = len(tables[0])
        for b in range(0, n, PATH_CHUNK):
            tasks.append(Task(part, b // PATH_CHUNK, "path", direction, None, tuple(range(b, min(b + PATH_CHUNK, n)))))
    return tasks


def shuffled(tasks: list[Task]) -> list[Task]:
    """The tasks in a fixed pseudo-random order, so that the progress rate seen early is that of the whole stage:
    blocks differ several-fold in cost (a diamond-incident block, whose modes mostly lie above the Cu band, closes
    without solves; blocks near Gamma solve the most channels), and the planned order runs alike blocks together.
    The same order on every run (seed 0); results do not depend on it."""
    order = np.random.default_rng(0).permutation(len(tasks))
    return [tasks[k] for k in order]


def task_cost(system: InterfaceSystem, task: Task) -> int:
    """Incident modes a task solves, the measure of its cost for the progress ETA: a mesh task's columns each hold
    N3 q_z points, a path task one point per item; every point has 3 x (atoms of the incident lead's cell) bands."""
    bands = system.primitive(DIRECTION_SIDE[task.direction][0]).n_dof
    per_item = task.mesh[2] if task.kind == "mesh" and task.mesh is not None else 1
    return len(task.items) * per_item * bands


def definition(task: Task, reds: dict, paths: dict) -> dict:
    """What a task computes, for its checkpoint's identity: the k_par columns it solves (or the path
    points), on which mesh, from which lead.  A checkpoint of another definition is not reused."""
    if task.kind == "path":
        points = np.round(np.asarray(paths[task.direction][0])[list(task.items)], 9).tolist()
        return {"kind": "path", "direction": task.direction, "points": points}
    red = reds[(task.mesh, task.direction)]
    columns = np.asarray(red.representatives)[list(task.items)].tolist()
    return {"kind": "mesh", "direction": task.direction, "mesh": list(task.mesh), "columns": columns, "n_ops": red.n_ops_used}


def run_task(system: InterfaceSystem, task: Task, solver: str, reds: dict, paths: dict) -> dict[str, np.ndarray]:
    """The checkpoint arrays of one task."""
    if task.kind == "path":
        q_frac = paths[task.direction][0][list(task.items)]
        res = path_transmission(system, task.direction, q_frac, method=solver)
        return {"point": np.array(task.items, int), **res}
    return solve_orbits(system, task.direction, task.mesh, reds[(task.mesh, task.direction)], task.items, method=solver)


def run(ctx: Context) -> None:
    timer = StageTimer()
    t = ctx.cfg.transport
    system = interface_system(ctx)

    def symmetry_of_system():
        if not t.use_symmetry:
            return InplaneSymmetry.identity()
        return find_inplane_symmetry(system, ifc_tol=t.symmetry_tol)

    with threadpool_limits(limits=1):
        symmetry = ctx.on_root(symmetry_of_system)
        meshes = ctx.on_root(lambda: sample_meshes(system.primitive("left"), system.primitive("right"), t.q_mesh,
                                                   t.q_mesh_sweep, t.qz_refine))
    reds = reductions(system, symmetry, meshes.all, t.directions)
    paths = lead_paths(system, t.directions, t.path_points)
    tasks = plan(t, meshes, reds, paths)
    expected: dict[str, dict[int, dict]] = {}
    for task in tasks:
        expected.setdefault(task.part, {})[task.task_id] = definition(task, reds, paths)
    done = ctx.resume(STAGE, expected)
    todo = [task for task in tasks if task.task_id not in done[task.part]]
    if ctx.is_root:
        main = reds[(meshes.main, t.directions[0])] if t.directions else None
        _log.info("transport: q_mesh %s with q_z refined x%d (transport.qz_refine%s): incident modes on %s",
                  meshes.main_input, meshes.factor[meshes.main], " = 0, automatic" if t.qz_refine == 0 else "",
                  "x".join(map(str, meshes.main)))
        _log.info("transport: mesh %s, %d in-plane columns per direction, %s irreducible under %d in-plane operations "
                  "(largest force-constant mismatch %.1e, %d candidates rejected); %d tasks, %d to do; device %d dof in %d blocks, "
                  "principal layers %d/%d dof; solver %s; acoustic sum rule across the contacts restored "
                  "(largest on-site change %.1e eV/Å^2)",
                  meshes.main, meshes.main[0] * meshes.main[1], len(main.representatives) if main else 0,
                  symmetry.order, symmetry.max_ifc_violation, symmetry.rejected, len(tasks), len(todo), system.n_device_dof,
                  len(system.partition) - 1, system.left.n_dof, system.right.n_dof, t.solver,
                  system.sum_rule_correction_eV_A2)
    mine = shuffled([todo[k] for k in my_share(range(len(todo)), ctx.comm)])
    costs = {(task.part, task.task_id): task_cost(system, task) for task in mine}
    progress = logmod.Progress(_log, "transport tasks (rank 0 share)", len(mine), ctx.cfg.run.progress_seconds,
                               total_work=sum(costs.values()))
    # the block solves (and lead modes) are small matrices: threaded BLAS only adds overhead, and on
    # top of one rank per core it oversubscribes; the dense solver may use the cores a rank has
    blas_threads = 1 if t.solver == "rgf" else max(1, (os.cpu_count() or 1) // (ranks_on_node() if ctx.comm.size > 1 else 1))

    def my_tasks() -> None:
        with threadpool_limits(limits=blas_threads):
            checkpoints = ctx.checkpoints(STAGE)
            for task in mine:
                checkpoints.save(task.part, task.task_id, expected[task.part][task.task_id], **run_task(system, task, t.solver, reds, paths))
                progress.update(work=costs[(task.part, task.task_id)])

    ctx.run_share(my_tasks)

    with threadpool_limits(limits=blas_threads):  # the writer's Landauer sums run inside write_stage too
        ctx.write_stage(STAGE, lambda: _summed(ctx, system, tasks, symmetry, reds, meshes, paths), timer)


# ---- summing up (rank 0) ------------------------------------------------------------------------
def _named(ctx: Context, direction: str) -> str:
    """'Cu → diamond (left_to_right)': the materials, and the group name in the file."""
    names = {"left": display_name(ctx.cfg.structure.left_material), "right": display_name(ctx.cfg.structure.right_material)}
    return f"{direction_name(names, direction)} ({direction})"


def _gather(ctx: Context, tasks, kind: str, direction: str, mesh=None) -> dict[str, np.ndarray]:
    mine = [t for t in tasks if t.kind == kind and t.direction == direction and (mesh is None or t.mesh == mesh)]
    mine.sort(key=lambda t: t.task_id)
    checkpoints = ctx.checkpoints(STAGE)
    parts = [checkpoints.load(t.part, t.task_id) for t in mine]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def _mode_rows(ctx: Context, tasks, direction: str, mesh, gathered: dict):
    """rows(key, transform): per-mode table rows of one direction on ``mesh``, the checkpoints' ``key`` in task order.

    The root writer takes them from ``gathered`` (that direction's :func:`_gather`, already read by
    rank 0); under MPI-IO each rank reads the checkpoints of its share.
    """
    mine = sorted((t for t in tasks if t.kind == "mesh" and t.direction == direction and t.mesh == mesh), key=lambda t: t.task_id)

    def rows(key: str, transform=None) -> list:
        if ctx.writer_mode() == "root":
            return [MemoryRows(gathered[key] if transform is None else transform(gathered[key]))]
        return [ctx.checkpoints(STAGE).rows(t.part, t.task_id, key, transform=transform) for t in mine]

    return rows


def _summed(ctx: Context, system: InterfaceSystem, tasks, symmetry: InplaneSymmetry, reds, meshes: SampledMeshes, paths: dict):
    """Rank 0: the stage's sums; returns the writer of the stage group."""
    t = ctx.cfg.transport
    mesh = meshes.main
    temps = np.array(t.temperatures_K, float)
    gathered = {direction: _gather(ctx, tasks, "mesh", direction, mesh) for direction in t.directions}
    gathered = {direction: d for direction, d in gathered.items() if d}
    freqs = [float(d["omega"].max()) * OMEGA_TO_THZ for d in gathered.values() if len(d["omega"])]
    f_max = max(freqs) if freqs else 1.0
    edges = np.arange(0.0, f_max + t.frequency_bin_THz, t.frequency_bin_THz)
    per_direction = {}
    for direction, d in gathered.items():
        side, _ = DIRECTION_SIDE[direction]
        path_modes = _gather(ctx, tasks, "path", direction) if direction in paths else {}
        per_direction[direction] = DirectionResult(
            modes=d, rows=_mode_rows(ctx, tasks, direction, mesh, d), incident_lead=side,
            cell_volume_A3=abs(np.linalg.det(system.primitive(side).lattice)),
            sums=direction_sums(system, direction, d, mesh, temps, edges),
            n_irreducible_columns=len(reds[(mesh, direction)].representatives),
            caroli=caroli_check(system, direction, d, mesh, t.caroli_samples) if t.caroli_samples > 0 else None,
            path=(paths[direction], path_modes) if path_modes else None)
    sweep = []
    for m in meshes.sweep:
        for direction in t.directions:
            d = gathered.get(direction, {}) if m == mesh else _gather(ctx, tasks, "mesh", direction, m)
            if d:
                sums = direction_sums(system, direction, d, m, temps)
                sweep.append(SweepResult(m, meshes.input_of.get(m, m), meshes.factor.get(m, 1), direction, sums.itc,
                                         sums.radiation_limit, len(d["omega"])))
                _log.info("sweep %s %s: h = %s MW/(m^2 K)", mesh_name(m), _named(ctx, direction), np.round(sums.itc, 3).tolist())

    def log_direction(direction: str, r: DirectionResult, attrs: dict) -> None:
        computed = ~r.modes["symmetry_image"].astype(bool)
        solved = int(np.count_nonzero(r.modes["solve_code"][computed] >= SOLVED_RGF))
        _log.info("%s: %d incident modes (%d computed, %d scattering solves), h = %s MW/(m^2 K) at %s K "
                  "(radiation limit %s), max|T+R-1| = %.2e%s",
                  _named(ctx, direction), len(r.modes["omega"]), int(computed.sum()), solved, np.round(r.sums.itc, 3).tolist(), temps.tolist(),
                  np.round(r.sums.radiation_limit, 3).tolist(), attrs["max_abs_T_plus_R_minus_1"],
                  f", Caroli check max diff {r.caroli[0]:.1e}" if r.caroli is not None else "")

    return lambda g: write_transport(g, per_direction, temps, edges, meshes, symmetry, system.sum_rule_correction_eV_A2,
                                     t.solver, t.device_model, sweep, log_direction)
