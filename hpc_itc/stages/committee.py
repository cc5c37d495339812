"""Committee stage: force constants and transport once per member model, for error bars on h.

The geometry is the one ``mlip.model`` relaxed (``/structure`` and ``/relax`` of the main file,
copied unchanged into each member's file by :meth:`ResultsFile.copy_stage`), so the spread measures what the members' force
constants do to h at a fixed interface.  Member k's results are a results file of its own,
``<output>.committee/member_<k>.h5``, run by the same stage shells as the main run and resumed
the same way: a killed committee keeps every member's finished stages and task checkpoints.  The
members are spread over the ranks: the world communicator is split into min(members, ranks)
groups, each running its members one after the other.  Rank 0 then gathers each member's h into
``/committee`` of the main file (:mod:`hpc_itc.store.committee`).
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

from hpc_itc import config
from hpc_itc import log as logmod
from hpc_itc.core.mlip import shipped_committee
from hpc_itc.stages import force_constants, transport
from hpc_itc.stages.context import Context, model_fingerprint
from hpc_itc.store.committee import MemberResult, write_committee
from hpc_itc.store.file import ResultsFile, StageTimer, reading
from hpc_itc.store.force_constants import summary as fc_summary
from hpc_itc.store.transport import read_itc

_log = logmod.get("committee")
MEMBER_STAGES = ("structure", "relax", "force_constants", "transport")
COPIED = ("structure", "relax")  # from the main file: every member works on mlip.model's interface


def member_models(cfg: config.RunConfig) -> list[str]:
    """Absolute paths of the committee's model files (["shipped"]: the members packaged with hpc_itc)."""
    members = list(cfg.committee.models)
    if members == [config.SHIPPED_COMMITTEE]:
        return [str(p) for p in shipped_committee()]
    return [str(config.resolve_path(cfg.base_dir, m).resolve()) for m in members]


def fingerprint(cfg: config.RunConfig) -> dict:
    """The committee stage's extra hash inputs: the sha256 of every member's model file."""
    if not cfg.committee.models:
        return {}
    return {"committee.member_sha256": [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in member_models(cfg)]}


def member_folder(cfg: config.RunConfig) -> Path:
    out = cfg.output_path
    return out.with_name(out.name[: -len(out.suffix)] + ".committee")


def member_config(cfg: config.RunConfig, model: str, output: Path) -> config.RunConfig:
    """The main input with ``mlip.model`` = the member and its own results file (stages structure to transport)."""
    # keys at their defaults are left out: validate fills them in again (and refuses some defaults as given, e.g. '')
    doc = {section: {k: copy.deepcopy(v) for k, v in values.items() if v != config.SCHEMA[section][k].default}
           for section, values in cfg.document.items()}
    doc["mlip"]["model"] = model
    doc["run"]["output"] = str(output)
    doc["run"]["stages"] = list(MEMBER_STAGES)
    doc["committee"].pop("models", None)
    return config.validate(doc, source=cfg.source, base_dir=cfg.base_dir)


def member_stage_inputs(cfg: config.RunConfig, main_model: dict, member: config.RunConfig, member_model: dict) -> dict:
    """Stage identities of a member's file: structure and relax are the main run's (copied from it); the
    force constants and transport are the member's, with the model that relaxed the geometry in them too."""
    relaxed_with = {f"relaxed_with_{k}": v for k, v in main_model.items()}
    inputs = {st: cfg.stage_inputs(st, main_model) for st in COPIED}
    for st in MEMBER_STAGES[len(COPIED):]:
        inputs[st] = member.stage_inputs(st, {**member_model, **relaxed_with})
    return inputs


def run_member(ctx: Context, comm, index: int, model: str, main_model: dict) -> Path:
    """Member ``index`` (0-based) on ``comm``: copy the geometry, then force constants and transport."""
    cfg = ctx.cfg
    path = member_folder(cfg) / f"member_{index + 1}.h5"
    member = member_config(cfg, model, path)
    member_model = model_fingerprint(member.model, member)
    results = ResultsFile(path)
    mctx = Context(comm=comm, faults=ctx.faults, cfg=member, results=results)

    def prepare() -> dict:
        results.stage_inputs = member_stage_inputs(cfg, main_model, member, member_model)
        sha = member.sha256(extra={**member_model, "relaxed_with": main_model})
        for note in results.check_or_create(sha, member.to_toml()):
            _log.info("member %d: %s", index + 1, note)
        for stage in COPIED:
            if not results.is_complete(stage):
                results.copy_stage(ctx.results, stage)
        return results.stage_inputs

    results.stage_inputs = mctx.on_root(prepare)
    for name, shell in (("force_constants", force_constants.run), ("transport", transport.run)):
        if results.is_complete(name):
            if mctx.is_root:
                _log.info("member %d (%s): %s already in %s, skipped", index + 1, Path(model).name, name, path.name)
            continue
        if mctx.is_root:
            _log.info("member %d (%s): stage %s starting", index + 1, Path(model).name, name)
        shell(mctx)
        comm.barrier()
    return path


def _member_result(path: Path, model: str, base: Path) -> MemberResult:
    with reading(path, "committee.models", ["force_constants", "transport"]) as f:
        _, itc = read_itc(f)
        n_calls = int(fc_summary(f)["n_force_evaluations"])
    try:
        rel = str(path.relative_to(base))
    except ValueError:
        rel = str(path)
    return MemberResult(model, hashlib.sha256(Path(model).read_bytes()).hexdigest(), rel, itc, n_calls)


def run(ctx: Context) -> None:
    cfg = ctx.cfg
    timer = StageTimer()
    models = member_models(cfg)
    main_model = model_fingerprint(cfg.model, cfg)
    comm = ctx.comm
    groups = min(len(models), comm.size)
    color = comm.rank * groups // comm.size
    sub = comm.Split(color, comm.rank) if comm.size > 1 else comm
    if ctx.is_root:
        _log.info("committee: %d members (%s) on %d group(s) of ranks; geometry of %s", len(models),
                  ", ".join(Path(m).name for m in models), groups, Path(cfg.model).name)
    try:
        for index in range(color, len(models), groups):
            run_member(ctx, sub, index, models[index], main_model)
    finally:
        if sub is not comm:
            sub.Free()
    comm.barrier()

    def make_writer():
        base = cfg.output_path.parent
        members = [_member_result(member_folder(cfg) / f"member_{k + 1}.h5", m, base) for k, m in enumerate(models)]
        with ctx.results.verified("transport") as f:
            temps, main_itc = read_itc(f)
        directions = [d for d in config.DIRECTIONS if d in main_itc]
        for d in directions:
            hs = [m.itc_MW_m2K[d] for m in members]
            _log.info("committee h %s: %s MW/(m^2 K) at %s K (members %s; %s: %s)", d,
                      ", ".join(f"{sum(h[j] for h in hs) / len(hs):.2f}" for j in range(len(temps))),
                      ", ".join(f"{t:g}" for t in temps), "; ".join(" ".join(f"{x:.2f}" for x in h) for h in hs),
                      Path(cfg.model).name, " ".join(f"{x:.2f}" for x in main_itc[d]))
        return lambda g: write_committee(g, members, directions, temps, main_itc)

    ctx.write_stage("committee", make_writer, timer)
