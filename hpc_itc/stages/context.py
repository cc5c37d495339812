"""Orchestration: the run context and the structure, relax and force-constant stage shells.

Each stage shell skips itself when the results file already holds it, does its
work (distributed where the stage allows), and has rank 0 write one group
atomically.  Stages talk to each other only through the results file, so any
stage can be resumed from a file written by an earlier, interrupted run.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hpc_itc import log as logmod
from hpc_itc.config import RunConfig
from hpc_itc.errors import InputError
from hpc_itc.parallel import quiet_barrier, ranks_on_node
from hpc_itc.store.file import ResultsFile, StageTimer, _now, read_str_array, read_str_list, write_array, write_str_list
from hpc_itc.core.structure import Heterostructure, InterfaceSpec, LayerCell, build, elements_needed, lead_cells

_log = logmod.get("pipeline")


class RemoteError(RuntimeError):
    """Raised on ranks other than the one where a failure happened."""


@dataclass
class Context:
    cfg: RunConfig
    results: ResultsFile
    comm: Any
    input_sha256: str = ""
    _calculator: Any = field(default=None, repr=False)
    _writer_mode: str | None = field(default=None, repr=False)

    @property
    def is_root(self) -> bool:
        return self.comm.rank == 0

    @property
    def spec(self) -> InterfaceSpec:
        return InterfaceSpec.from_config(self.cfg["structure"])

    def calculator(self):
        """The MLIP calculator of this rank (loaded once)."""
        if self._calculator is None:
            from hpc_itc.core import mlip

            m = self.cfg["mlip"]
            threads = m["num_threads"] or max(1, (os.cpu_count() or 1) // ranks_on_node())
            self._calculator = mlip.load_calculator(self.cfg.model, device=m["device"], dtype=m["dtype"], num_threads=threads)
        return self._calculator

    def on_root(self, fn: Callable[[], Any], meanwhile: Callable[[], Any] | None = None) -> Any:
        """Run ``fn`` on rank 0 and broadcast its result; a failure there fails every rank alike.

        Rank 0 starts only when every rank has arrived: whatever a rank read before (the driver checks
        on every rank which stages the results file holds) was read before ``fn`` can change it.
        ``meanwhile`` runs on the other ranks while rank 0 works (a failure there ends the job through
        the driver's abort).
        """
        result, error = None, None
        quiet_barrier(self.comm)
        if not self.is_root and meanwhile is not None:
            meanwhile()
        if self.is_root:
            try:
                result = fn()
            except InputError as exc:
                error = ("input", exc.key, exc.message)
                if self.comm.size == 1:
                    raise
            except Exception as exc:  # noqa: BLE001 - re-raised below on every rank
                if self.comm.size == 1:
                    raise
                error = ("runtime", type(exc).__name__, str(exc))
                _log.exception("failure on rank 0")
        quiet_barrier(self.comm)  # the other ranks sleep meanwhile instead of spinning in the bcast
        result, error = self.comm.bcast((result, error), root=0)
        if error is not None:
            if error[0] == "input":
                raise InputError(error[1], error[2])
            raise RemoteError(f"{error[1]} on rank 0: {error[2]}")
        return result

    def finished_tasks(self, stage: str, parts) -> dict[str, set[int]]:
        """Checkpointed task ids per part, as rank 0 sees them (every rank must deal from the same list)."""
        return self.on_root(lambda: {p: self.results.finished_tasks(stage, p) for p in parts})

    def run_share(self, work: Callable[[], None]) -> None:
        """Run this rank's share of a distributed stage; a failure on any rank fails every rank.

        Collective: each rank reports success or its error message, so no rank waits
        forever in a later collective for a rank that died in Python.
        """
        ok, message = True, ""
        try:
            _injected_failure(self.comm.rank)
            work()
        except Exception as exc:  # noqa: BLE001 - re-raised below on every rank
            if self.comm.size == 1:
                raise
            ok, message = False, f"{type(exc).__name__}: {exc}"
        quiet_barrier(self.comm)  # ranks done early sleep until the slowest has finished its share
        self.check_all(ok, message)

    def write_stage(self, stage: str, make_writer: Callable[[], Callable], timer: StageTimer | float) -> None:
        """Collective: write stage group ``stage`` atomically; ``make_writer`` runs on rank 0 only.

        ``make_writer()`` does rank 0's work (reading checkpoints, sums) and returns the writer,
        a function filling the stage's h5py group (small arrays with ``write_array``, per-row tables
        with :func:`hpc_itc.h5io.write_rows`).  With one rank, or h5py without MPI, rank 0 writes
        the file alone; under MPI with a parallel h5py every rank writes its rows through MPI-IO
        (:mod:`hpc_itc.h5io`).  Same layout and numbers either way; ``/<stage>`` attrs ``writer``.
        """
        from hpc_itc.store import rows as h5io

        mode = self.writer_mode()
        t0 = time.monotonic()
        t_summed = t0

        def prepared():
            nonlocal t_summed
            writer = make_writer()
            t_summed = time.monotonic()
            return writer

        if mode == "root":
            self.on_root(lambda: self.results.write_stage(stage, prepared(), timer))
            self._log_write(stage, mode, t0, t_summed)
            return
        job = h5io.CollectiveStageWrite(self.results, self.comm, stage)
        try:
            job.skeleton = self.on_root(lambda: job.prepare(prepared()))
            self.run_share(job.load_share)  # each rank reads its share of the checkpoints; any failure fails all
            job.layout()
            seconds = self.comm.bcast(timer.seconds if isinstance(timer, StageTimer) else float(timer), root=0)
            finished = self.comm.bcast(_now(), root=0)
            # a failure inside the collective HDF5 calls is not caught here: the rank's error goes to the
            # driver, which aborts the whole job (the others may wait in a collective that never completes)
            job.write(seconds, finished)
            self.comm.barrier()  # every rank has closed the file before it is renamed
        except Exception:
            if self.is_root:
                job.discard()
            raise
        self.on_root(job.commit)
        self._log_write(stage, mode, t0, t_summed)

    def _log_write(self, stage: str, mode: str, t0: float, t_summed: float) -> None:
        """Rank 0: how long the sums took and the write, and how much was written (benchmarks/scaling.py reads it)."""
        if not self.is_root:
            return
        t1 = time.monotonic()
        with self.results.open() as f:
            sizes = []
            f[stage].visititems(lambda _, obj: sizes.append(obj.nbytes) if hasattr(obj, "nbytes") else None)
        _log.info("%s: summed up on rank 0 in %.2f s, written by the %s writer in %.2f s (%.2f MB of datasets)",
                  stage, t_summed - t0, mode, t1 - t_summed, sum(sizes) / 1e6)

    def writer_mode(self) -> str:
        """"mpio" or "root" (:func:`hpc_itc.h5io.writer_mode`), logged once by rank 0."""
        if self._writer_mode is None:
            from hpc_itc.store import rows as h5io

            # decided by rank 0 for all: a rank that saw another environment must not take another path
            # (an error on one rank only, outside a collective, would leave the others waiting)
            self._writer_mode = self.on_root(lambda: h5io.writer_mode(self.comm))
            if self.is_root:
                _log.info("results writer: %s (%d rank(s), h5py with MPI: %s)", self._writer_mode, self.comm.size, h5io.h5py_has_mpi())
        return self._writer_mode

    def check_all(self, ok: bool, message: str = "") -> None:
        """Collective: raise on every rank if any rank reports a failure."""
        reports = self.comm.allgather((ok, message))
        bad = [(r, m) for r, (good, m) in enumerate(reports) if not good]
        if bad:
            raise RemoteError("; ".join(f"rank {r}: {m}" for r, m in bad))


FAIL_RANK_ENV = "HPC_ITC_FAIL_RANK"
_failure_injected = False


def _injected_failure(rank: int) -> None:
    """Fault injection for the cluster checks (ci/cluster_checks.sh): with HPC_ITC_FAIL_RANK=R, rank R fails
    at the start of its share of the first distributed stage, with an exception (HPC_ITC_FAIL_HOW=raise,
    the default) or by dying at once (=exit, as a rank killed by the OOM killer would)."""
    global _failure_injected
    target = os.environ.get(FAIL_RANK_ENV, "")
    if _failure_injected or not target.isdigit() or int(target) != rank:
        return
    _failure_injected = True
    if os.environ.get("HPC_ITC_FAIL_HOW", "raise") == "exit":
        os._exit(9)
    raise RuntimeError(f"injected failure on rank {rank} ({FAIL_RANK_ENV}={target})")


def model_fingerprint(model: str) -> dict[str, str]:
    """What identifies the model in the input hash: the file's sha256, or the foundation name."""
    from hpc_itc.core import mlip

    path = Path(mlip.resolve_model(model))
    if path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return {"model_sha256": digest}
    return {"model_name": model}


