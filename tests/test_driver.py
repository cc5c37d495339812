"""End to end on the shipped default model: the driver, resume, refusal, inspect contract."""

import json
import subprocess
import sys

from small_input import SMALL

from hpc_itc.cli import main
from hpc_itc.tools.summary import summary

SPEC_KEYS = {"input_sha256", "stages_complete", "n_atoms_device", "n_force_evaluations", "itc_MW_m2K",
             "rectification_percent", "max_abs_T_plus_R_minus_1", "radiation_limit_MW_m2K", "wall_seconds",
             "overlap_factor_per_THz", "interface"}


def test_full_run_has_contract_keys(finished_run):
    _, out = finished_run
    s = summary(out)
    assert SPEC_KEYS <= set(s)
    assert s["stages_complete"] == ["structure", "relax", "force_constants", "transport", "ldos"]
    assert 0 < s["overlap_factor_per_THz"] < 1
    assert s["max_abs_T_plus_R_minus_1"] < 1e-8
    for direction in ("left_to_right", "right_to_left"):
        h = s["itc_MW_m2K"][direction]["300.0"]
        assert h >= 0
    # conductance below each lead's radiation limit
    assert s["itc_MW_m2K"]["left_to_right"]["300.0"] <= s["radiation_limit_MW_m2K"]["left_lead"]["300.0"]
    assert s["itc_MW_m2K"]["right_to_left"]["300.0"] <= s["radiation_limit_MW_m2K"]["right_lead"]["300.0"]
    assert s["n_atoms_device"] == 3 * 1 + 3 * 2
    # the default interface is the bonded one, and the run says so
    it = s["interface"]
    assert {"gap_A", "nearest_A", "coordination", "adhesion_J_m2", "stiffness_eV_A4", "warnings"} <= set(it)
    assert it["coordination"]["Cu-C"] == 2 and 1.8 < it["nearest_A"]["Cu-C"] < 2.2
    assert it["adhesion_J_m2"] < 0 and min(it["stiffness_eV_A4"].values()) > 0 and it["lowest_gamma_frequency_THz"] > 0
    assert it["warnings"] == []


def test_inspect_json_cli(finished_run):
    _, out = finished_run
    proc = subprocess.run([sys.executable, "-m", "hpc_itc", "inspect", str(out), "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert SPEC_KEYS <= set(json.loads(proc.stdout))


def test_rerun_skips_finished_stages(finished_run, monkeypatch):
    path, out = finished_run
    from hpc_itc.core import mlip

    def no_model(*args, **kwargs):
        raise AssertionError("a finished run must not evaluate the model again")

    monkeypatch.setattr(mlip, "load_calculator", no_model)
    before = out.read_bytes()
    assert main([str(path)]) == 0
    assert out.read_bytes() == before


def test_different_input_refused_file_untouched(finished_run, capsys):
    path, out = finished_run
    other = path.with_name("other.toml")
    other.write_text(SMALL.format(out="small.h5").replace("n_cells_left = 3", "n_cells_left = 4"))
    before = out.read_bytes()
    assert main([str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: run.output:")
    assert out.read_bytes() == before


def test_interrupted_force_constants_resume_without_recomputing(tmp_path, monkeypatch, finished_run):
    """A run that dies mid-stage keeps its finished displacements; the rerun computes only the rest."""
    from hpc_itc.core import mlip

    real = mlip.load_calculator
    calls = {"n": 0, "fail_after": None}

    def counting_loader(*args, **kwargs):
        calc = real(*args, **kwargs)  # cached per process: wrap it once only
        if getattr(calc, "_counting", False):
            return calc
        calc._counting = True
        original = calc.calculate

        def calculate(atoms=None, properties=("energy",), system_changes=None):
            calls["n"] += 1
            if calls["fail_after"] is not None and calls["n"] > calls["fail_after"]:
                raise KeyboardInterrupt  # stands in for a kill
            return original(atoms, properties, system_changes) if system_changes is not None else original(atoms, properties)

        calc.calculate = calculate
        return calc

    monkeypatch.setattr(mlip, "load_calculator", counting_loader)
    reference = summary(finished_run[1])["n_force_evaluations"]  # the uninterrupted run, same force-constant settings
    path = tmp_path / "in.toml"
    path.write_text(SMALL.format(out="r.h5").replace("[run]", '[run]\nstages = ["structure", "relax"]'))
    assert main([str(path)]) == 0
    path.write_text(path.read_text().replace('stages = ["structure", "relax"]', 'stages = ["structure", "relax", "force_constants"]'))
    calls["n"], calls["fail_after"] = 0, 7
    assert main([str(path)]) == 130  # interrupted in the middle of the force-constant stage
    done = len(list((tmp_path / "r.h5.ckpt" / "force_constants").rglob("task_*.npz")))
    assert done == 7
    calls["n"], calls["fail_after"] = 0, None
    assert main([str(path)]) == 0
    assert calls["n"] == reference - done  # nothing computed twice
    assert summary(tmp_path / "r.h5")["n_force_evaluations"] == reference
    assert not (tmp_path / "r.h5.ckpt").exists()


def test_inspect_unfinished_run_says_what_is_missing(tmp_path, capsys):
    path = tmp_path / "in.toml"
    path.write_text(SMALL.format(out="part.h5").replace("[run]", '[run]\nstages = ["structure"]'))
    assert main([str(path)]) == 0
    from hpc_itc.store.file import ResultsFile

    ResultsFile(tmp_path / "part.h5").checkpoints("force_constants").save("device", 0, {}, forces=[[0.0, 0.0, 0.0]])
    s = summary(tmp_path / "part.h5")
    assert s["stages_complete"] == ["structure"]
    assert s["stages_missing"] == []  # the input asked for structure only
    assert s["checkpointed_tasks"] == {"force_constants/device": 1}
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "part.h5")]) == 0
    text = capsys.readouterr().out
    assert "stages complete: structure" in text and "force_constants/device 1 tasks" in text
