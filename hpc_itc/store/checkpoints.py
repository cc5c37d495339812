"""Task checkpoints of a stage: one ``.npz`` per finished task that can prove whose it is.

Layout: ``<output>.ckpt/<stage>/<part>/task_<id>.npz``, written by rename (a killed writer leaves
a ``.task_*.tmp.npz`` that is never read and is removed at the next start).  Besides the task's
arrays every file holds ``_identity``, a JSON record of

* ``format``: :data:`FORMAT`, the layout version of this code;
* ``stage``, ``stage_sha256``: the stage and the hash of the inputs it depends on
  (:meth:`hpc_itc.config.RunConfig.stage_sha256`, model file included);
* ``part``, ``task_id``, ``definition_sha256``: which task, and the hash of its definition (the
  displacement, the k_par columns, ...: what the stage would compute for it now);
* ``content_sha256``: the hash of the arrays (names, dtypes, shapes, bytes).

On resume (:meth:`StageCheckpoints.verified`) a file is reused only when all of these match this run;
any other file (another input's, another task's, an older format, truncated, empty, random bytes)
is removed and its task recomputed, and the stage logs how many and why.  :meth:`StageCheckpoints.load`
checks the content hash again when the stage sums up.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hpc_itc.store.h5 import fsync
from hpc_itc.store.rows import CheckpointRows

FORMAT = 2
IDENTITY = "_identity"


class CorruptCheckpoint(RuntimeError):
    """A checkpoint changed after it was verified (read back with another content hash)."""


def definition_sha256(definition: Any) -> str:
    """Hash of a task definition (JSON-able: numbers, strings, lists, dicts; floats rounded by the caller)."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class StageCheckpoints:
    """The checkpoints of one stage of one run (``folder`` = ``<output>.ckpt/<stage>``)."""

    folder: Path
    stage: str
    stage_sha256: str

    def path(self, part: str, task_id: int) -> Path:
        return self.folder / part / f"task_{task_id:08d}.npz"

    def save(self, part: str, task_id: int, definition: Any, **arrays: Any) -> None:
        """Checkpoint one finished task (any rank; written by rename, so a reader never sees half a file)."""
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        identity = {"format": FORMAT, "stage": self.stage, "stage_sha256": self.stage_sha256, "part": part, "task_id": int(task_id),
                    "definition_sha256": definition_sha256(definition), "content_sha256": content_sha256(arrays)}
        final = self.path(part, task_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.stem}.{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, **arrays, **{IDENTITY: np.array(json.dumps(identity, sort_keys=True))})
            fsync(tmp)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _check(self, path: Path, part: str, task_id: int, definition: Any) -> tuple[str | None, dict | None]:
        """(why it cannot be used or None, its arrays)."""
        try:
            arrays, ident = _read(path)
        except (OSError, ValueError, EOFError, TypeError, KeyError, zipfile.BadZipFile):
            return "unreadable (truncated, empty or not a checkpoint)", None
        if ident is None:
            return "without identity (written by an older hpc_itc)", None
        if not isinstance(ident, dict) or ident.get("format") != FORMAT:
            return f"of another checkpoint format ({ident.get('format') if isinstance(ident, dict) else '?'}, this code {FORMAT})", None
        if ident.get("stage") != self.stage or ident.get("stage_sha256") != self.stage_sha256:
            return "from another input (stage input hash differs)", None
        if ident.get("part") != part or ident.get("task_id") != task_id or ident.get("definition_sha256") != definition_sha256(definition):
            return "of another task", None
        if ident.get("content_sha256") != content_sha256(arrays):
            return "corrupt (content hash differs)", None
        return None, arrays

    def verified(self, expected: dict[str, dict[int, Any]], log: Callable[[str], None] | None = None) -> dict[str, set[int]]:
        """Task ids per part whose checkpoint is this run's; every other file in the stage folder is removed.

        ``expected``: part -> {task_id: definition} of every task the stage plans now.  Returns the reusable
        ids; ``log`` gets one line with how many files were rejected and why (nothing when none were).
        """
        done: dict[str, set[int]] = {part: set() for part in expected}
        rejected: Counter[str] = Counter()
        if not self.folder.is_dir():
            return done
        for path in sorted(self.folder.rglob("*")):
            if path.is_dir():
                continue
            part = path.parent.relative_to(self.folder).as_posix()
            task_id = _task_id(path)
            if task_id is None:
                if path.name.startswith(".task_") and path.name.endswith(".tmp.npz"):
                    rejected["left half-written by a killed run"] += 1
                else:
                    rejected["not a checkpoint name"] += 1
                path.unlink(missing_ok=True)
                continue
            if part not in expected or task_id not in expected[part]:
                why = "of a task this run does not have"
            else:
                why, _ = self._check(path, part, task_id, expected[part][task_id])
            if why is None:
                done[part].add(task_id)
            else:
                rejected[why] += 1
                path.unlink(missing_ok=True)
        for sub in sorted((p for p in self.folder.rglob("*") if p.is_dir()), reverse=True):
            if not any(sub.iterdir()):
                sub.rmdir()
        if rejected and log is not None:
            log(f"{self.stage}: {sum(rejected.values())} checkpoint file(s) not reused and recomputed: "
                + ", ".join(f"{n} {why}" for why, n in sorted(rejected.items())))
        return done

    def load(self, part: str, task_id: int) -> dict[str, np.ndarray]:
        """The arrays of a verified checkpoint (its content hash is checked again)."""
        path = self.path(part, task_id)
        try:
            arrays, ident = _read(path)
        except (OSError, ValueError, EOFError, TypeError, KeyError, zipfile.BadZipFile) as exc:
            raise CorruptCheckpoint(f"checkpoint {path} became unreadable during the run ({type(exc).__name__}); rerun to recompute it") from None
        if not isinstance(ident, dict) or ident.get("content_sha256") != content_sha256(arrays):
            raise CorruptCheckpoint(f"checkpoint {path} changed during the run (content hash differs); rerun to recompute it")
        return arrays

    def rows(self, part: str, task_id: int, key: str, one_row: bool = False,
             transform: Callable[[np.ndarray], np.ndarray] | None = None) -> CheckpointRows:
        """Rows of a per-row table from one checkpoint (see :func:`hpc_itc.store.rows.write_rows`)."""
        return CheckpointRows(str(self.path(part, task_id)), key, one_row, transform)

    def clear(self) -> None:
        if self.folder.is_dir():
            shutil.rmtree(self.folder, ignore_errors=True)


def _read(path: Path) -> tuple[dict[str, np.ndarray], Any]:
    """(the task's arrays, its parsed identity or None when the file has none); raises what np.load and json raise."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    raw = arrays.pop(IDENTITY, None)
    return arrays, (None if raw is None else json.loads(str(raw)))


def _task_id(path: Path) -> int | None:
    name = path.name
    if not (name.startswith("task_") and name.endswith(".npz")):
        return None
    try:
        return int(name[5:-4])
    except ValueError:
        return None
