"""Stage ``relax``: lattice constants, optional registry search and the interface relaxation on rank 0;
bonding diagnostics; writes ``/relax``."""

from __future__ import annotations

import numpy as np

from hpc_itc import log as logmod
from hpc_itc.core import interface as itf
from hpc_itc.core import mlip
from hpc_itc.core.relax import relax
from hpc_itc.core.structure import elements_needed
from hpc_itc.errors import keyed
from hpc_itc.stages.context import MLIP_KEYS, Context
from hpc_itc.store.file import StageTimer
from hpc_itc.store.relax import write_relax

STAGE = "relax"
_log = logmod.get("relax")


def run(ctx: Context) -> None:
    timer = StageTimer()
    rcfg = ctx.cfg.relax

    def work() -> None:
        calc = ctx.calculator()
        spec = ctx.spec
        if not ctx.cfg.mlip.calculator:  # (another ASE calculator was evaluated on the lead cells by the driver)
            with keyed(MLIP_KEYS):
                mlip.check_elements(ctx.cfg.model, elements_needed(spec))
        progress = logmod.Progress(_log, "relax steps", rcfg.max_steps, ctx.cfg.run.progress_seconds, upper_bound=True)

        def on_step(step: int, energy: float, fmax: float) -> None:
            progress.update()
            _log.debug("relax step %d: E = %.6f eV, fmax = %.4f eV/Å", step, energy, fmax)

        res = relax(spec, ctx.cfg.lattice_constant("left"), ctx.cfg.lattice_constant("right"), calc, rcfg, on_step)
        het = res.heterostructure
        area = itf.interface_area_A2(het.atoms)
        if res.registry is not None:
            sc = res.registry
            _log.info("registry search: %d irreducible shifts of a %dx%d grid, %d energy calls; lowest at shift %s, rigid gap %.3f Å, "
                      "%.3f eV per cell (%.3f J/m²) below the start registry %s", len(sc.shifts_frac), rcfg.registry_grid,
                      rcfg.registry_grid, sc.n_energy_calls, np.round(sc.shifts_frac[sc.chosen], 4).tolist(), sc.best_gap_A[sc.chosen],
                      sc.gain_eV, sc.gain_eV / area * itf.EV_PER_A2_TO_J_PER_M2, np.round(sc.shifts_frac[sc.start_index], 4).tolist())
        last_fmax = res.fmax_trace_eV_A[-1] if res.fmax_trace_eV_A else float("nan")
        if not res.converged:
            _log.warning("relaxation stopped after %d steps with fmax %.4f eV/Å > %.4f (relax.max_steps)",
                         len(res.fmax_trace_eV_A), last_fmax, rcfg.fmax_eV_A)
        _log.info("relax: %d steps, final fmax %.4f eV/Å, lattice constants %s Å; right buffer moved %+.4f Å along z (net force %.2e eV/Å)",
                  len(res.fmax_trace_eV_A), last_fmax, {k: round(float(v), 4) for k, v in res.lattice_constants_A.items()},
                  res.right_buffer_dz_A, res.right_buffer_force_z_eV_A)

        def energy(atoms) -> float:
            atoms = atoms.copy()
            atoms.calc = calc
            return float(atoms.get_potential_energy())

        report = itf.relaxed_report(het.atoms, het.side, het.region, het.layer_from_interface,
                                    (het.left_lead.layer_step_A, het.right_lead.layer_step_A), energy, spec.registry_given,
                                    res.energy_trace_eV[-1] if res.energy_trace_eV else None)
        log_interface_report(report)
        ctx.results.write_stage(STAGE, lambda g: write_relax(g, res, report, rcfg, area), timer)

    # the relaxation is rank 0's alone: the other ranks load their model meanwhile, off the critical
    # path of the force constants
    ctx.on_root(work, meanwhile=ctx.calculator)


def log_interface_report(report: dict) -> None:
    bonds = ", ".join(f"{k} {v['nearest_A']:.3f} Å x {v['coordination']:g}"
                      + (f" (vendored PBEsol {v['dft_mean_A']:.3f} ± {v['dft_std_A']:.3f} Å)" if "dft_mean_A" in v else "")
                      for k, v in report["bonds"].items())
    adhesion = report["adhesion"]["adhesion_J_m2"] if report["adhesion"] else float("nan")
    _log.info("interface: plane gap %.3f Å; nearest across (x coordination) %s; adhesion %.3f J/m²; "
              "largest device layer-spacing deviation from the lead %.4f Å", report["plane_gap_A"], bonds, adhesion,
              report["layer_spacing_max_deviation_A"])
    for w in report["warnings"]:
        _log.warning("%s", w)
