"""Stage ``cohp``: analyse ``[cohp] lobster_dir`` (a finished VASP+LOBSTER folder) on rank 0 and write ``/cohp``."""

from __future__ import annotations

from pathlib import Path

from hpc_itc import log as logmod
from hpc_itc.config import resolve_path
from hpc_itc.core.cohp import analyse_lobster_folder
from hpc_itc.errors import keyed
from hpc_itc.stages.context import Context
from hpc_itc.store.cohp import made_from, write_cohp_group
from hpc_itc.store.file import StageTimer

STAGE = "cohp"
_log = logmod.get("cohp")


def configured_folder(ctx: Context) -> Path | None:
    """``[cohp] lobster_dir`` resolved against the input file's folder (None when not set)."""
    spec = ctx.cfg.cohp.lobster_dir
    return resolve_path(Path(ctx.cfg.base_dir), spec) if spec else None


def is_current(ctx: Context) -> bool:
    """True when /cohp is complete and was made from the configured folder and thresholds.

    ``[cohp]`` is not part of the input hash, so a finished /cohp may come from another
    folder or thresholds; the driver uses this to decide whether to run the stage again.
    """
    folder = configured_folder(ctx)
    if folder is None or not ctx.results.is_complete(STAGE):
        return False
    with ctx.results.open() as f:
        return made_from(f, folder, ctx.cfg.cohp)


def run(ctx: Context) -> None:
    timer = StageTimer()
    settings = ctx.cfg.cohp
    folder = configured_folder(ctx)
    if folder is None:
        if ctx.is_root:
            _log.info("cohp: no [cohp] lobster_dir given; nothing to analyse (write inputs with 'python -m hpc_itc cohp-inputs')")
        return

    def work() -> None:
        with keyed("cohp.lobster_dir"):  # raises before anything is written
            result = analyse_lobster_folder(folder, min_dz_A=settings.min_dz_A, plane_tol_A=settings.plane_tol_A,
                                            layer_thickness_A=settings.layer_thickness_A)
        what = "interface bonds" if result.layers.kind == "interface" else "bonds"
        _log.info("cohp: %s: %d %s, mean -ICOHP %.4f eV; %s", result.layers.describe(), result.n_bonds, what,
                  result.minus_icohp_mean_eV,
                  ", ".join(f"{k} {t.count} x {t.minus_icohp_mean_eV:.4f} eV" for k, t in list(result.per_type.items())[:6])
                  + (f", +{len(result.per_type) - 6} more types" if len(result.per_type) > 6 else ""))
        ctx.results.write_stage(STAGE, lambda g: write_cohp_group(g, result), timer)

    ctx.on_root(work)
