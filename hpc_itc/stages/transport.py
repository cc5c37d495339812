"""Transport stage shell: distribute tasks over ranks, checkpoint them, sum up on rank 0.

Tasks (each one checkpoint file; dealt round-robin, so results do not depend on
the number of ranks):

* main mesh: per direction, blocks of ``block_size`` *irreducible* k_par columns
  of the incident lead's q mesh (orbits under the in-plane point group that the
  whole system shares, :mod:`.symmetry`).  A task solves its representative
  columns (:func:`.solve.solve_column`) and writes the modes of every column of
  their orbits (copies carry ``symmetry_image = True``), so the stored mode list
  is the full mesh;
* ``transport.q_mesh_sweep``: the same for each extra mesh (convergence check);
* ``transport.path_points``: mode-resolved maps along Gamma-X-U|K-Gamma-W-K-Gamma-L
  of each incident lead, in chunks of points.

Rank 0 then forms the Landauer sums (paper Eq. 5), spectral transmittance
(Eq. 6), cumulative conductance, the radiation limits, and the Caroli
cross-check on a deterministic sample of (k_par, omega) points.

Settings read here beyond the original schema (with their defaults):
``solver`` ("rgf"), ``use_symmetry`` (true), ``symmetry_tol`` (1e-3), ``path_points`` (100),
``caroli_samples`` (20), ``device_model`` ("slab"), ``q_mesh_sweep`` ([]).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial

import numpy as np
from threadpoolctl import threadpool_limits

from hpc_itc import log as logmod
from hpc_itc.core.harmonic import OMEGA_TO_THZ, OMEGA_UNIT_RAD_S
from hpc_itc.parallel import my_share, ranks_on_node
from hpc_itc.store.rows import MemoryRows, write_rows
from hpc_itc.store.file import StageTimer, write_array
from hpc_itc.core.transport import landauer
from hpc_itc.core.transport.bzpath import lead_path
from hpc_itc.core.transport.solve import DIRECTION_SIDE, LAM_TOL, OMEGA_MIN_THZ, SOLVED_RGF, SOLVED_RGF_FALLBACK, SOLVED_SHIFTED, caroli_difference, caroli_samples, path_transmission, solve_column
from hpc_itc.core.transport.symmetry import IFC_TOL, InplaneSymmetry, MeshReduction, find_inplane_symmetry, reduce_mesh
from hpc_itc.core.transport.qz_sampling import auto_qz_refine, band_maximum, qz_end_weights, refined_mesh
from hpc_itc.core.transport.system import InterfaceSystem, build_system, homogeneous_system

STAGE = "transport"
_log = logmod.get("transport")
PATH_CHUNK = 25  # path points per task
DEVICE_MODELS = ("slab", "left_lead")
SOLVERS = ("rgf", "dense")


# ---- settings -----------------------------------------------------------------------------------
def parse_meshes(value) -> list[tuple[int, int, int]]:
    """``q_mesh_sweep`` as a list of (N1, N2, N3): accepts [[n1,n2,n3], ...], a flat list of 3k ints or "NxNxN" strings."""
    from hpc_itc.errors import InputError

    key = "transport.q_mesh_sweep"
    allowed = "a list of meshes, each 3 positive integers ([[10, 10, 10], [16, 16, 16]] or [\"10x10x10\"])"
    if value is None:
        return []
    items = list(value)
    if items and all(isinstance(x, (int, np.integer)) for x in items):
        if len(items) % 3:
            raise InputError(key, f"a flat list of {len(items)} integers; allowed: {allowed}")
        items = [items[k : k + 3] for k in range(0, len(items), 3)]
    out = []
    for item in items:
        try:
            mesh = [int(x) for x in item.lower().split("x")] if isinstance(item, str) else [int(x) for x in item]
        except (TypeError, ValueError, AttributeError):
            raise InputError(key, f"got {item!r}; allowed: {allowed}") from None
        if len(mesh) != 3 or min(mesh) < 1:
            raise InputError(key, f"got {item!r}; allowed: {allowed}")
        if tuple(mesh) not in out:
            out.append(tuple(mesh))
    return out


def settings(cfg) -> dict:
    """The transport settings with defaults for keys the schema may not know yet."""
    from hpc_itc.errors import InputError

    t = cfg["transport"]
    s = {
        "q_mesh": tuple(int(x) for x in t["q_mesh"]),
        "directions": list(t["directions"]),
        "temperatures_K": np.array(t["temperatures_K"], float),
        "frequency_bin_THz": float(t["frequency_bin_THz"]),
        "block_size": int(t["block_size"]),
        "solver": str(t.get("solver", "rgf")),
        "use_symmetry": bool(t.get("use_symmetry", True)),
        "symmetry_tol": float(t.get("symmetry_tol", IFC_TOL)),
        "path_points": int(t.get("path_points", 100)),
        "caroli_samples": int(t.get("caroli_samples", 20)),
        "device_model": str(t.get("device_model", "slab")),
        "q_mesh_sweep": parse_meshes(t.get("q_mesh_sweep", [])),
        "qz_refine": int(t.get("qz_refine", 1)),
    }
    if s["solver"] not in SOLVERS:
        raise InputError("transport.solver", f"got {s['solver']!r}; allowed: one of {', '.join(map(repr, SOLVERS))}")
    if s["device_model"] not in DEVICE_MODELS:
        raise InputError("transport.device_model", f"got {s['device_model']!r}; allowed: one of {', '.join(map(repr, DEVICE_MODELS))}")
    if not s["symmetry_tol"] >= 0:
        raise InputError("transport.symmetry_tol", f"got {s['symmetry_tol']}; allowed: a number >= 0")
    for key in ("path_points", "caroli_samples"):
        if s[key] < 0:
            raise InputError(f"transport.{key}", f"got {s[key]}; allowed: an integer >= 0 (0 disables)")
    return s


def load_system(ctx) -> InterfaceSystem:
    """The finalized system: leads from the bulk IFCs, device from the slab (or, for
    ``transport.device_model = "left_lead"``, principal layers of the left lead's bulk)."""
    from hpc_itc.errors import InputError
    from hpc_itc.core.force_constants import load_force_constants

    het, ifcs = load_force_constants(ctx)
    cutoff = ctx.cfg["force_constants"]["cutoff_A"]
    left, _ = ifcs["left_lead"].truncated(cutoff)
    s = ctx.cfg["structure"]
    model = str(ctx.cfg["transport"].get("device_model", "slab"))
    if model == "left_lead":
        if s["left_material"] != s["right_material"] or s.get("n_fraction", 0.0) > 0:
            raise InputError("transport.device_model", f"'left_lead' needs the same material on both sides and no "
                                                       f"N termination (got {s['left_material']} | {s['right_material']}, "
                                                       f"n_fraction {s.get('n_fraction', 0.0)}); allowed: 'slab'")
        return homogeneous_system(left, s["n_cells_left"] + s["n_cells_right"], het.inplane_repeat)
    if model != "slab":
        raise InputError("transport.device_model", f"got {model!r}; allowed: one of {DEVICE_MODELS}")
    right, _ = ifcs["right_lead"].truncated(cutoff)
    slab, _ = ifcs["device"].truncated(cutoff)
    device = slab.subset(het.device_indices)
    return build_system(left, right, device, het.inplane_repeat, (s["n_cells_left"], s["n_cells_right"]))


def refine_meshes(system: InterfaceSystem, st: dict) -> dict:
    """``st`` with q_mesh and q_mesh_sweep replaced by the meshes actually sampled (q_z refined, see
    :mod:`.sampling`); the meshes as given are kept in ``q_mesh_input`` / ``q_mesh_sweep_input``."""
    left, right = system.primitive("left"), system.primitive("right")
    tops = (band_maximum(left), band_maximum(right)) if st["qz_refine"] == 0 else None

    def factor(mesh) -> int:
        if st["qz_refine"] > 0:
            return st["qz_refine"]
        return auto_qz_refine(left, right, mesh[2], tops)

    out = dict(st, q_mesh_input=st["q_mesh"], q_mesh_sweep_input=list(st["q_mesh_sweep"]), qz_refine_used={})
    refined = []
    for mesh in [st["q_mesh"]] + st["q_mesh_sweep"]:
        m = factor(mesh)
        eff = refined_mesh(mesh, m)
        out["qz_refine_used"][eff] = m
        out.setdefault("input_of", {}).setdefault(eff, tuple(mesh))
        refined.append(eff)
    out["q_mesh"] = refined[0]
    out["q_mesh_sweep"] = list(dict.fromkeys(refined[1:]))
    return out


# ---- tasks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    part: str  # checkpoint folder
    task_id: int
    kind: str  # "mesh" or "path"
    direction: str
    mesh: tuple[int, int, int] | None
    items: tuple  # representative indices (mesh) or point indices (path)


def mesh_name(mesh) -> str:
    return "x".join(str(int(n)) for n in mesh)


def reductions(system: InterfaceSystem, symmetry: InplaneSymmetry, meshes, directions) -> dict:
    """MeshReduction per (mesh, direction): orbits of the incident lead's k_par columns."""
    out = {}
    for mesh in meshes:
        for direction in directions:
            side, _ = DIRECTION_SIDE[direction]
            out[(tuple(mesh), direction)] = reduce_mesh(symmetry, system.primitive(side).lattice, mesh)
    return out


def plan(system: InterfaceSystem, st: dict, reds: dict) -> list[Task]:
    """Every task of the stage, in the same order on every rank: main mesh, sweep meshes, paths."""
    tasks = []
    size = st["block_size"]
    for mesh in [st["q_mesh"]] + [m for m in st["q_mesh_sweep"] if m != st["q_mesh"]]:
        kind = "mesh" if mesh == st["q_mesh"] else "sweep"
        for direction in st["directions"]:
            red = reds[(mesh, direction)]
            # "-w": checkpoints carry quadrature weights (older ones, without, are not mixed in)
            part = f"{kind}-{direction}-{mesh_name(mesh)}-b{size}-g{red.n_ops_used}-w"
            n = len(red.representatives)
            for b in range(0, n, size):
                tasks.append(Task(part, b // size, "mesh", direction, mesh, tuple(range(b, min(b + size, n)))))
    if st["path_points"] > 0:
        for direction in st["directions"]:
            part = f"path-{direction}-n{st['path_points']}"
            n = len(_path(system, st, direction)[0])
            for b in range(0, n, PATH_CHUNK):
                tasks.append(Task(part, b // PATH_CHUNK, "path", direction, None, tuple(range(b, min(b + PATH_CHUNK, n)))))
    return tasks


_PATH_CACHE: dict = {}


def _path(system: InterfaceSystem, st: dict, direction: str):
    side, _ = DIRECTION_SIDE[direction]
    key = (np.asarray(system.primitive(side).lattice, float).tobytes(), st["path_points"])
    if key not in _PATH_CACHE:
        _PATH_CACHE[key] = lead_path(system.primitive(side).lattice, st["path_points"])
    return _PATH_CACHE[key]


def run_task(system: InterfaceSystem, task: Task, st: dict, reds: dict) -> dict[str, np.ndarray]:
    if task.kind == "path":
        q_frac = _path(system, st, task.direction)[0][list(task.items)]
        res = path_transmission(system, task.direction, q_frac, method=st["solver"])
        return {"point": np.array(task.items, int), **res}
    red: MeshReduction = reds[(task.mesh, task.direction)]
    n3 = task.mesh[2]
    _, towards = DIRECTION_SIDE[task.direction]
    parts = []
    for r in task.items:
        i, j = red.representatives[r]
        res = solve_column(system, task.direction, task.mesh, i, j, method=st["solver"])
        for m, (ii, jj, dk) in enumerate(red.members[r]):
            idx = res["mesh_index"].copy()
            idx[:, 0], idx[:, 1] = ii, jj
            idx[:, 2] = (idx[:, 2] + dk) % n3
            copy = dict(res, mesh_index=idx)
            copy["symmetry_image"] = np.full(len(idx), m > 0)
            copy["quadrature_weight"] = qz_end_weights(idx, res["band"], n3, towards)
            parts.append(copy)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def stage_transport(ctx) -> None:
    timer = StageTimer()
    st = settings(ctx.cfg)
    system = load_system(ctx)

    def symmetry_of_system():
        if not st["use_symmetry"]:
            return InplaneSymmetry.identity()
        return find_inplane_symmetry(system, ifc_tol=st["symmetry_tol"])

    with threadpool_limits(limits=1):
        symmetry = ctx.on_root(symmetry_of_system)
        st = ctx.on_root(lambda: refine_meshes(system, st))
    meshes = [st["q_mesh"]] + st["q_mesh_sweep"]
    reds = reductions(system, symmetry, meshes, st["directions"])
    tasks = plan(system, st, reds)
    parts = sorted({t.part for t in tasks})
    done = ctx.finished_tasks(STAGE, parts)
    todo = [t for t in tasks if t.task_id not in done[t.part]]
    if ctx.is_root:
        main = reds[(st["q_mesh"], st["directions"][0])] if st["directions"] else None
        _log.info("transport: q_mesh %s with q_z refined x%d (transport.qz_refine%s): incident modes on %s",
                  st["q_mesh_input"], st["qz_refine_used"][st["q_mesh"]], " = 0, automatic" if st["qz_refine"] == 0 else "",
                  "x".join(map(str, st["q_mesh"])))
        _log.info("transport: mesh %s, %d in-plane columns per direction, %s irreducible under %d in-plane operations "
                  "(largest force-constant mismatch %.1e, %d candidates rejected); %d tasks, %d to do; device %d dof in %d blocks, "
                  "principal layers %d/%d dof; solver %s; acoustic sum rule across the contacts restored "
                  "(largest on-site change %.1e eV/Å^2)",
                  st["q_mesh"], st["q_mesh"][0] * st["q_mesh"][1], len(main.representatives) if main else 0,
                  symmetry.order, symmetry.max_ifc_violation, symmetry.rejected, len(tasks), len(todo), system.n_device_dof,
                  len(system.partition) - 1, system.left.n_dof, system.right.n_dof, st["solver"],
                  system.sum_rule_correction_eV_A2)
    mine = [todo[k] for k in my_share(range(len(todo)), ctx.comm)]
    progress = logmod.Progress(_log, "transport tasks (rank 0 share)", len(mine), ctx.cfg["run"]["progress_seconds"])
    # the block solves (and lead modes) are small matrices: threaded BLAS only adds overhead, and on
    # top of one rank per core it oversubscribes; the dense solver may use the cores a rank has
    blas_threads = 1 if st["solver"] == "rgf" else max(1, (os.cpu_count() or 1) // (ranks_on_node() if ctx.comm.size > 1 else 1))

    def my_tasks() -> None:
        with threadpool_limits(limits=blas_threads):
            for task in mine:
                ctx.results.save_task(STAGE, task.part, task.task_id, **run_task(system, task, st, reds))
                progress.update()

    ctx.run_share(my_tasks)

    with threadpool_limits(limits=blas_threads):  # the writer's Landauer sums run inside write_stage too
        ctx.write_stage(STAGE, lambda: _write(ctx, system, tasks, symmetry, reds, st), timer)


# ---- summing up ---------------------------------------------------------------------------------
def _gather(ctx, tasks, kind: str, direction: str, mesh=None) -> dict[str, np.ndarray]:
    mine = [t for t in tasks if t.kind == kind and t.direction == direction and (mesh is None or t.mesh == mesh)]
    mine.sort(key=lambda t: t.task_id)
    parts = [ctx.results.load_task(STAGE, t.part, t.task_id) for t in mine]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}


def conductance(system: InterfaceSystem, direction: str, d: dict, mesh, temps) -> tuple[np.ndarray, np.ndarray]:
    """(h(T), radiation limit(T)) in MW/(m^2 K) of one direction's mode list on ``mesh``."""
    side, towards = DIRECTION_SIDE[direction]
    volume = abs(np.linalg.det(system.primitive(side).lattice))
    omega_rad_s = d["omega"] * OMEGA_UNIT_RAD_S
    speed = towards * d["vz"] * OMEGA_UNIT_RAD_S * 1e-10  # |v_z| towards the interface, m/s
    nq = int(np.prod(mesh))
    quad = d["quadrature_weight"]
    h = landauer.conductance_MW_m2K(omega_rad_s, speed, d["transmission"], temps, volume, nq, quad)
    h_rad = landauer.radiation_limit_MW_m2K(omega_rad_s, speed, temps, volume, nq, quad)
    return h, h_rad


def _caroli(system: InterfaceSystem, direction: str, d: dict, mesh, count: int) -> tuple[float, int]:
    """Largest |sum of modal T - Tr[Gamma_L G Gamma_R G^H]| over ``count`` sampled (k_par, omega) of one direction
    (candidates at band edges are passed over, see :func:`.solve.caroli_difference`)."""
    side, _ = DIRECTION_SIDE[direction]
    computed = ~d["symmetry_image"].astype(bool)
    theta = 2 * np.pi * d["mesh_index"][computed][:, :2] / np.array(mesh[:2])
    omega = d["omega"][computed]
    worst, used = 0.0, 0
    primary = caroli_samples(theta, omega, d["solve_code"][computed], count)
    taken = set(primary.tolist())
    spare = [p for p in caroli_samples(theta, omega, d["solve_code"][computed], 4 * count) if p not in taken]
    for p in list(primary) + spare:
        pair = caroli_difference(system, side, theta[p], omega[p])
        if pair is None:
            continue
        worst = max(worst, abs(pair[0] - pair[1]))
        used += 1
        if used == count:
            break
    return worst, used


def _mode_rows(ctx, tasks, direction: str, mesh, key: str, gathered: dict, transform=None) -> list:
    """Per-mode table rows of one direction on ``mesh``: the checkpoints' ``key`` in task order (as :func:`_gather`).

    The root writer takes them from ``gathered`` (that direction's :func:`_gather`, already read by
    rank 0); under MPI-IO each rank reads the checkpoints of its share.
    """
    if ctx.writer_mode() == "root":
        return [MemoryRows(gathered[key] if transform is None else transform(gathered[key]))]
    mine = sorted((t for t in tasks if t.kind == "mesh" and t.direction == direction and t.mesh == mesh), key=lambda t: t.task_id)
    return [ctx.results.checkpoint_rows(STAGE, t.part, t.task_id, key, transform=transform) for t in mine]


def _scaled(arr: np.ndarray, factor: float) -> np.ndarray:
    return arr * factor


def _vz_m_s(arr: np.ndarray) -> np.ndarray:
    return arr * OMEGA_UNIT_RAD_S * 1e-10


def _as_dtype(arr: np.ndarray, dtype: str) -> np.ndarray:
    return arr.astype(dtype)


def _over_mesh(arr: np.ndarray, mesh: tuple) -> np.ndarray:
    return arr / np.array(mesh)


def _write(ctx, system: InterfaceSystem, tasks, symmetry: InplaneSymmetry, reds, st: dict):
    """Rank 0: the stage's sums; returns the writer of the stage group (per-mode tables as row tables)."""
    mesh = st["q_mesh"]
    temps = st["temperatures_K"]
    per_dir = {direction: _gather(ctx, tasks, "mesh", direction, mesh) for direction in st["directions"]}
    freqs = [float(d["omega"].max()) * OMEGA_TO_THZ for d in per_dir.values() if d and len(d["omega"])]
    f_max = max(freqs) if freqs else 1.0
    width = st["frequency_bin_THz"]
    edges = np.arange(0.0, f_max + width, width)
    caroli = {}
    if st["caroli_samples"] > 0:
        for direction, d in per_dir.items():
            if d:
                caroli[direction] = _caroli(system, direction, d, mesh, st["caroli_samples"])
    sweep = {}
    for m in st["q_mesh_sweep"]:
        for direction in st["directions"]:
            d = per_dir[direction] if m == mesh else _gather(ctx, tasks, "mesh", direction, m)
            if d:
                sweep[(m, direction)] = (*conductance(system, direction, d, m, temps), len(d["omega"]))
    paths = {}
    if st["path_points"] > 0:
        for direction in st["directions"]:
            d = _gather(ctx, tasks, "path", direction)
            if d:
                paths[direction] = d

    def write(g) -> None:
        worst = 0.0
        nq = int(np.prod(mesh))
        for direction, d in per_dir.items():
            if not d:
                continue
            side, towards = DIRECTION_SIDE[direction]
            volume = abs(np.linalg.det(system.primitive(side).lattice))
            sub = g.create_group(direction)
            omega_rad_s = d["omega"] * OMEGA_UNIT_RAD_S
            speed = towards * d["vz"] * OMEGA_UNIT_RAD_S * 1e-10  # |v_z| towards the interface, m/s
            freq = d["omega"] * OMEGA_TO_THZ
            h, h_rad = conductance(system, direction, d, mesh, temps)
            spectral, cumulative = [], []
            for temp in temps:
                weight = _mode_weight(omega_rad_s, speed, temp) * d["quadrature_weight"]
                spectral.append(landauer.spectral_transmission(freq, weight, d["transmission"], edges))
                contrib = weight * d["transmission"] / (nq * volume * 1e-30) / 1e6
                cumulative.append(landauer.cumulative_conductance(freq, contrib, edges[1:]))
            err = np.abs(d["transmission"] + d["reflection"] - 1.0)
            worst = max(worst, float(err.max()) if len(err) else 0.0)
            # per-mode tables: rows straight from the checkpoints (collective MPI-IO writes where h5py has MPI)
            def rows(key, transform=None):
                return _mode_rows(ctx, tasks, direction, mesh, key, d, transform)

            write_rows(sub, "frequency", rows("omega", partial(_scaled, factor=OMEGA_TO_THZ)), "THz")
            write_rows(sub, "q_frac", rows("mesh_index", partial(_over_mesh, mesh=tuple(mesh))),
                       doc="q in units of the incident lead's primitive reciprocal vectors b1, b2, b3")
            write_rows(sub, "band", rows("band"))
            write_rows(sub, "vz", rows("vz", _vz_m_s), "m/s")
            write_rows(sub, "transmission", rows("transmission"))
            write_rows(sub, "reflection", rows("reflection"))
            write_rows(sub, "quadrature_weight", rows("quadrature_weight"),
                       doc="weight of the mode in the Landauer sums: 1, except the acoustic modes at the first two q_z "
                           "of the Gamma column (2 and 1/2: the trapezoid end correction at q_z = 0, sampling.qz_end_weights)")
            write_rows(sub, "symmetry_image", rows("symmetry_image", partial(_as_dtype, dtype="bool")),
                       doc="true: T, R copied from the symmetry-equivalent mode of the irreducible column of its orbit")
            write_rows(sub, "solve_code", rows("solve_code", partial(_as_dtype, dtype="int8")),
                        doc="0/1: no open channel in the transmitting lead (band bound / eigenvalues): T = 0, R = 1 exactly; "
                            "2: block-tridiagonal solve; 3: dense solve; 4: block solve rejected by its residual check, dense used; "
                                "5: solved at omega (1 + 1e-7), a folded band has an edge at exactly this frequency")
            write_array(sub, "itc", h, "MW/(m^2 K)")
            write_array(sub, "radiation_limit", h_rad, "MW/(m^2 K)")
            write_array(sub, "spectral_transmission", np.array(spectral), doc="rows: temperatures; columns: frequency bins")
            write_array(sub, "cumulative_itc", np.array(cumulative), "MW/(m^2 K)", doc="h restricted to f < frequency_grid")
            computed = ~d["symmetry_image"].astype(bool)
            code = d["solve_code"][computed]
            sub.attrs["incident_lead"] = side
            sub.attrs["cell_volume_A3"] = volume
            sub.attrs["max_abs_T_plus_R_minus_1"] = float(err.max()) if len(err) else 0.0
            sub.attrs["n_irreducible_columns"] = len(reds[(mesh, direction)].representatives)
            sub.attrs["n_modes_computed"] = int(computed.sum())
            sub.attrs["n_modes_solved"] = int(np.count_nonzero(code >= SOLVED_RGF))
            sub.attrs["n_rgf_fallbacks"] = int(np.count_nonzero(code == SOLVED_RGF_FALLBACK))
            sub.attrs["n_shifted_solves"] = int(np.count_nonzero(code == SOLVED_SHIFTED))
            if direction in caroli:
                sub.attrs["caroli_max_abs_diff"] = caroli[direction][0]
                sub.attrs["caroli_n_samples"] = caroli[direction][1]
            if direction in paths:
                _write_path(sub, system, direction, paths[direction], st)
            _log.info("%s: %d incident modes (%d computed, %d scattering solves), h = %s MW/(m^2 K) at %s K "
                      "(radiation limit %s), max|T+R-1| = %.2e%s",
                      direction, len(freq), int(computed.sum()), int(np.count_nonzero(code >= SOLVED_RGF)),
                      np.round(h, 3).tolist(), temps.tolist(), np.round(h_rad, 3).tolist(),
                      sub.attrs["max_abs_T_plus_R_minus_1"],
                      f", Caroli check max diff {caroli[direction][0]:.1e}" if direction in caroli else "")
        write_array(g, "temperatures", temps, "K")
        write_array(g, "frequency_bin_edges", edges, "THz")
        write_array(g, "frequency_grid", edges[1:], "THz")
        write_array(g, "q_mesh", np.array(mesh), doc="mesh of the incident modes: transport.q_mesh with N3 times qz_refine")
        write_array(g, "q_mesh_input", np.array(st.get("q_mesh_input", mesh)), doc="transport.q_mesh as given")
        g.attrs["qz_refine"] = int(st.get("qz_refine_used", {}).get(mesh, 1))
        g.attrs["qz_refine_requested"] = int(st.get("qz_refine", 1))
        write_array(g, "symmetry_rotations", symmetry.rotations,
                    doc="Cartesian in-plane point operations shared by device and leads, used to reduce the k_par mesh")
        g.attrs["symmetry_max_ifc_violation"] = symmetry.max_ifc_violation
        g.attrs["junction_sum_rule_correction_eV_A2"] = system.sum_rule_correction_eV_A2
        g.attrs["symmetry_rejected_operations"] = symmetry.rejected
        g.attrs["solver"] = st["solver"]
        g.attrs["device_model"] = st["device_model"]
        g.attrs["max_abs_T_plus_R_minus_1"] = worst
        if caroli:
            g.attrs["caroli_max_abs_diff"] = max(v[0] for v in caroli.values())
        if len(per_dir) == 2 and all(per_dir.values()):
            h_lr = g["left_to_right/itc"][()]
            h_rl = g["right_to_left/itc"][()]
            mean = 0.5 * (h_lr + h_rl)
            # no conductance in either direction (e.g. a mesh too coarse to sample the window): nothing to compare
            rect = np.divide(100 * np.abs(h_lr - h_rl), mean, out=np.zeros_like(mean), where=mean > 0)
            write_array(g, "rectification_percent", rect, "%")
        if sweep:
            sw = g.create_group("sweep")
            sw.attrs["doc"] = "h(T) of the same system on other q meshes (convergence check); temperatures as /transport/temperatures"
            for (m, direction), (h, h_rad, n_modes) in sweep.items():
                mg = sw.require_group(mesh_name(st.get("input_of", {}).get(m, m)))
                if "q_mesh" not in mg:
                    write_array(mg, "q_mesh", np.array(m), doc="mesh of the incident modes (q_z refined)")
                    mg.attrs["qz_refine"] = int(st.get("qz_refine_used", {}).get(m, 1))
                grp = mg.create_group(direction)
                write_array(grp, "itc", h, "MW/(m^2 K)")
                write_array(grp, "radiation_limit", h_rad, "MW/(m^2 K)")
                grp.attrs["n_modes"] = n_modes
                _log.info("sweep %s %s: h = %s MW/(m^2 K)", mesh_name(m), direction, np.round(h, 3).tolist())

    return write


def _write_path(sub, system: InterfaceSystem, direction: str, d: dict, st: dict) -> None:
    q_frac, q_cart, distance, names, index = _path(system, st, direction)
    order = np.argsort(d["point"])
    p = sub.create_group("path")
    p.attrs["doc"] = ("Gamma-X-U|K-Gamma-W-K-Gamma-L of the incident lead's fcc zone, X along [001] (transport direction z); "
                      "frame x || [110], y || [-110], z || [001]. For each q and band: the band's frequency and the "
                      "transmittance of that mode incident on the interface (for a mode moving away: its partner of the "
                      "same band at the mirrored q_z; where v_z = 0 (Gamma, zone faces) the limit from inside the zone, "
                      "evaluated 1e-4 |b3| away). NaN: no incident wave (acoustic mode at Gamma).")
    write_array(p, "q_cartesian", q_cart, "1/Å", doc="including the factor 2 pi")
    write_array(p, "q_frac", q_frac, doc="on the incident lead's primitive reciprocal vectors b1, b2, b3")
    write_array(p, "distance", distance, "1/Å", doc="path length; zero across the U|K jump")
    write_array(p, "labels", np.array(names, dtype="S8"), doc="special points; U|K: the jump between the equivalent U and K")
    write_array(p, "label_index", np.asarray(index, int), doc="row of each label")
    write_array(p, "label_positions", distance[np.asarray(index, int)], "1/Å", doc="distance of each label")
    write_array(p, "frequency", d["frequency"][order] * OMEGA_TO_THZ, "THz", doc="rows: path points; columns: bands")
    write_array(p, "transmission", d["transmission"][order], doc="rows: path points; columns: bands")
    write_array(p, "vz_incident", d["vz"][order] * OMEGA_UNIT_RAD_S * 1e-10, "m/s",
                doc="v_z of the incident partner actually scattered (sign: + towards +z)")


def _mode_weight(omega_rad_s: np.ndarray, speed_m_s: np.ndarray, temperature: float) -> np.ndarray:
    """hbar omega v_z df/dT per mode (J m / (s K)), the Landauer weight of Eq. 5."""
    from scipy.constants import hbar

    return hbar * omega_rad_s * speed_m_s * landauer.bose_einstein_dfdT(omega_rad_s, temperature)
