"""Local density of states of the device from scattering states (paper Eq. 7) and the overlap factor (Eq. 11).

LDOS_i(f) = 1/N_q sum over incident bulk modes of both leads |u_i|^2 g(f - f_mode),
u_i the mass-weighted displacement of device atom i in the scattering state of
an incident mode whose bulk eigenvector is normalised over the primitive cell
(phonopy's convention), g a normalised Gaussian in THz.  In a perfect crystal the
scattering state *is* the Bloch wave, so the LDOS of every atom equals
phonopy's projected DOS on the same modes: the validation of this stage.

The overlap factor between two layers with summed LDOS D1, D2 is
S = int D1 D2 df / (int D1 df int D2 df), f in THz, S in 1/THz.
"""

from __future__ import annotations

import numpy as np

from hpc_itc import log as logmod
from hpc_itc.core.harmonic import OMEGA_TO_THZ
from hpc_itc.parallel import my_share
from hpc_itc.store.file import StageTimer, write_array

STAGE = "ldos"
_log = logmod.get("ldos")


# ---- numerical core --------------------------------------------------------------------
def scattering_amplitudes(system, direction: str, mesh, i: int, j: int) -> dict[str, np.ndarray]:
    """|u_i|^2 on every device atom for each incident mode of mesh column (i, j).

    Returns frequency (THz) and weight (n_modes, n_device_atoms).
    """
    from hpc_itc.core.transport.solve import LAM_TOL, at_or_near
    from hpc_itc.stages.transport import DIRECTION_SIDE, OMEGA_MIN_THZ
    from hpc_itc.core.transport.system import incident_modes_at

    side, towards = DIRECTION_SIDE[direction]
    lead = system.lead(side)
    modes = incident_modes_at(system.primitive(side), mesh, i, j, towards, OMEGA_MIN_THZ / OMEGA_TO_THZ)
    theta = 2 * np.pi * np.array([i / mesh[0], j / mesh[1]])
    junction = system.junction(theta)  # in-plane sums and device partition shared by the column's modes
    n_atoms = system.device.n_atoms
    weight = np.zeros((len(modes.omega), n_atoms))

    def device_displacement(omega, lam, incoming):
        sm = junction.solve(omega)
        # the scattering state is linear in the incident wave: expand it in the channels
        sel, c = sm.expand_incident(side, lam, incoming, lam_tol=LAM_TOL)
        return (sm.psi_D_from_left if side == "left" else sm.psi_D_from_right)[:, sel] @ c

    for n, (omega, row, vec) in enumerate(zip(modes.omega, modes.mesh_index, modes.vectors)):
        phases = 2 * np.pi * np.array([i / mesh[0], j / mesh[1], row[2] / mesh[2]])
        lam = np.exp(1j * lead.p * phases[2])
        incoming = lead.bloch_vector(vec, phases, system.repeat)
        # a folded band edge at exactly omega (in-plane supercells): solved nearby, as in the transport stage
        u, _ = at_or_near(lambda w: device_displacement(w, lam, incoming), omega)
        weight[n] = (np.abs(u.reshape(n_atoms, 3)) ** 2).sum(axis=1)
    return {"frequency": modes.omega * OMEGA_TO_THZ, "weight": weight}


def broadened(frequency_THz: np.ndarray, weight: np.ndarray, grid_THz: np.ndarray, sigma_THz: float) -> np.ndarray:
    """sum_modes weight * Gaussian(f - f_mode); weight (n_modes, k) -> (len(grid), k)."""
    out = np.zeros((len(grid_THz), weight.shape[1]))
    norm = 1.0 / (np.sqrt(2 * np.pi) * sigma_THz)
    for start in range(0, len(frequency_THz), 512):  # chunks keep the Gaussian table small
        f = frequency_THz[start : start + 512]
        g = norm * np.exp(-0.5 * ((grid_THz[:, None] - f[None, :]) / sigma_THz) ** 2)
        out += g @ weight[start : start + 512]
    return out


