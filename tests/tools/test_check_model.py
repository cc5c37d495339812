"""check-model: lattice constants and phonons of bulk Cu and diamond from the default model."""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.eos import EquationOfState

from hpc_itc.cli import main
from hpc_itc.core import mlip


@pytest.fixture(scope="module")
def report():
    from hpc_itc.tools.check_model import check

    summary, _ = check("default")
    return summary


def test_json_layout(report):
    assert set(report) == {"cu", "diamond"}
    assert len(report["cu"]["X"]) == 3 and len(report["cu"]["L"]) == 3
    for p in ("Gamma", "X", "L"):
        assert len(report["diamond"][p]) == 6
        assert report["diamond"][p] == sorted(report["diamond"][p])


def test_known_symmetry_answers(report):
    d = report["diamond"]
    assert np.allclose(d["Gamma"][:3], 0, atol=1e-3)  # acoustic modes at Gamma
    assert np.allclose(d["Gamma"][3:], d["Gamma"][3], rtol=1e-6)  # triply degenerate optical mode
    x = np.array(d["X"])
    assert np.allclose(x[0::2], x[1::2], rtol=1e-4)  # all modes at X come in degenerate pairs
    cu = report["cu"]
    assert cu["X"][0] == pytest.approx(cu["X"][1], rel=1e-4) and cu["X"][2] > cu["X"][1]


def test_lattice_constant_agrees_with_equation_of_state(report):
    """Independent check: E(V) fit of the same model against the cell relaxation."""
    calc = mlip.load_calculator("default")
    volumes, energies = [], []
    for a in np.linspace(0.98, 1.02, 7) * report["cu"]["a_A"]:
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.calc = calc
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    v0, _, _ = EquationOfState(volumes, energies).fit()
    assert np.cbrt(v0) == pytest.approx(report["cu"]["a_A"], rel=1e-3)


def test_cli_json(capsys, tmp_path, report, monkeypatch):
    from hpc_itc.tools import check_model

    monkeypatch.setattr(check_model, "check", lambda *a, **k: (report, {}))
    assert main(["check-model", "default", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["diamond"]["a_A"] == pytest.approx(report["diamond"]["a_A"])
