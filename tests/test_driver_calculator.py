"""mlip.calculator end to end: any ASE calculator runs the stages the way MACE does."""

import json

import h5py
import numpy as np
import pytest
from small_input import SMALL

from hpc_itc.cli import main
from hpc_itc.core import mlip

STAGES = '[run]\nstages = ["structure", "relax", "force_constants"]'


def _input(folder, mlip_table: str, name: str = "in.toml") -> str:
    text = SMALL.format(out=name.replace(".toml", ".h5")).replace("[run]", STAGES).replace("[relax]", mlip_table + "\n[relax]")
    (folder / name).write_text(text)
    return str(folder / name)


@pytest.mark.parametrize("table, key, words", [
    ('[mlip]\ncalculator = "calculator_factories:emt"\nmodel = "other.model"', "mlip.model", "replaces the MACE model"),
    ('[mlip.calculator_args]\nscale = 1.0', "mlip.calculator_args", "only with mlip.calculator"),
    ('[mlip]\ncalculator = "emt"', "mlip.calculator", "package.module:factory"),
    ('[mlip]\ncalculator = "calculator_factories:broken"', "mlip.calculator_args", "licence server"),
    ('[mlip]\ncalculator = "no_such_pkg_q:make"', "mlip.calculator", "cannot import no_such_pkg_q"),
])
def test_calculator_errors_are_one_line_exit_2(tmp_path, capsys, table, key, words):
    assert main(["validate", _input(tmp_path, table)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {key}:") and words in err[0], err


def test_an_element_not_covered_is_refused_before_any_work(tmp_path, capsys):
    inp = _input(tmp_path, '[mlip]\ncalculator = "calculator_factories:no_nitrogen"').replace("in.toml", "in.toml")
    text = open(inp).read().replace("[structure]", "[structure]\nn_fraction = 1.0")
    open(inp, "w").write(text)
    assert main([inp]) == 2
    err = capsys.readouterr().err
    assert "error: mlip.calculator:" in err and "N-substituted diamond cell" in err
    assert not (tmp_path / "in.h5").exists()


def test_emt_runs_the_stages_and_is_in_the_stage_hashes(tmp_path):
    assert main([_input(tmp_path, '[mlip]\ncalculator = "ase.calculators.emt:EMT"')]) == 0
    with h5py.File(tmp_path / "in.h5") as f:
        inputs = json.loads(f["force_constants"].attrs["inputs"])
        assert inputs["mlip.calculator"] == "ase.calculators.emt:EMT" and inputs["mlip.calculator_package"].startswith("ase ")
        fc = f["force_constants/left_lead/force_constants"][()]
    assert np.isfinite(fc).all() and np.abs(fc).max() > 1.0


def test_the_shipped_mace_model_through_the_factory_gives_the_built_in_force_constants(tmp_path):
    builtin = tmp_path / "builtin"
    factory = tmp_path / "factory"
    builtin.mkdir()
    factory.mkdir()
    assert main([_input(builtin, "")]) == 0
    path = mlip.default_model_path()
    table = (f'[mlip]\ncalculator = "mace.calculators:MACECalculator"\n[mlip.calculator_args]\nmodel_paths = "{path}"')
    assert main([_input(factory, table)]) == 0
    with h5py.File(builtin / "in.h5") as a, h5py.File(factory / "in.h5") as b:
        for part in ("left_lead", "right_lead", "device"):
            fa, fb = a[f"force_constants/{part}/force_constants"][()], b[f"force_constants/{part}/force_constants"][()]
            assert fa.shape == fb.shape
            assert np.abs(fa - fb).max() <= 1e-10 * np.abs(fa).max()  # measured: identical (0.0)
        assert a["force_constants"].attrs["input_sha256"] != b["force_constants"].attrs["input_sha256"]