def overlap_factor(grid_THz: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> float:
    """S = int D1 D2 df / (int D1 df * int D2 df), in 1/THz (Eq. 11)."""
    denominator = np.trapezoid(d1, grid_THz) * np.trapezoid(d2, grid_THz)
    return float(np.trapezoid(d1 * d2, grid_THz) / denominator) if denominator > 0 else float("nan")


# ---- stage shell -------------------------------------------------------------------------
def _tasks(cfg, directions):
    mesh = cfg["ldos"]["q_mesh"]
    cols = [(i, j) for i in range(mesh[0]) for j in range(mesh[1])]
    size = cfg["transport"]["block_size"]
    return [(d, b // size, cols[b : b + size]) for d in directions for b in range(0, len(cols), size)]


def stage_ldos(ctx) -> None:
    from hpc_itc.stages.transport import load_system

    timer = StageTimer()
    cfg = ctx.cfg
    mesh = tuple(cfg["ldos"]["q_mesh"])
    directions = ("left_to_right", "right_to_left")
    system = load_system(ctx)
    tasks = _tasks(cfg, directions)
    done = ctx.finished_tasks(STAGE, directions)
    todo = [t for t in tasks if t[1] not in done[t[0]]]
    if ctx.is_root:
        _log.info("ldos: mesh %s of both leads, %d blocks, %d to do", mesh, len(tasks), len(todo))
    mine = [todo[k] for k in my_share(range(len(todo)), ctx.comm)]
    progress = logmod.Progress(_log, "ldos blocks (rank 0 share)", len(mine), cfg["run"]["progress_seconds"])
    def my_tasks() -> None:
        for direction, block, cols in mine:
            parts = [scattering_amplitudes(system, direction, mesh, i, j) for i, j in cols]
            ctx.results.save_task(STAGE, direction, block, frequency=np.concatenate([p["frequency"] for p in parts]),
                                  weight=np.concatenate([p["weight"] for p in parts]))
            progress.update()

    ctx.run_share(my_tasks)
    ctx.write_stage(STAGE, lambda: _writer(ctx, tasks), timer)


def _writer(ctx, tasks):
    """Rank 0: LDOS and overlap factor from the checkpoints; returns the stage's writer.

    Everything stored here is derived (broadened on a frequency grid), so there is no per-row
    table: under MPI-IO rank 0 writes these arrays and the ranks only share the metadata calls.
    """
    from hpc_itc.stages.context import load_relaxed

    cfg = ctx.cfg["ldos"]
    mesh = tuple(cfg["q_mesh"])
    freqs, weights = [], []
    for direction, block, _ in tasks:
        data = ctx.results.load_task(STAGE, direction, block)
        freqs.append(data["frequency"])
        weights.append(data["weight"])
    frequency = np.concatenate(freqs)
    weight = np.concatenate(weights)
    sigma = cfg["broadening_THz"]
    grid = np.arange(0.0, frequency.max() + 5 * sigma, cfg["frequency_step_THz"])
    ldos = broadened(frequency, weight, grid, sigma) / np.prod(mesh)  # (grid, atoms), states/THz per atom
    het = load_relaxed(ctx)
    device = het.device_indices
    layers = het.layer_from_interface[device]
    layer_ids = np.unique(layers)
    layer_ldos = np.stack([ldos[:, layers == lid].sum(axis=1) for lid in layer_ids], axis=1)
    first_left, first_right = cfg["left_layer"], cfg["right_layer"]
    d1 = ldos[:, layers == first_left].sum(axis=1)
    d2 = ldos[:, layers == first_right].sum(axis=1)
    s = overlap_factor(grid, d1, d2)
    symbols = np.array(het.atoms.get_chemical_symbols())[device]
    _log.info("ldos: overlap factor S = %.5f 1/THz between layer %d (%s) and layer %d (%s)", s, first_left,
              "+".join(symbols[layers == first_left]), first_right, "+".join(symbols[layers == first_right]))

    def write(g) -> None:
        write_array(g, "frequency", grid, "THz")
        write_array(g, "ldos", ldos.T, "1/THz", doc="per device atom (rows, device order), Gaussian broadened; integrates to the atom's share of 3 modes")
        write_array(g, "device_atoms", device, doc="slab indices of the device atoms (rows of ldos)")
        write_array(g, "layer_from_interface", layers)
        write_array(g, "layers", layer_ids)
        write_array(g, "layer_ldos", layer_ldos.T, "1/THz", doc="summed over the atoms of each layer (rows follow 'layers')")
        g.attrs["overlap_factor"] = s
        g.attrs["overlap_layers"] = [first_left, first_right]
        g.attrs["overlap_atoms_left"] = "+".join(symbols[layers == first_left])
        g.attrs["overlap_atoms_right"] = "+".join(symbols[layers == first_right])
        g.attrs["broadening_THz"] = sigma
        g.attrs["q_mesh"] = list(mesh)

    return write
