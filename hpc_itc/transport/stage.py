"""Transport stage shell: distribute (direction, k_par block) tasks, checkpoint, sum up.

Each task solves, for every incident bulk mode in its block of in-plane mesh
columns, the scattering problem at that mode's (k_par, omega), and checkpoints
(omega, v_z, T, R) per mode.  Rank 0 then forms the Landauer sums (paper Eq. 5),
spectral transmittance (Eq. 6), cumulative conductance and the radiation limits.
"""

from __future__ import annotations

import os

import numpy as np
from threadpoolctl import threadpool_limits

from .. import log as logmod
from ..harmonic import OMEGA_TO_THZ, OMEGA_UNIT_RAD_S
from ..parallel import my_share, ranks_on_node
from ..results import StageTimer, write_array
from . import landauer
from .scattering import solve_scattering
from .system import InterfaceSystem, build_system, incident_modes_at

STAGE = "transport"
_log = logmod.get("transport")
OMEGA_MIN_THZ = 1e-3  # acoustic modes at Gamma are skipped (see incident_modes_at)
LAM_TOL = 1e-4
DIRECTION_SIDE = {"left_to_right": ("left", +1), "right_to_left": ("right", -1)}


def load_system(ctx) -> InterfaceSystem:
    from ..force_constants import load_force_constants

    het, ifcs = load_force_constants(ctx)
    cutoff = ctx.cfg["force_constants"]["cutoff_A"]
    left, _ = ifcs["left_lead"].truncated(cutoff)
    right, _ = ifcs["right_lead"].truncated(cutoff)
    slab, _ = ifcs["device"].truncated(cutoff)
    device = slab.subset(het.device_indices)
    s = ctx.cfg["structure"]
    return build_system(left, right, device, het.inplane_repeat, (s["n_cells_left"], s["n_cells_right"]))


def solve_column(system: InterfaceSystem, direction: str, mesh, i: int, j: int) -> dict[str, np.ndarray]:
    """T and R of every incident mode in mesh column (i, j) for one direction."""
    side, towards = DIRECTION_SIDE[direction]
    primitive = system.primitive(side)
    lead = system.lead(side)
    modes = incident_modes_at(primitive, mesh, i, j, towards, OMEGA_MIN_THZ / OMEGA_TO_THZ)
    theta = 2 * np.pi * np.array([i / mesh[0], j / mesh[1]])
    left, right, h_d, v_ld, v_dr = system.blocks(theta)
    t_out = np.zeros(len(modes.omega))
    r_out = np.zeros(len(modes.omega))
    for n, (omega, row, vec) in enumerate(zip(modes.omega, modes.mesh_index, modes.vectors)):
        phases = 2 * np.pi * np.array([i / mesh[0], j / mesh[1], row[2] / mesh[2]])
        lam = np.exp(1j * lead.p * phases[2])
        smatrix = solve_scattering(left, right, h_d, v_ld, v_dr, omega)
        # lam_tol admits nearly degenerate partners (a symmetry broken at the 1e-9 level
        # splits their Bloch factors by more than the solver's tolerance)
        t_out[n], r_out[n] = smatrix.incident(side, lam, lead.bloch_vector(vec, phases, system.repeat), lam_tol=LAM_TOL)
    return {"mesh_index": modes.mesh_index, "band": modes.band, "omega": modes.omega, "vz": modes.vz,
            "transmission": t_out, "reflection": r_out}


def _columns(mesh) -> list[tuple[int, int]]:
    return [(i, j) for i in range(mesh[0]) for j in range(mesh[1])]