# ---- structure --------------------------------------------------------------------------
def write_heterostructure(group, het: Heterostructure, strain: dict) -> None:
    write_array(group, "symbols", np.array(het.atoms.get_chemical_symbols(), dtype="S2"))
    write_array(group, "positions", het.atoms.positions, "Å")
    write_array(group, "cell", np.array(het.atoms.cell), "Å")
    write_array(group, "masses", het.atoms.get_masses(), "amu")
    write_array(group, "region", het.region, doc="0 left buffer, 1 device, 2 right buffer")
    write_array(group, "side", het.side, doc="0 left material, 1 right material")
    write_array(group, "layer_from_interface", het.layer_from_interface, doc="-1, -2, ... left of the interface; 1, 2, ... right")
    write_array(group, "cell_index", het.cell_index, doc="in-plane cell (c1, c2) of each atom")
    write_array(group, "basis_index", het.basis_index)
    write_array(group, "n_sites", het.n_sites, doc="indices of N atoms of the termination")
    group.attrs["inplane_repeat"] = list(het.inplane_repeat)
    for name, lead in (("left_lead", het.left_lead), ("right_lead", het.right_lead)):
        g = group.create_group(name)
        g.attrs["material"] = lead.material
        g.attrs["inplane_A"] = lead.inplane_A
        g.attrs["layer_step_A"] = lead.layer_step_A
        write_array(g, "lattice", lead.lattice, "Å", doc="rows a1, a2 (in plane), a3 (to the next layer)")
        write_array(g, "positions", lead.positions, "Å")
        write_array(g, "symbols", np.array(lead.symbols, dtype="S2"))
        g.attrs["volume_A3"] = lead.volume_A3
    for key, value in strain.items():
        group.attrs[f"strain_{key}" if not key.startswith("strain") else key] = value


