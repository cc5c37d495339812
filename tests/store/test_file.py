"""The results file: identity by input hash, atomic stage writes, checkpoints."""

import h5py
import numpy as np
import pytest

from hpc_itc.errors import InputError, ResultsMismatchError
from hpc_itc.store.file import CorruptResultsError, ResultsFile
from hpc_itc.store.h5 import write_array

INPUTS_A = {"structure": {"structure.n_fraction": 0.0}, "relax": {"structure.n_fraction": 0.0, "relax.fmax_eV_A": 0.02},
            "transport": {"structure.n_fraction": 0.0, "relax.fmax_eV_A": 0.02, "transport.q_mesh": [8, 8, 8]}}


def _with_inputs(path, inputs):
    return ResultsFile(path, stage_inputs={k: dict(v) for k, v in inputs.items()})


def test_finished_stage_of_other_inputs_is_refused_naming_the_keys(tmp_path):
    rf = _with_inputs(tmp_path / "r.h5", INPUTS_A)
    rf.check_or_create("a" * 64, "x = 1")
    rf.check_or_create("a" * 64, "x = 1")  # same input: fine
    rf.write_stage("structure", lambda g: write_array(g, "x", np.arange(3)), 1.0)
    rf.write_stage("relax", lambda g: write_array(g, "x", np.arange(3)), 1.0)
    before = (tmp_path / "r.h5").read_bytes()
    changed = {**INPUTS_A, "relax": {**INPUTS_A["relax"], "relax.fmax_eV_A": 0.01}}
    with pytest.raises(ResultsMismatchError) as err:
        _with_inputs(tmp_path / "r.h5", changed).check_or_create("b" * 64, "x = 2")
    assert err.value.key == "run.output"
    assert "stage relax" in err.value.message and "relax.fmax_eV_A (file 0.02, input 0.01)" in err.value.message
    assert "n_fraction" not in err.value.message
    assert (tmp_path / "r.h5").read_bytes() == before


def test_a_later_stages_key_leaves_finished_stages_usable(tmp_path):
    rf = _with_inputs(tmp_path / "r.h5", INPUTS_A)
    rf.check_or_create("a" * 64, "x = 1")
    rf.write_stage("structure", lambda g: write_array(g, "x", np.arange(3)), 1.0)
    rf.write_stage("relax", lambda g: write_array(g, "x", np.arange(3)), 1.0)
    later = {**INPUTS_A, "transport": {**INPUTS_A["transport"], "transport.q_mesh": [10, 10, 10]}}
    notes = _with_inputs(tmp_path / "r.h5", later).check_or_create("c" * 64, "x = 3")
    assert any("finished stages structure, relax are kept" in n for n in notes)
    with h5py.File(tmp_path / "r.h5") as f:
        assert f.attrs["input_sha256"] == "c" * 64 and f.attrs["input_toml"] == "x = 3"
        assert f["relax"].attrs["inputs"] == '{"relax.fmax_eV_A": 0.02, "structure.n_fraction": 0.0}'


def test_checksum_finds_a_changed_value_and_names_the_stage(tmp_path):
    rf = _with_inputs(tmp_path / "r.h5", INPUTS_A)
    rf.check_or_create("a" * 64, "")
    rf.write_stage("relax", lambda g: write_array(g, "energy", np.linspace(0, 1, 1000), "eV"), 1.0)
    with rf.verified("relax") as f:
        assert f["relax/energy"][3] == pytest.approx(3 / 999)
    with h5py.File(tmp_path / "r.h5", "a") as f:  # one value changed behind hpc_itc's back
        f["relax/energy"][500] += 1e-12
    with pytest.raises(CorruptResultsError) as err:
        with rf.verified("relax"):
            pass
    assert "stage relax fails its checksum" in err.value.message


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


