"""Task checkpoints prove whose they are: input hash, task definition, format, content hash."""

import json
import shutil

import numpy as np
import pytest

from hpc_itc.store.checkpoints import FORMAT, CorruptCheckpoint, StageCheckpoints


def _stage(tmp_path, sha="s" * 64):
    return StageCheckpoints(tmp_path / "out.h5.ckpt" / "transport", "transport", sha)


EXPECTED = {"mesh-a": {k: {"columns": [[k, 0]]} for k in range(4)}}


def _fill(ck):
    for k in range(4):
        ck.save("mesh-a", k, EXPECTED["mesh-a"][k], omega=np.arange(5.0) + k, code=np.int8(k))


def test_own_checkpoints_are_reused(tmp_path):
    ck = _stage(tmp_path)
    _fill(ck)
    lines = []
    assert ck.verified(EXPECTED, lines.append) == {"mesh-a": {0, 1, 2, 3}}
    assert lines == []
    assert np.array_equal(ck.load("mesh-a", 2)["omega"], np.arange(5.0) + 2)
    assert "_identity" not in ck.load("mesh-a", 2)


@pytest.mark.parametrize("damage, why", [
    ("truncate", "unreadable"), ("empty", "unreadable"), ("random", "unreadable"),
    ("other_task", "of another task"), ("other_input", "from another input"), ("old_format", "without identity"),
    ("content", "corrupt (content hash differs)"), ("stray_tmp", "half-written"),
])
def test_a_checkpoint_that_is_not_this_runs_is_recomputed(tmp_path, damage, why):
    ck = _stage(tmp_path)
    _fill(ck)
    target = ck.path("mesh-a", 1)
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "empty":
        target.write_bytes(b"")
    elif damage == "random":
        target.write_bytes(np.random.default_rng(0).bytes(2000))
    elif damage == "other_task":  # another task's file copied over this one
        shutil.copyfile(ck.path("mesh-a", 3), target)
    elif damage == "other_input":  # same task, written by a run of another input (e.g. n_fraction 0 vs 1)
        _stage(tmp_path, sha="t" * 64).save("mesh-a", 1, EXPECTED["mesh-a"][1], omega=np.zeros(5), code=np.int8(1))
    elif damage == "old_format":
        np.savez(target, omega=np.zeros(5))
    elif damage == "content":
        with np.load(target) as d:
            arrays = {k: d[k] for k in d.files}
        arrays["omega"] = arrays["omega"] + 1e-15  # identity kept, data changed
        np.savez(target, **arrays)
    elif damage == "stray_tmp":
        (target.parent / ".task_00000009.123.tmp.npz").write_bytes(b"half")
    lines = []
    done = ck.verified(EXPECTED, lines.append)
    if damage == "stray_tmp":
        assert done == {"mesh-a": {0, 1, 2, 3}}
    else:
        assert done == {"mesh-a": {0, 2, 3}} and not target.exists()
    assert len(lines) == 1 and why in lines[0] and "1 checkpoint file(s)" in lines[0]


def test_a_changed_task_definition_is_not_reused(tmp_path):
    ck = _stage(tmp_path)
    _fill(ck)
    changed = {"mesh-a": {**EXPECTED["mesh-a"], 2: {"columns": [[2, 1]]}}}  # e.g. another block size or symmetry
    assert ck.verified(changed) == {"mesh-a": {0, 1, 3}}


def test_load_notices_a_file_changed_after_verification(tmp_path):
    ck = _stage(tmp_path)
    _fill(ck)
    ck.verified(EXPECTED)
    target = ck.path("mesh-a", 0)
    with np.load(target) as d:
        arrays = {k: d[k] for k in d.files}
    assert json.loads(str(arrays["_identity"]))["format"] == FORMAT
    arrays["omega"][0] = 7.0
    np.savez(target, **arrays)
    with pytest.raises(CorruptCheckpoint):
        ck.load("mesh-a", 0)
