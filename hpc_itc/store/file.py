"""The HDF5 results file: one group per stage, written atomically, plus checkpoints.

Layout (see docs/results.md):

    /                       attrs: input_sha256, input_toml, hpc_itc_version, created
    /<stage>                attrs: complete (bool), wall_seconds, finished (ISO time)
    /<stage>/...            datasets with a ``unit`` attribute where they carry one

Atomicity: a stage is written into a copy of the file, flushed, and moved over
the original with ``os.replace``, so a crash at any moment leaves either the old
or the new file, never a half-written one.  Work inside a long stage is
checkpointed in a sidecar folder ``<output>.ckpt/<stage>/`` as one small file per
finished task (also written by rename), so killed jobs lose nothing; the sidecar
is folded into the stage group and removed when the stage completes.

Identity: each stage group carries the hash of the inputs it depends on (``input_sha256``, with the
keys themselves in ``inputs``) and a checksum of its content (``content_sha256``,
:func:`hpc_itc.store.h5.seal_group`); each checkpoint carries its own identity
(:mod:`hpc_itc.store.checkpoints`).  A finished stage from other inputs is refused, naming the keys.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import h5py
import tomllib

from hpc_itc import __version__
from hpc_itc.config import STAGE_INPUTS, STAGES, differing_keys, inputs_sha256, whole_input_sha256
from hpc_itc.errors import InputError, ResultsMismatchError
from hpc_itc.store.checkpoints import StageCheckpoints
from hpc_itc.store.h5 import fsync, group_complete, now, seal_group, verify_group

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")


class ResultsFile:
    """Access to one results file; stage groups are written by :meth:`write_stage` (rank 0) or, under MPI,
    by :meth:`hpc_itc.stages.context.Context.write_stage` (every rank, MPI-IO where h5py has it).

    ``stage_inputs``: stage -> the input keys it depends on and their values
    (:meth:`hpc_itc.config.RunConfig.stage_inputs`), set by the driver on every rank; stored on each
    stage group written (attrs ``input_sha256``, ``inputs``) and in its checkpoints.
    """

    def __init__(self, path: str | Path, stage_inputs: dict[str, dict[str, Any]] | None = None):
        self.path = Path(path)
        self.stage_inputs: dict[str, dict[str, Any]] = dict(stage_inputs or {})
        self.created_now = False  # check_or_create made the file in this run

    # ---- creation and identity -------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_file()

    def input_sha256(self) -> str | None:
        if not self.exists():
            return None
        with self.open() as f:
            return f.attrs.get("input_sha256")

    def stage_sha256(self, stage: str) -> str:
        return inputs_sha256(self.stage_inputs.get(stage, {}))

    def check_or_create(self, input_sha256: str, input_toml: str) -> list[str]:
        """Refuse a file holding a stage made from other inputs; create a new file otherwise (rank 0 only).

        A finished stage is compatible when the keys it depends on (``stage_inputs``) agree with this
        input's; keys of later stages may differ (then the file's root attributes ``input_sha256`` and
        ``input_toml`` move to this input).  Also removes what killed runs left behind (stage copies,
        checkpoint folders of finished stages).  Returns log lines saying what was done.
        """
        notes: list[str] = []
        if self.exists():
            try:
                with self.open() as f:
                    found = f.attrs.get("input_sha256")
                    mismatch = self._first_mismatch(f, input_sha256)
                    complete = [name for name in STAGES if group_complete(f, name)]
            except OSError:
                raise InputError("run.output", f"'{self.path}' exists but is not a readable HDF5 file; move it away or choose another run.output") from None
            if mismatch is not None:
                stage, keys = mismatch
                raise ResultsMismatchError(
                    "run.output",
                    f"'{self.path}' holds stage {stage} computed from other inputs ({'; '.join(keys)}); "
                    "choose another run.output or move the file away",
                )
            for p in self.remove_stale_copies():
                notes.append(f"removed {p.name}, a stage copy left by a killed run")
            for stage in complete:  # a run killed while clearing them leaves these behind
                if self.checkpoint_dir(stage).exists():
                    self.clear_checkpoints(stage)
                    notes.append(f"removed the leftover checkpoints of finished stage {stage}")
            if found != input_sha256:
                self._set_root_input(input_sha256, input_toml)
                notes.append(f"input changed only in keys no finished stage depends on (sha256 {str(found)[:12]}... -> {input_sha256[:12]}...); "
                             f"finished stages {', '.join(complete) or '(none)'} are kept")
            return notes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_path()
        with h5py.File(tmp, "w") as f:
            f.attrs["input_sha256"] = input_sha256
            f.attrs["input_toml"] = input_toml
            f.attrs["hpc_itc_version"] = __version__
            f.attrs["created"] = now()
        os.replace(tmp, self.path)
        self.created_now = True
        return notes

    def remove_if_empty_and_new(self) -> bool:
        """Delete the file when this run created it and no stage finished (a run that stopped on bad input leaves nothing)."""
        if self.created_now and self.exists() and not self.stages_complete() and not self.checkpoint_dir("").exists():
            self.path.unlink()
            self.created_now = False
            return True
        return False

    def _first_mismatch(self, f: h5py.File, input_sha256: str) -> tuple[str, list[str]] | None:
        """(stage, differing keys) of the first finished stage made from other inputs, or None."""
        legacy: list = []  # the input a file from before stage hashes records, and whether its hash proves it (read once)
        for stage, current in self.stage_inputs.items():
            if not group_complete(f, stage) or stage not in STAGE_INPUTS or not STAGE_INPUTS[stage]:
                continue
            g = f[stage]
            if "input_sha256" in g.attrs:
                if str(g.attrs["input_sha256"]) == inputs_sha256(current):
                    continue
                try:
                    stored = json.loads(str(g.attrs.get("inputs", "{}")))
                except ValueError:
                    return stage, ["the stage's record of its inputs is unreadable"]
                keys = differing_keys(stored, current)
                if not keys:  # only keys newer than the file, at their defaults
                    continue
                return stage, keys
            if f.attrs.get("input_sha256") == input_sha256:  # written before stage hashes, from this very input
                continue
            # written before stage hashes: only the whole input's hash is known.  Recomputed from the file's own
            # input_toml with this run's model fingerprint it proves the document (and the model) the file was
            # made from; then its keys are compared one by one (keys newer than the file count as defaults).
            if not legacy:
                try:
                    doc = tomllib.loads(str(f.attrs.get("input_toml", "")))
                except tomllib.TOMLDecodeError:
                    doc = {}
                model = {k.split(".", 1)[1]: v for inputs in self.stage_inputs.values() for k, v in inputs.items() if k.startswith("mlip.model_")}
                legacy[:] = [doc, whole_input_sha256(doc, model) == f.attrs.get("input_sha256")]
            doc, proven = legacy
            if not proven:
                # the recorded input does not give the file's hash with this run's model: most likely another model
                first = next((st for st in STAGES if group_complete(f, st) and "mlip" in STAGE_INPUTS.get(st, ())), stage)
                return first, ["the model file, or the input recorded in the file does not match its hash "
                               "(the file was written before stage hashes)"]
            stored = {k: doc.get(k.split(".")[0], {}).get(k.split(".")[1]) for k in current if not k.startswith("mlip.model_")}
            stored = {k: v for k, v in stored.items() if v is not None}
            keys = differing_keys(stored, {k: v for k, v in current.items() if not k.startswith("mlip.model_")})
            if keys:
                return stage, keys
        return None

    def _set_root_input(self, input_sha256: str, input_toml: str) -> None:
        tmp = self.tmp_path()
        shutil.copyfile(self.path, tmp)
        try:
            with h5py.File(tmp, "a") as f:
                f.attrs["input_sha256"] = input_sha256
                f.attrs["input_toml"] = input_toml
            fsync(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, self.path)

    # ---- reading ---------------------------------------------------------------
    @contextmanager
    def open(self) -> Iterator[h5py.File]:
        with h5py.File(self.path, "r") as f:
            yield f

    def stages_complete(self) -> list[str]:
        if not self.exists():
            return []
        with self.open() as f:
            return [name for name in f if isinstance(f[name], h5py.Group) and f[name].attrs.get("complete", False)]

    def is_complete(self, stage: str) -> bool:
        return stage in self.stages_complete()

    def verified(self, *stages: str):
        """``with results.verified("relax") as f``: :func:`reading` of this file, checking only ``stages``."""
        return reading(self.path, "run.output", stages)

    # ---- writing ---------------------------------------------------------------
    def write_stage(self, stage: str, writer: Callable[[h5py.Group], None], wall_seconds: "float | StageTimer") -> None:
        """Replace group ``stage`` with what ``writer`` puts in it, atomically (one process: rank 0).

        ``wall_seconds`` may be the stage's StageTimer: it is then read after the writer ran,
        so work done while writing (sums, phonons) counts towards the stage's wall time.
        The collective form for several ranks (MPI-IO) is :meth:`hpc_itc.stages.context.Context.write_stage`.
        """
        tmp = self.tmp_path()
        shutil.copyfile(self.path, tmp)
        try:
            with h5py.File(tmp, "a") as f:
                if stage in f:
                    del f[stage]
                group = f.create_group(stage)
                writer(group)
                seconds = wall_seconds.seconds if isinstance(wall_seconds, StageTimer) else wall_seconds
                group.attrs["writer"] = "root"
                group.attrs["wall_seconds"] = float(seconds)
                group.attrs["finished"] = now()
                group.attrs["complete"] = True
                self.seal(group)
                f.flush()
            fsync(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)  # the file itself is untouched; leave no half-written copy behind
            raise
        os.replace(tmp, self.path)
        self.clear_checkpoints(stage)

    def copy_stage(self, source: "ResultsFile", stage: str) -> None:
        """Write ``source``'s finished group ``stage`` into this file unchanged (datasets and attributes, then
        sealed with this file's stage identity, which the caller sets to the source's), atomically."""
        def writer(g: h5py.Group) -> None:
            with reading(source.path, "run.output", [stage]) as f:
                src = f[stage]
                for name in src:
                    f.copy(src[name], g, name)
                for key, value in src.attrs.items():
                    g.attrs[key] = value

        with reading(source.path, "run.output", [stage]) as f:
            seconds = float(f[stage].attrs.get("wall_seconds", 0.0))
        self.write_stage(stage, writer, seconds)

    def seal(self, group: h5py.Group) -> None:
        """The stage's input identity and checksum, written last before the rename."""
        stage = group.name.strip("/")
        if stage in self.stage_inputs:
            group.attrs["input_sha256"] = self.stage_sha256(stage)
            group.attrs["inputs"] = json.dumps(self.stage_inputs[stage], sort_keys=True)
        seal_group(group)

    def remove_stale_copies(self) -> list[Path]:
        """Delete stage copies left by a run killed while writing (the file itself is intact: the rename never happened).

        Called by rank 0 when a run starts on an existing file, holding the file's lock (:mod:`hpc_itc.store.lock`).
        """
        stale = sorted(self.path.parent.glob(f".{self.path.name}.tmp*"))
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def tmp_path(self) -> Path:
        """Where a stage is written before the rename (same folder: os.replace is atomic only within a file system)."""
        return self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")

    # ---- checkpoints -----------------------------------------------------------
    def checkpoint_dir(self, stage: str, part: str = "") -> Path:
        base = self.path.with_name(self.path.name + ".ckpt") / stage
        return base / part if part else base

    def checkpoints(self, stage: str) -> StageCheckpoints:
        """The task checkpoints of ``stage`` for this run's inputs (:mod:`hpc_itc.store.checkpoints`)."""
        return StageCheckpoints(self.checkpoint_dir(stage), stage, self.stage_sha256(stage))

    def clear_checkpoints(self, stage: str) -> None:
        folder = self.checkpoint_dir(stage)
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
        root = folder.parent
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()


