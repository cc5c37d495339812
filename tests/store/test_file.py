"""The results file: identity by input hash, atomic stage writes, checkpoints."""

import h5py
import numpy as np
import pytest

from hpc_itc.errors import InputError, ResultsMismatchError
from hpc_itc.store.file import ResultsFile
from hpc_itc.store.h5 import write_array


def test_create_refuse_and_accept(tmp_path):
    rf = ResultsFile(tmp_path / "r.h5")
    rf.check_or_create("a" * 64, "x = 1")
    rf.check_or_create("a" * 64, "x = 1")  # same input: fine
    before = (tmp_path / "r.h5").read_bytes()
    with pytest.raises(ResultsMismatchError) as err:
        rf.check_or_create("b" * 64, "x = 2")
    assert err.value.key == "run.output"
    assert (tmp_path / "r.h5").read_bytes() == before


def test_not_hdf5_is_an_input_error(tmp_path):
    (tmp_path / "r.h5").write_text("not hdf5")
    with pytest.raises(InputError):
        ResultsFile(tmp_path / "r.h5").check_or_create("a" * 64, "")


def test_failed_stage_write_leaves_file_intact(tmp_path):
    rf = ResultsFile(tmp_path / "r.h5")
    rf.check_or_create("a" * 64, "")
    rf.write_stage("structure", lambda g: write_array(g, "x", np.arange(3), "Å"), 1.0)
    before = (tmp_path / "r.h5").read_bytes()

    def broken(group):
        write_array(group, "y", np.arange(5))
        raise RuntimeError("crash in the middle of a stage write")

    with pytest.raises(RuntimeError):
        rf.write_stage("relax", broken, 1.0)
    assert (tmp_path / "r.h5").read_bytes() == before
    assert rf.stages_complete() == ["structure"]
    with h5py.File(tmp_path / "r.h5") as f:
        assert f["structure/x"].attrs["unit"] == "Å"


def test_checkpoints_round_trip_and_clear(tmp_path):
    rf = ResultsFile(tmp_path / "r.h5")
    rf.check_or_create("a" * 64, "")
    rf.save_task("force_constants", "device", 3, forces=np.ones((2, 3)))
    rf.save_task("force_constants", "device", 7, forces=np.zeros((2, 3)))
    assert rf.finished_tasks("force_constants", "device") == {3, 7}
    assert np.array_equal(rf.load_task("force_constants", "device", 3)["forces"], np.ones((2, 3)))
    rf.write_stage("force_constants", lambda g: None, 0.0)
    assert rf.finished_tasks("force_constants", "device") == set()


def test_copies_left_by_a_killed_write_are_removed_on_restart(tmp_path):
    rf = ResultsFile(tmp_path / "r.h5")
    rf.check_or_create("a" * 64, "")
    stale = tmp_path / ".r.h5.tmp12345"  # what a SIGKILL between copy and rename leaves
    stale.write_bytes(b"partial")
    other = tmp_path / ".other.h5.tmp12345"
    other.write_bytes(b"another file's copy")
    rf.check_or_create("a" * 64, "")
    assert not stale.exists() and other.exists()
    assert rf.stages_complete() == []
