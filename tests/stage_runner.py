"""Run the transport stage in-process on a validated input, with what earlier stages left given in code."""

from __future__ import annotations

import h5py

from hpc_itc import config
from hpc_itc.parallel import SerialComm
from hpc_itc.stages import transport as stage
from hpc_itc.stages.context import Context
from hpc_itc.store.file import ResultsFile


def run_stage(tmp_path, transport: dict, structure: dict | None = None, cutoff: float = 3.0, system=None,
              earlier: dict | None = None) -> h5py.File:
    """Run the stage on an input made by the validator; ``system`` (or ``earlier``: relaxed, force_constants)
    stands for what the earlier stages wrote."""
    cfg = config.validate({"run": {"progress_seconds": 1e9, "output": "r.h5"},
                           "structure": structure or {"left_material": "cu", "right_material": "diamond", "n_cells_left": 4, "n_cells_right": 4},
                           "force_constants": {"cutoff_A": cutoff},
                           "transport": {"directions": ["left_to_right", "right_to_left"], "temperatures_K": [300.0],
                                         "frequency_bin_THz": 0.5, "block_size": 3, **transport}}, base_dir=tmp_path)
    results = ResultsFile(cfg.output_path)
    results.check_or_create("sha", "toml")
    ctx = Context(comm=SerialComm(), cfg=cfg, results=results)
    if system is not None:
        ctx.memo("interface_system", lambda: system)
    for name, value in (earlier or {}).items():
        ctx.memo(name, lambda value=value: value)
    stage.run(ctx)
    return h5py.File(results.path, "r")