def read_heterostructure(group, spec: InterfaceSpec) -> Heterostructure:
    """Rebuild the slab bookkeeping from ``spec`` and the stored leads, then load stored atoms."""
    cells = []
    for name, material in (("left_lead", spec.left_material), ("right_lead", spec.right_material)):
        g = group[name]
        cells.append(LayerCell(material, float(g.attrs["inplane_A"]), float(g.attrs["layer_step_A"])))
    het = build(spec, *cells)
    het.atoms.set_chemical_symbols(read_str_array(group["symbols"]))
    het.atoms.positions = group["positions"][()]
    het.n_sites = group["n_sites"][()]
    return het


def stage_structure(ctx: Context) -> None:
    timer = StageTimer()

    def work() -> None:
        spec = ctx.spec
        left, right, strain = lead_cells(spec, ctx.cfg.lattice_constant("left"), ctx.cfg.lattice_constant("right"))
        het = build(spec, left, right)
        _log.info("structure: %d atoms (%d in the device), N sites %s, strain on the %s side %.3f%%",
                  len(het.atoms), len(het.device_indices), list(het.n_sites), spec.strained_side, 100 * strain["inplane_strain"])
        ctx.results.write_stage("structure", lambda g: write_heterostructure(g, het, strain), timer)

    ctx.on_root(work)


# ---- relax --------------------------------------------------------------------------------
def write_registry(g, scan, layers: int, area_A2: float) -> None:
    """/relax/registry: the rigid shift x gap scan (relax.registry_search)."""
    from hpc_itc.core.interface import EV_PER_A2_TO_J_PER_M2

    write_array(g, "shifts_frac", scan.shifts_frac, doc="irreducible in-plane shifts of the right half, fractions of a1, a2")
    write_array(g, "gap_grid_A", scan.gap_grid_A, "Å")
    write_array(g, "energy_eV", scan.energy_eV, "eV", doc="thin-slab energy, (shift, gap on gap_grid_A)")
    write_array(g, "best_gap_A", scan.best_gap_A, "Å", doc="gap of lowest energy at each shift (refined)")
    write_array(g, "best_energy_eV", scan.best_energy_eV, "eV")
    write_array(g, "surface_eV", scan.surface(), "eV", doc="lowest rigid energy on the full n x n shift grid (row i: shift i/n along a1), minus the minimum")
    k = scan.chosen
    g.attrs.update(chosen_shift_frac=scan.shifts_frac[k], chosen_gap_A=float(scan.best_gap_A[k]),
                   corrugation_eV=float(scan.surface().max()),
                   start_shift_frac=scan.shifts_frac[scan.start_index], start_gap_A=float(scan.best_gap_A[scan.start_index]),
                   gain_eV=scan.gain_eV, gain_J_m2=scan.gain_eV / area_A2 * EV_PER_A2_TO_J_PER_M2,
                   n_energy_calls=scan.n_energy_calls, layers_per_side=layers, grid=scan.owner.shape[0])


