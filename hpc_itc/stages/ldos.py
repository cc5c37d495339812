"""Stage ``ldos``: the scattering states of both leads' incident modes, distributed in blocks of k_par columns;
rank 0 broadens them into the LDOS and forms the overlap factor; :mod:`hpc_itc.store.ldos` writes ``/ldos``."""

from __future__ import annotations

import numpy as np

from hpc_itc import log as logmod
from hpc_itc.config import RunConfig
from hpc_itc.core.ldos import INCIDENT_DIRECTIONS, device_ldos, layer_overlap, scattering_amplitudes
from hpc_itc.parallel import my_share
from hpc_itc.stages.context import Context
from hpc_itc.stages.transport import interface_system
from hpc_itc.store.file import StageTimer
from hpc_itc.store.ldos import write_ldos

STAGE = "ldos"
_log = logmod.get("ldos")


def tasks(cfg: RunConfig) -> list[tuple[str, int, list[tuple[int, int]]]]:
    """(direction, block, columns) of every task: blocks of ``transport.block_size`` columns of ``ldos.q_mesh``."""
    mesh = cfg.ldos.q_mesh
    cols = [(i, j) for i in range(mesh[0]) for j in range(mesh[1])]
    size = cfg.transport.block_size
    return [(d, b // size, cols[b : b + size]) for d in INCIDENT_DIRECTIONS for b in range(0, len(cols), size)]


def run(ctx: Context) -> None:
    timer = StageTimer()
    cfg = ctx.cfg
    mesh = tuple(cfg.ldos.q_mesh)
    system = interface_system(ctx)
    all_tasks = tasks(cfg)
    expected: dict[str, dict[int, dict]] = {d: {} for d in INCIDENT_DIRECTIONS}
    for direction, block, cols in all_tasks:
        expected[direction][block] = {"mesh": list(mesh), "columns": [list(map(int, c)) for c in cols]}
    done = ctx.resume(STAGE, expected)
    todo = [t for t in all_tasks if t[1] not in done[t[0]]]
    if ctx.is_root:
        _log.info("ldos: mesh %s of both leads, %d blocks, %d to do", mesh, len(all_tasks), len(todo))
    mine = [todo[k] for k in my_share(range(len(todo)), ctx.comm)]
    progress = logmod.Progress(_log, "ldos blocks (rank 0 share)", len(mine), cfg.run.progress_seconds)

    def my_tasks() -> None:
        checkpoints = ctx.checkpoints(STAGE)
        for direction, block, cols in mine:
            parts = [scattering_amplitudes(system, direction, mesh, i, j) for i, j in cols]
            checkpoints.save(direction, block, expected[direction][block], frequency=np.concatenate([p["frequency"] for p in parts]),
                                  weight=np.concatenate([p["weight"] for p in parts]))
            progress.update()

    ctx.run_share(my_tasks)
    ctx.write_stage(STAGE, lambda: _summed(ctx, all_tasks), timer)


def _summed(ctx: Context, all_tasks):
    """Rank 0: LDOS and overlap factor from the checkpoints; returns the stage's writer.

    Everything stored here is derived (broadened on a frequency grid), so there is no per-row
    table: under MPI-IO rank 0 writes these arrays and the ranks only share the metadata calls.
    """
    settings = ctx.cfg.ldos
    freqs, weights = [], []
    checkpoints = ctx.checkpoints(STAGE)
    for direction, block, _ in all_tasks:
        data = checkpoints.load(direction, block)
        freqs.append(data["frequency"])
        weights.append(data["weight"])
    grid, ldos = device_ldos(np.concatenate(freqs), np.concatenate(weights), int(np.prod(settings.q_mesh)),
                             settings.broadening_THz, settings.frequency_step_THz)
    het = ctx.relaxed()
    device = het.device_indices
    layers = het.layer_from_interface[device]
    overlap = layer_overlap(grid, ldos, layers, settings.left_layer, settings.right_layer)
    symbols = np.array(het.atoms.get_chemical_symbols())[device]
    left_atoms = "+".join(symbols[layers == settings.left_layer])
    right_atoms = "+".join(symbols[layers == settings.right_layer])
    _log.info("ldos: overlap factor S = %.5f 1/THz between layer %d (%s) and layer %d (%s)", overlap.overlap_factor,
              settings.left_layer, left_atoms, settings.right_layer, right_atoms)
    return lambda g: write_ldos(g, grid, ldos, device, layers, overlap, left_atoms, right_atoms, settings.broadening_THz,
                                settings.q_mesh)