def _tasks(cfg) -> list[tuple[str, int, list[tuple[int, int]]]]:
    mesh = cfg["transport"]["q_mesh"]
    cols = _columns(mesh)
    size = cfg["transport"]["block_size"]
    tasks = []
    for direction in cfg["transport"]["directions"]:
        for b in range(0, len(cols), size):
            tasks.append((direction, b // size, cols[b : b + size]))
    return tasks


def stage_transport(ctx) -> None:
    timer = StageTimer()
    cfg = ctx.cfg
    mesh = tuple(cfg["transport"]["q_mesh"])
    system = load_system(ctx)
    tasks = _tasks(cfg)
    done = ctx.finished_tasks(STAGE, cfg["transport"]["directions"])
    todo = [t for t in tasks if t[1] not in done[t[0]]]
    if ctx.is_root:
        _log.info("transport: mesh %s, %d in-plane columns per direction in %d blocks, %d to do, device %d dof, principal layers %d/%d dof",
                  mesh, mesh[0] * mesh[1], len(tasks), len(todo), system.n_device_dof, system.left.n_dof, system.right.n_dof)
    mine = [todo[k] for k in my_share(range(len(todo)), ctx.comm)]
    progress = logmod.Progress(_log, "transport blocks (rank 0 share)", len(mine), cfg["run"]["progress_seconds"])
    ok, message = True, ""
    # the dense solves are small: threaded BLAS on top of one rank per core only oversubscribes
    blas_threads = max(1, (os.cpu_count() or 1) // (ranks_on_node() if ctx.comm.size > 1 else 1))
    try:
        with threadpool_limits(limits=blas_threads):
            _solve_tasks(ctx, system, mesh, mine, progress)
    except Exception as exc:  # noqa: BLE001 - reported collectively so no rank hangs
        if ctx.comm.size == 1:
            raise
        ok, message = False, f"{type(exc).__name__}: {exc}"
    ctx.check_all(ok, message)
    ctx.on_root(lambda: _write(ctx, system, tasks, timer))


def _solve_tasks(ctx, system: InterfaceSystem, mesh, mine, progress) -> None:
    for direction, block, cols in mine:
        parts = [solve_column(system, direction, mesh, i, j) for i, j in cols]
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        ctx.results.save_task(STAGE, direction, block, **merged)
        progress.update()


def _write(ctx, system: InterfaceSystem, tasks, timer) -> None:
    cfg = ctx.cfg["transport"]
    mesh = tuple(cfg["q_mesh"])
    temps = np.array(cfg["temperatures_K"], float)
    per_dir = {}
    for direction in cfg["directions"]:
        blocks = sorted(t[1] for t in tasks if t[0] == direction)
        parts = [ctx.results.load_task(STAGE, direction, b) for b in blocks]
        per_dir[direction] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    f_max = max(float(d["omega"].max()) * OMEGA_TO_THZ for d in per_dir.values() if len(d["omega"])) if per_dir else 1.0
    width = ctx.cfg["transport"]["frequency_bin_THz"]
    edges = np.arange(0.0, f_max + width, width)

    def write(g) -> None:
        worst = 0.0
        for direction, d in per_dir.items():
            side, towards = DIRECTION_SIDE[direction]
            volume = abs(np.linalg.det(system.primitive(side).lattice))
            sub = g.create_group(direction)
            omega_rad_s = d["omega"] * OMEGA_UNIT_RAD_S
            speed = towards * d["vz"] * OMEGA_UNIT_RAD_S * 1e-10  # |v_z| towards the interface, m/s
            freq = d["omega"] * OMEGA_TO_THZ
            h = landauer.conductance_MW_m2K(omega_rad_s, speed, d["transmission"], temps, volume, int(np.prod(mesh)))
            h_rad = landauer.radiation_limit_MW_m2K(omega_rad_s, speed, temps, volume, int(np.prod(mesh)))
            spectral, cumulative = [], []
            for temp in temps:
                weight = _mode_weight(omega_rad_s, speed, temp)
                spectral.append(landauer.spectral_transmission(freq, weight, d["transmission"], edges))
                contrib = weight * d["transmission"] / (int(np.prod(mesh)) * volume * 1e-30) / 1e6
                cumulative.append(landauer.cumulative_conductance(freq, contrib, edges[1:]))
            err = np.abs(d["transmission"] + d["reflection"] - 1.0)
            worst = max(worst, float(err.max()) if len(err) else 0.0)
            write_array(sub, "frequency", freq, "THz")
            write_array(sub, "q_frac", d["mesh_index"] / np.array(mesh), doc="q in units of the incident lead's primitive reciprocal vectors b1, b2, b3")
            write_array(sub, "band", d["band"])
            write_array(sub, "vz", d["vz"] * OMEGA_UNIT_RAD_S * 1e-10, "m/s")
            write_array(sub, "transmission", d["transmission"])
            write_array(sub, "reflection", d["reflection"])
            write_array(sub, "itc", h, "MW/(m^2 K)")
            write_array(sub, "radiation_limit", h_rad, "MW/(m^2 K)")
            write_array(sub, "spectral_transmission", np.array(spectral), doc="rows: temperatures; columns: frequency bins")
            write_array(sub, "cumulative_itc", np.array(cumulative), "MW/(m^2 K)", doc="h restricted to f < frequency_grid")
            sub.attrs["incident_lead"] = side
            sub.attrs["cell_volume_A3"] = volume
            sub.attrs["max_abs_T_plus_R_minus_1"] = float(err.max()) if len(err) else 0.0
            _log.info("%s: %d incident modes, h = %s MW/(m^2 K) at %s K (radiation limit %s), max|T+R-1| = %.2e",
                      direction, len(freq), np.round(h, 3).tolist(), temps.tolist(), np.round(h_rad, 3).tolist(), sub.attrs["max_abs_T_plus_R_minus_1"])
        write_array(g, "temperatures", temps, "K")
        write_array(g, "frequency_bin_edges", edges, "THz")
        write_array(g, "frequency_grid", edges[1:], "THz")
        write_array(g, "q_mesh", np.array(mesh))
        g.attrs["max_abs_T_plus_R_minus_1"] = worst
        if len(per_dir) == 2:
            h_lr = g["left_to_right/itc"][()]
            h_rl = g["right_to_left/itc"][()]
            write_array(g, "rectification_percent", 100 * np.abs(h_lr - h_rl) / (0.5 * (h_lr + h_rl)), "%")

    ctx.results.write_stage(STAGE, write, timer.seconds)


def _mode_weight(omega_rad_s: np.ndarray, speed_m_s: np.ndarray, temperature: float) -> np.ndarray:
    """hbar omega v_z df/dT per mode (J m / (s K)), the Landauer weight of Eq. 5."""
    from scipy.constants import hbar

    return hbar * omega_rad_s * speed_m_s * landauer.bose_einstein_dfdT(omega_rad_s, temperature)