def write_interface_report(g, report: dict) -> None:
    """/relax/interface: bonding diagnostics of the relaxed slab (hpc_itc.core.interface.relaxed_report)."""
    g.attrs["plane_gap_A"] = report["plane_gap_A"]
    g.attrs["layer_spacing_max_deviation_A"] = report["layer_spacing_max_deviation_A"]
    write_str_list(g, "warnings", report["warnings"])
    write_array(g, "terminal_atoms", np.asarray(report["terminal_atoms"], int), doc="atoms from which bonds across the interface are counted")
    for name, values in report["spacings"].items():
        write_array(g, name, np.asarray(values), "Å" if not name.startswith("device") else "",
                    doc="consecutive layer spacings from the interface outwards" if name.startswith("spacing") else "")
    if report["adhesion"]:
        for k, v in report["adhesion"].items():
            g.attrs[k] = v
    b = g.create_group("bonds")
    for pair, rec in report["bonds"].items():
        sub = b.create_group(pair)
        for k, v in rec.items():
            sub.attrs[k] = v


def stage_relax(ctx: Context) -> None:
    from hpc_itc.core import interface as itf
    from hpc_itc.core.relax import relax

    timer = StageTimer()

    def work() -> None:
        calc = ctx.calculator()
        spec = ctx.spec
        rcfg = ctx.cfg["relax"]
        from hpc_itc.core import mlip

        mlip.check_elements(ctx.cfg.model, elements_needed(spec))
        progress = logmod.Progress(_log, "relax steps", rcfg["max_steps"], ctx.cfg["run"]["progress_seconds"])

        def on_step(step: int, energy: float, fmax: float) -> None:
            progress.update()
            _log.debug("relax step %d: E = %.6f eV, fmax = %.4f eV/Å", step, energy, fmax)

        res = relax(spec, ctx.cfg.lattice_constant("left"), ctx.cfg.lattice_constant("right"), calc, rcfg, on_step)
        het = res.heterostructure
        area = itf.interface_area_A2(het.atoms)
        if res.registry is not None:
            sc = res.registry
            _log.info("registry search: %d irreducible shifts of a %dx%d grid, %d energy calls; lowest at shift %s, rigid gap %.3f Å, "
                      "%.3f eV per cell (%.3f J/m²) below the start registry %s", len(sc.shifts_frac), rcfg["registry_grid"],
                      rcfg["registry_grid"], sc.n_energy_calls, np.round(sc.shifts_frac[sc.chosen], 4).tolist(), sc.best_gap_A[sc.chosen],
                      sc.gain_eV, sc.gain_eV / area * itf.EV_PER_A2_TO_J_PER_M2, np.round(sc.shifts_frac[sc.start_index], 4).tolist())
        if not res.converged:
            _log.warning("relaxation stopped after %d steps with fmax %.4f eV/Å > %.4f (relax.max_steps)",
                         len(res.fmax_trace_eV_A), res.fmax_trace_eV_A[-1] if res.fmax_trace_eV_A else float("nan"), rcfg["fmax_eV_A"])
        _log.info("relax: %d steps, final fmax %.4f eV/Å, lattice constants %s Å; right buffer moved %+.4f Å along z (net force %.2e eV/Å)",
                  len(res.fmax_trace_eV_A), res.fmax_trace_eV_A[-1] if res.fmax_trace_eV_A else float("nan"), res.lattice_constants_A,
                  res.right_buffer_dz_A, res.right_buffer_force_z_eV_A)

        def energy(atoms) -> float:
            atoms = atoms.copy()
            atoms.calc = calc
            return float(atoms.get_potential_energy())

        report = itf.relaxed_report(het.atoms, het.side, het.region, het.layer_from_interface,
                                    (het.left_lead.layer_step_A, het.right_lead.layer_step_A), energy, spec.registry_given,
                                    res.energy_trace_eV[-1] if res.energy_trace_eV else None)
        log_interface_report(report)

        def write(g) -> None:
            write_heterostructure(g, het, res.strain)
            write_array(g, "energy_trace", np.array(res.energy_trace_eV), "eV")
            write_array(g, "fmax_trace", np.array(res.fmax_trace_eV_A), "eV/Å")
            g.attrs["converged"] = res.converged
            g.attrs["fmax_target_eV_A"] = rcfg["fmax_eV_A"]
            g.attrs["lattice_constant_left_A"] = res.lattice_constants_A["left"]
            g.attrs["lattice_constant_right_A"] = res.lattice_constants_A["right"]
            g.attrs["interface_shift_frac"] = list(res.spec.interface_shift_frac)
            g.attrs["interface_spacing_start_A"] = res.spec.interface_spacing_A
            g.attrs["relax_gap"] = rcfg["relax_gap"]
            g.attrs["right_buffer_dz_A"] = res.right_buffer_dz_A
            g.attrs["right_buffer_force_z_eV_A"] = res.right_buffer_force_z_eV_A
            g.attrs["rattle_A"] = rcfg["rattle_A"]
            g.attrs["rattle_seed"] = rcfg["rattle_seed"]
            g.attrs["rattle_max_displacement_A"] = res.rattle_max_A
            if res.registry is not None:
                write_registry(g.create_group("registry"), res.registry, rcfg["registry_layers"], area)
            write_interface_report(g.create_group("interface"), report)

        ctx.results.write_stage("relax", write, timer)

    # the relaxation is rank 0's alone: the other ranks load their model meanwhile, off the critical
    # path of the force constants
    ctx.on_root(work, meanwhile=ctx.calculator)


