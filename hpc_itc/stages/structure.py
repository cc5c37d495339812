"""Stage ``structure``: build the Cu/N_x/diamond slab and its leads on rank 0 and write ``/structure``."""

from __future__ import annotations

from hpc_itc import log as logmod
from hpc_itc.core.structure import build, lead_cells
from hpc_itc.stages.context import Context
from hpc_itc.store.file import StageTimer
from hpc_itc.store.structure import write_heterostructure

STAGE = "structure"
_log = logmod.get("structure")


def run(ctx: Context) -> None:
    timer = StageTimer()

    def work() -> None:
        spec = ctx.spec
        left, right, strain = lead_cells(spec, ctx.cfg.lattice_constant("left"), ctx.cfg.lattice_constant("right"))
        het = build(spec, left, right)
        _log.info("structure: %d atoms (%d in the device), N sites %s, strain on the %s side %.3f%%",
                  len(het.atoms), len(het.device_indices), list(het.n_sites), spec.strained_side, 100 * strain["inplane_strain"])
        ctx.results.write_stage(STAGE, lambda g: write_heterostructure(g, het, strain), timer)

    ctx.on_root(work)
