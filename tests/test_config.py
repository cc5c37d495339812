"""Input validation: every malformed input gives exit 2 and one line naming the key, never a traceback."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import tomllib

from hpc_itc import config
from hpc_itc.cli import main
from hpc_itc.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
# run inputs (sample_*, train_* and sweep_*.toml are inputs of other commands)
EXAMPLES = sorted(p for p in (ROOT / "inputs").glob("*.toml") if not p.name.startswith(("sample", "train", "sweep")))


def _run_validate(path, capsys):
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    return code, captured.err


def test_examples_are_valid(capsys):
    assert EXAMPLES, "no shipped inputs"
    for path in EXAMPLES:
        code, err = _run_validate(path, capsys)
        assert code == 0, (path, err)


def test_defaults_fill_every_key():
    cfg = config.validate({})
    for section, keys in config.SCHEMA.items():
        table = getattr(cfg, section)
        assert isinstance(table, config.SETTINGS_CLASSES[section])
        assert {f.name for f in dataclasses.fields(table)} == set(keys)
        for name, spec in keys.items():  # the default, as a tuple where the TOML has a list
            assert getattr(table, name) == (tuple(spec.default) if isinstance(spec.default, list) else spec.default), name
    assert cfg.relax.fmax_eV_A == 0.02
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.relax.fmax_eV_A = 1.0


def _mutations(value):
    """Wrong type, negative, zero, a missing path, a list of the wrong shape."""
    out = [{"nested": 1}, "not-a-number", -1, 0, -2.5, True, "/no/such/file.model", [], [1, 2, 3, 4], ["a"], 1e300, 0.0]
    if isinstance(value, list):
        out += [[-1] * len(value), [0] * len(value)]
    return out


def test_battery_of_malformed_inputs(tmp_path, capsys):
    """Every value of every shipped example replaced by bad values: exit 0 or one-line exit 2."""
    checked = 0
    for path in EXAMPLES:
        doc = tomllib.loads(path.read_text())
        for section, table in doc.items():
            for key, value in table.items():
                for bad in _mutations(value):
                    mutated = tomllib.loads(path.read_text())
                    mutated[section][key] = bad
                    target = tmp_path / "in.toml"
                    target.write_text(tomli_w.dumps(mutated))
                    code, err = _run_validate(target, capsys)
                    assert code in (0, 2), (section, key, bad, code, err)
                    if code == 2:
                        lines = err.strip().splitlines()
                        assert len(lines) == 1, (section, key, bad, err)
                        assert lines[0].startswith("error: "), err
                        assert "Traceback" not in err
                    checked += 1
    assert checked > 200


@pytest.mark.parametrize("text, key", [
    ("[structure\nn_cells_left = 3", "input"),
    ("[structure]\nn_cells_left = ", "input"),
    ("[structure]\nbogus = 1", "structure.bogus"),
    ("[nonsense]\nx = 1", "nonsense"),
    ("[structure]\nn_cells_left = -3", "structure.n_cells_left"),
    ("[structure]\nn_cells_left = 2.5", "structure.n_cells_left"),
    ("[structure]\nn_fraction = 1.5", "structure.n_fraction"),
    ("[structure]\nn_fraction = 0.5", "structure.n_fraction"),  # 1x1 cell: x must be 0 or 1
    ("[structure]\nleft_material = 'gold'", "structure.left_material"),
    ("[mlip]\nmodel = 'missing/file.model'", "mlip.model"),
    ("[mlip]\ndtype = 'float16'", "mlip.dtype"),
    ("[transport]\nq_mesh = [4, 4]", "transport.q_mesh"),
    ("[transport]\nq_mesh = [4, 0, 4]", "transport.q_mesh"),
    ("[transport]\ntemperatures_K = [300, -1]", "transport.temperatures_K"),
    ("[transport]\ndirections = ['up']", "transport.directions"),
    ("[relax]\nfmax_eV_A = 0", "relax.fmax_eV_A"),
    ("[run]\nstages = ['transport', 'structure']", "run.stages"),
    ("[run]\noutput = 'results.txt'", "run.output"),
    ("structure = 3", "structure"),
])
def test_specific_errors_name_the_key(tmp_path, capsys, text, key):
    target = tmp_path / "in.toml"
    target.write_text(text)
    code, err = _run_validate(target, capsys)
    assert code == 2
    assert err.startswith(f"error: {key}"), err
    assert len(err.strip().splitlines()) == 1


def test_missing_input_file(capsys, tmp_path):
    code, err = _run_validate(tmp_path / "nope.toml", capsys)
    assert code == 2 and err.startswith("error: input:")


def test_element_unknown_to_model_is_an_input_error(tmp_path, monkeypatch):
    from hpc_itc.core import mlip

    def fake_check(model, symbols, key="mlip.model"):
        raise InputError(key, "model lacks N; it knows C, Cu")

    monkeypatch.setattr(mlip, "check_elements", fake_check)
    target = tmp_path / "in.toml"
    target.write_text("[structure]\nn_fraction = 1.0\n")
    assert main(["validate", str(target)]) == 2


def test_subprocess_exit_status_and_no_traceback(tmp_path):
    target = tmp_path / "in.toml"
    target.write_text("[transport]\nq_mesh = 'dense'\n")
    proc = subprocess.run([sys.executable, "-m", "hpc_itc", str(target)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert lines == [lines[-1]] and lines[-1].startswith("error: transport.q_mesh"), proc.stderr
    assert not (tmp_path / "results.h5").exists()


def test_hash_ignores_run_settings_but_not_physics():
    a = config.validate({"run": {"log_level": "debug"}})
    b = config.validate({"run": {"log_level": "info"}})
    c = config.validate({"structure": {"n_cells_left": 7}})
    assert a.sha256() == b.sha256()
    assert a.sha256() != c.sha256()


def test_docs_page_is_current():
    page = (ROOT / "docs" / "input.md").read_text()
    assert page.strip() == config.schema_markdown().strip(), "regenerate: python -m hpc_itc schema > docs/input.md"


def test_validate_recognises_every_input_kind_the_program_takes(capsys):
    """Run, sweep and sampling inputs validate; a training input is read as one (its placeholder model path is named)."""
    from pathlib import Path

    from hpc_itc.cli import main

    inputs = Path(__file__).resolve().parents[1] / "inputs"
    for name, words in (("quick.toml", "valid hpc_itc input"), ("sweep_quick.toml", "valid sweep input (4 points"),
                        ("sample_quick.toml", "valid sampling input")):
        assert main(["validate", str(inputs / name)]) == 0
        assert words in capsys.readouterr().out
    assert main(["validate", str(inputs / "train_finetune.toml")]) == 2
    assert capsys.readouterr().err.startswith("error: train.foundation_model:")


def test_progress_of_an_upper_bound_has_no_eta():
    import logging

    from hpc_itc.log import Progress

    lines = []
    logger = logging.getLogger("progress_test")
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    progress = Progress(logger, "relax steps", 500, interval=0.0, upper_bound=True)
    progress.update()
    assert lines == [lines[0]] and lines[0].startswith("relax steps: 1 (at most 500)") and "eta" not in lines[0]


def test_progress_eta_follows_the_work_left(monkeypatch):
    """Tasks of unequal cost: the ETA is the work left over the rate seen after the first (set-up) task."""
    import logging

    from hpc_itc import log as logmod

    clock = [0.0]
    monkeypatch.setattr(logmod.time, "monotonic", lambda: clock[0])
    progress = logmod.Progress(logging.getLogger("eta_test"), "tasks", 4, interval=0.0, total_work=10.0)
    clock[0] = 10.0  # the first task (cost 1) pays 9 s of set-up
    progress.update(work=1.0)
    assert np.isnan(progress.eta_seconds(clock[0]))  # one task seen: mostly set-up, no rate yet
    clock[0] = 14.0  # the second (cost 4) takes 4 s: 1 unit/s
    progress.update(work=4.0)
    assert progress.eta_seconds(clock[0]) == pytest.approx(5.0)  # 5 units left at 1 unit/s (task count would say 14 s)