def test_checkpoints_are_cleared_with_the_stage_and_orphans_on_restart(tmp_path):
    rf = ResultsFile(tmp_path / "r.h5")
    rf.check_or_create("a" * 64, "")
    ck = rf.checkpoints("force_constants")
    ck.save("device", 3, {"atom": 3}, forces=np.ones((2, 3)))
    assert ck.verified({"device": {3: {"atom": 3}}}) == {"device": {3}}
    assert np.array_equal(ck.load("device", 3)["forces"], np.ones((2, 3)))
    rf.write_stage("force_constants", lambda g: None, 0.0)
    assert not rf.checkpoint_dir("force_constants").exists()
    # a SIGKILL while the folder was being removed leaves files no later run would look at
    ck.save("device", 4, {"atom": 4}, forces=np.ones((2, 3)))
    notes = rf.check_or_create("a" * 64, "")
    assert not rf.checkpoint_dir("force_constants").exists() and any("leftover checkpoints" in n for n in notes)


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


def test_a_key_newer_than_the_file_at_its_default_keeps_the_stage(tmp_path):
    """A stage written before a key existed is reused while the key has its default value, refused otherwise."""
    old = {"relax": {"structure.n_fraction": 0.0}}
    rf = _with_inputs(tmp_path / "r.h5", old)
    rf.check_or_create("a" * 64, "")
    rf.write_stage("relax", lambda g: write_array(g, "x", np.arange(3)), 1.0)
    newer = {"relax": {"structure.n_fraction": 0.0, "relax.rattle_A": 0.0}}  # rattle_A: default 0.0
    _with_inputs(tmp_path / "r.h5", newer).check_or_create("b" * 64, "")
    with pytest.raises(ResultsMismatchError) as err:
        _with_inputs(tmp_path / "r.h5", {"relax": {**newer["relax"], "relax.rattle_A": 0.05}}).check_or_create("c" * 64, "")
    assert "relax.rattle_A (file 0.0, input 0.05)" in err.value.message


def test_a_file_from_before_stage_hashes_resumes_and_names_a_changed_key(tmp_path):
    """Files of earlier versions hold only the whole input's hash: recomputed from their own input_toml (with
    the model fingerprint) it proves their inputs, so a schema that gained keys still reuses their stages."""
    from hpc_itc import config

    model = {"model_sha256": "m" * 64}
    old = config.validate({"structure": {"n_cells_left": 3}}, base_dir=tmp_path)
    legacy_doc = {s: {k: v for k, v in t.items() if k not in ("calculator", "calculator_args", "allow_large")} for s, t in old.document.items()}
    import tomli_w

    rf = ResultsFile(tmp_path / "r.h5")  # no stage_inputs: groups get no stage hash, as in older files
    rf.check_or_create(config.whole_input_sha256(legacy_doc, model), tomli_w.dumps(legacy_doc))
    rf.write_stage("structure", lambda g: write_array(g, "x", np.arange(3)), 1.0)
    rf.write_stage("relax", lambda g: write_array(g, "x", np.arange(3)), 1.0)
    with h5py.File(tmp_path / "r.h5", "a") as f:  # an older writer left no checksum either
        for stage in ("structure", "relax"):
            del f[stage].attrs["content_sha256"]
    same = {stage: old.stage_inputs(stage, model) for stage in config.STAGES}
    notes = ResultsFile(tmp_path / "r.h5", same).check_or_create(old.sha256(model), old.to_toml())
    assert any("are kept" in n for n in notes)
    changed = config.validate({"structure": {"n_cells_left": 3}, "relax": {"fmax_eV_A": 0.01}}, base_dir=tmp_path)
    with pytest.raises(ResultsMismatchError) as err:
        ResultsFile(tmp_path / "r.h5", {s: changed.stage_inputs(s, model) for s in config.STAGES}).check_or_create(changed.sha256(model), "")
    assert "stage relax" in err.value.message and "relax.fmax_eV_A (file 0.02, input 0.01)" in err.value.message
    other_model = {s: old.stage_inputs(s, {"model_sha256": "n" * 64}) for s in config.STAGES}
    with pytest.raises(ResultsMismatchError) as err:
        ResultsFile(tmp_path / "r.h5", other_model).check_or_create(old.sha256({"model_sha256": "n" * 64}), "")
    assert "stage relax" in err.value.message and "the model file" in err.value.message