class CorruptResultsError(InputError):
    """A stage group of a results file does not match its checksum or cannot be read."""

    def __init__(self, path: Path, stage: str, problem: str, key: str = "run.output"):
        super().__init__(key, f"'{path}' is corrupt: stage {stage} {problem}; move the file away and rerun "
                              "(or restore it from a copy)")
        self.stage = stage


def open_for_reading(path: str | Path, key: str = "result", verify: bool = True, stages=None) -> h5py.File:
    """Open a results file read-only; a missing or unreadable file is an InputError naming ``key``.

    ``verify``: the stage groups (``stages``, or every one the file has) are checked against their
    checksums first; a stage that fails (or cannot be read) is a :class:`CorruptResultsError` naming it,
    so neither the pipeline nor the tools read damaged data as good.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(key, f"'{path}' not found; give a results file written by hpc_itc")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise InputError(key, f"'{path}' is not a readable HDF5 file") from None
    if verify:
        try:
            problems = verify_file(f) if stages is None else {stage: verify_group(f, stage) for stage in stages}
        except BaseException:
            f.close()
            raise
        bad = {stage: why for stage, why in problems.items() if why is not None and not why.startswith("unverified")}
        if bad:
            f.close()
            stage, why = next(iter(bad.items()))
            raise CorruptResultsError(path, stage, why, key=key)
    return f


def verify_file(f: h5py.File) -> dict[str, str | None]:
    """stage -> None (checksum matches) or what is wrong, for every stage group of the file, in pipeline order."""
    try:
        names = [name for name in STAGES if name in f]
    except Exception as exc:  # noqa: BLE001 - the root group itself is damaged
        return {"/": f"unreadable ({type(exc).__name__})"}
    return {name: verify_group(f, name) for name in names}


@contextmanager
def reading(path: str | Path, key: str = "result", stages=None) -> Iterator[h5py.File]:
    """``with reading(path) as f``: :func:`open_for_reading` (verified), and an HDF5 error while
    reading in the body (a file damaged where no checksum looks) is reported as corrupt, not as a traceback."""
    f = open_for_reading(path, key, stages=stages)
    try:
        yield f
    except (OSError, KeyError, RuntimeError) as exc:
        where = ",".join(stages) if stages else "?"
        raise CorruptResultsError(Path(path), where, f"unreadable ({type(exc).__name__}: {str(exc)[:80]})", key=key) from None
    finally:
        f.close()


class StageTimer:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.t0
