"""evaluate: RMSEs per config_type against labels whose errors are known by construction."""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from hpc_itc.cli import main
from hpc_itc.core import mlip
from hpc_itc.tools.evaluate import evaluate


@pytest.fixture
def emt_model(monkeypatch):
    monkeypatch.setattr(mlip, "load_calculator", lambda *a, **k: EMT())
    monkeypatch.setattr(mlip, "check_elements", lambda *a, **k: None)


def _dataset(path, de_per_atom, df, ds):
    frames = []
    rng = np.random.default_rng(1)
    for kind, atoms in (("cu", bulk("Cu", "fcc", 3.6, cubic=True)), ("cu_big", bulk("Cu", "fcc", 3.6, cubic=True).repeat(2))):
        for _ in range(2):
            a = atoms.copy()
            a.rattle(0.05, seed=int(rng.integers(1000)))
            a.calc = EMT()
            e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress(voigt=False)
            a.calc = None
            a.info["config_type"] = kind
            a.info["REF_energy"] = e + de_per_atom * len(a)
            a.arrays["REF_forces"] = f + df
            a.info["REF_stress"] = (s + ds).ravel()
            frames.append(a)
    write(path, frames)


def test_known_errors(tmp_path, emt_model):
    _dataset(tmp_path / "d.extxyz", 0.002, 0.01, 0.0005)
    table, _ = evaluate("default", str(tmp_path / "d.extxyz"))
    assert set(table) == {"cu", "cu_big", "all"}
    for row in table.values():
        assert row["energy_meV_atom"] == pytest.approx(2.0, rel=1e-6)
        assert row["forces_meV_A"] == pytest.approx(10.0, rel=1e-6)
        assert row["stress_meV_A3"] == pytest.approx(0.5, rel=1e-6)
    assert table["all"]["n_configs"] == 4


def test_json_output_and_parity(tmp_path, emt_model, capsys):
    _dataset(tmp_path / "d.extxyz", 0.0, 0.0, 0.0)
    assert main(["evaluate", "default", str(tmp_path / "d.extxyz"), "--json", "--parity", str(tmp_path / "p.png")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["all"]["forces_meV_A"] == pytest.approx(0.0, abs=1e-4)  # extxyz keeps 8 decimals
    assert set(out["cu"]) >= {"energy_meV_atom", "forces_meV_A", "stress_meV_A3"}
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_missing_data_is_one_line_error(tmp_path, capsys):
    assert main(["evaluate", "default", str(tmp_path / "none.extxyz")]) == 2
    assert capsys.readouterr().err.startswith("error: DATA:")