def read_interface_summary(f) -> dict | None:
    """The SPEC's ``interface`` summary from an open results file: /relax/interface, plus the stiffness and the
    lowest device Gamma frequency once /force_constants/device has them; None before the relaxation."""
    if "relax" not in f or "interface" not in f["relax"] or not f["relax"].attrs.get("complete", False):
        return None
    g = f["relax/interface"]
    bonds = {k: dict(g["bonds"][k].attrs) for k in g["bonds"]}
    out = {
        "gap_A": float(g.attrs["plane_gap_A"]),
        "nearest_A": {k: float(v["nearest_A"]) for k, v in bonds.items()},
        "coordination": {k: float(v["coordination"]) for k, v in bonds.items()},
        "adhesion_J_m2": float(g.attrs["adhesion_J_m2"]) if "adhesion_J_m2" in g.attrs else None,
        "layer_spacing_max_deviation_A": float(g.attrs["layer_spacing_max_deviation_A"]),
        "shift_frac": [float(x) for x in f["relax"].attrs.get("interface_shift_frac", [])],
        "warnings": read_str_list(g, "warnings"),
    }
    if "registry" in f["relax"]:
        r = f["relax/registry"].attrs
        out["registry"] = {"chosen_shift_frac": [float(x) for x in r["chosen_shift_frac"]], "gain_eV": float(r["gain_eV"]),
                           "gain_J_m2": float(r["gain_J_m2"]), "start_shift_frac": [float(x) for x in r["start_shift_frac"]]}
    fc = f.get("force_constants/device")
    if fc is not None and f["force_constants"].attrs.get("complete", False) and "interface_stiffness_eV_A4" in fc.attrs:
        k = fc.attrs["interface_stiffness_eV_A4"]
        out["stiffness_eV_A4"] = {"xx": float(k[0, 0]), "yy": float(k[1, 1]), "zz": float(k[2, 2])}
        out["lead_interplanar_stiffness_zz_eV_A4"] = [float(x) for x in fc.attrs["lead_interplanar_stiffness_zz_eV_A4"]]
        out["lowest_gamma_frequency_THz"] = float(fc.attrs["lowest_gamma_frequency_THz"])
        out["warnings"] += read_str_list(fc, "interface_warnings")
    return out


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


def load_relaxed(ctx: Context) -> Heterostructure:
    with ctx.results.open() as f:
        return read_heterostructure(f["relax"], ctx.spec)
