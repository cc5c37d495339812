"""The pipeline driver: validate an input, run its stages in order on every rank, resume what a file holds.

``run(path)`` is what ``python -m hpc_itc INPUT.toml`` (and ``srun``/``mpiexec``) does; the sweep
tools call it for each point.  Exit status: 0 success; 2 bad input, with one line
``error: <key>: <what is allowed>`` on stderr and no results file touched; 1 a failure during the
run (under MPI the whole job is aborted with the message); 143 SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Callable

from hpc_itc import __version__, config
from hpc_itc import log as logmod
from hpc_itc.config import DEFAULT_LATTICE_A
from hpc_itc.core import mlip
from hpc_itc.core.resources import ResourceEstimate, estimate
from hpc_itc.core.structure import InterfaceSpec, elements_needed, lead_cells
from hpc_itc.errors import InputError, InvalidInput, keyed, message_line
from hpc_itc.parallel import world
from hpc_itc.stages import cohp, committee, force_constants, ldos, relax, structure, transport
from hpc_itc.stages.collective import FaultInjection
from hpc_itc.stages.context import MLIP_KEYS, Context, model_fingerprint
from hpc_itc.store.checkpoints import CorruptCheckpoint
from hpc_itc.store.file import ResultsFile
from hpc_itc.store.lock import RunLock

# stage name -> its shell (pipeline order: config.STAGES)
STAGES: dict[str, Callable[[Context], None]] = {
    "structure": structure.run,
    "relax": relax.run,
    "force_constants": force_constants.run,
    "transport": transport.run,
    "ldos": ldos.run,
    "cohp": cohp.run,
    "committee": committee.run,
}
assert tuple(STAGES) == config.STAGES


def check_model_elements(cfg: config.RunConfig, calculator=None) -> None:
    """InputError (mlip.model) when the model does not cover the elements of the interface.

    A MACE model lists its elements; another ASE calculator is built and evaluated once on each
    lead's primitive cell (and an N-substituted diamond cell when the interface has N); ``calculator``: the
    one the run will use (built once), else one is built here."""
    if cfg.mlip.calculator:
        from hpc_itc.core import ase_calculator
        from hpc_itc.core.structure import cubic_layer_cell

        m = cfg.mlip
        with keyed(MLIP_KEYS):
            calc = calculator or ase_calculator.build(m.calculator, ase_calculator.resolved_args(m.calculator_args, cfg.base_dir),
                                                      device=m.device, dtype=m.dtype)
            cells = {}
            for side in ("left", "right"):
                material = getattr(cfg.structure, f"{side}_material")
                cells[f"the {material} lead cell"] = cubic_layer_cell(material, cfg.lattice_constant(side)).atoms()
            if cfg.structure.n_fraction > 0:
                cn = cubic_layer_cell("diamond", DEFAULT_LATTICE_A["diamond"]).atoms() * (1, 1, 2)
                cn[0].symbol = "N"
                cells["an N-substituted diamond cell"] = cn
            ase_calculator.check_covers(calc, m.calculator, cells)
        return
    with keyed(MLIP_KEYS):
        mlip.check_elements(cfg.model, elements_needed(InterfaceSpec.from_config(cfg.structure)))


def preflight(cfg: config.RunConfig) -> ResourceEstimate:
    """Every check the input allows before any work: the device holds the principal layers the
    cutoff needs, and the resource estimate is within :data:`~hpc_itc.core.resources.LIMITS`
    (unless ``run.allow_large``).  Returns the estimate (for the log and ``validate``)."""
    s, fc, t = cfg.structure, cfg.force_constants, cfg.transport
    left, right, _ = lead_cells(InterfaceSpec.from_config(s), cfg.lattice_constant("left"), cfg.lattice_constant("right"))
    est = estimate(left, right, (s.n_cells_left, s.n_cells_right), s.buffer_cells, s.inplane_repeat, fc.cutoff_A,
                   fc.supercell_inplane, t.q_mesh, t.qz_refine, len(t.directions), t.solver, t.q_mesh_sweep)
    if t.device_model == "slab" and {"transport", "ldos"} & set(cfg.run.stages):
        for side, p in zip(("left", "right"), est.principal_layers):
            n = getattr(s, f"n_cells_{side}")
            if n < p + 1:  # the same condition core.transport.system.build_system checks on the force constants
                raise InputError(f"structure.n_cells_{side}",
                                 f"{n} device layers, but force_constants.cutoff_A = {fc.cutoff_A:g} Å needs principal layers of {p} "
                                 f"layers plus one interior layer (at the input's lattice constants); allowed: >= {p + 1} (or a smaller cutoff)")
    over = est.over()
    if over and not cfg.run.allow_large:
        raise InputError("run.allow_large", f"the input needs {'; '.join(over)} (limits: docs/resources.md); "
                                            "allowed: a smaller input, or run.allow_large = true if you mean it")
    return est


def defaulted_tables(cfg: config.RunConfig) -> list[str]:
    """Tables the input file does not set at all (they run on their defaults)."""
    return [section for section in config.SCHEMA if section not in cfg.given_tables and (section != "cohp" or "cohp" in cfg.run.stages)]


def validate(path: str) -> int:
    """``python -m hpc_itc validate INPUT.toml``: every check that needs no computation; touches nothing."""
    cfg = config.load(path)
    check_model_elements(cfg)
    est = preflight(cfg)
    print(f"ok: {path} is a valid hpc_itc input (results file {cfg.output_path})")
    print(f"estimate: {est.line()}")
    defaulted = defaulted_tables(cfg)
    if defaulted:
        s = cfg.structure
        print(f"defaults: [{'], ['.join(defaulted)}] not given, their defaults run (docs/input.md)"
              + (f"; the interface is {s.left_material}/{s.right_material}, {s.n_cells_left}+{s.n_cells_right} device layers, "
                 f"n_fraction {s.n_fraction:g}" if "structure" in defaulted else ""))
    return 0


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise SystemExit(143)


def run(path: str) -> int:
    """Run the stages of ``run.stages`` that the results file does not hold yet; returns the exit status."""
    logmod.quiet_known_warnings()
    comm = world()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cfg = config.load(path)
    except InputError as exc:
        if comm.rank == 0:
            print(message_line(exc), file=sys.stderr)
        return 2
    logmod.setup(comm.rank, cfg.run.log_level)
    log = logmod.get("run")
    ctx = Context(comm=comm, faults=FaultInjection.from_environment(), cfg=cfg, results=ResultsFile(cfg.output_path))
    lock = RunLock(cfg.output_path)

    def is_done(name: str) -> bool:
        if name == "cohp":  # lobster_dir is not hashed: redo when it (or its thresholds) changed
            return cohp.is_current(ctx)
        return ctx.results.is_complete(name)

    t0 = time.monotonic()
    try:
        def prepare() -> tuple[str, dict, list[str]]:
            check_model_elements(cfg, ctx.calculator() if cfg.mlip.calculator else None)  # rank 0 keeps it for the stages
            est = preflight(cfg)
            model = model_fingerprint(cfg.model, cfg)
            sha = cfg.sha256(extra=model)
            ctx.results.stage_inputs = {stage: cfg.stage_inputs(stage, model) for stage in config.STAGES}
            ctx.results.stage_inputs["committee"].update(committee.fingerprint(cfg))
            try:
                lock.acquire()
            except OSError as exc:  # read-only folder, /proc, a full disk, a name too long ...
                raise InputError("run.output", f"cannot write next to '{cfg.output_path}' ({exc.strerror or exc}); allowed: a writable folder") from None
            notes = ([lock.note] if lock.note else []) + ctx.results.check_or_create(sha, cfg.to_toml())
            return sha, ctx.results.stage_inputs, notes + [f"estimate: {est.line()}"]

        ctx.input_sha256, stage_inputs, notes = ctx.on_root(prepare)
        ctx.results.stage_inputs = stage_inputs
        if comm.rank == 0:
            log.info("hpc_itc %s: input %s (sha256 %s), results %s, %d rank(s)", __version__, path, ctx.input_sha256[:12], cfg.output_path, comm.size)
            for note in notes:
                log.info("%s", note)
        for name in config.requested_stages(cfg.document):  # committee only when committee.models names members
            if is_done(name):
                if comm.rank == 0:
                    log.info("stage %s: already in %s, skipped", name, cfg.output_path.name)
                continue
            needs = config.NEEDS[name]
            missing = [st for st in needs if not ctx.results.is_complete(st)]
            if missing:
                raise InputError("run.stages", f"stage '{name}' needs {', '.join(missing)} first; add them to run.stages")
            if comm.rank == 0:
                log.info("stage %s: starting", name)
            STAGES[name](ctx)
            comm.barrier()
        if comm.rank == 0:
            log.info("done in %.1f s; summary: python -m hpc_itc inspect %s", time.monotonic() - t0, cfg.output_path)
        return 0
    except (InputError, InvalidInput) as exc:
        if comm.rank == 0:
            ctx.results.remove_if_empty_and_new()  # bad input leaves nothing behind
            print(message_line(exc), file=sys.stderr)
        return 2
    except (OSError, CorruptCheckpoint) as exc:  # the file system failed us (disk full, quota, I/O error): no bug to trace
        what = f"{exc.strerror} ({exc.filename})" if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"error: rank {comm.rank}: run.output: {what}; finished work is checkpointed, rerun the same command when this is fixed",
              file=sys.stderr)
        if comm.size > 1:
            comm.Abort(1)
        return 1
    except SystemExit as exc:
        if comm.rank == 0:
            print("error: terminated (SIGTERM); finished work is checkpointed, rerun the same command to resume", file=sys.stderr)
        if comm.size > 1:  # other ranks may sit in a collective and never see the signal
            comm.Abort(int(exc.code or 143))
        return int(exc.code or 143)
    except Exception as exc:  # noqa: BLE001
        print(f"error: rank {comm.rank}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if comm.size > 1:
            comm.Abort(1)
        raise
    finally:
        if comm.rank == 0:
            lock.release()
