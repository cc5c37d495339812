"""``python -m hpc_itc cohp-inputs RESULT.h5 OUTDIR`` (hpc_itc.tools.cohp_inputs)."""

from __future__ import annotations

import json

import pytest

from hpc_itc.config import validate
from hpc_itc.core import structure as st
from hpc_itc.errors import InputError
from hpc_itc.tools import cohp_inputs


def _heterostructure(n_fraction=0.0):
    cfg = validate({"structure": {"n_cells_left": 6, "n_cells_right": 6, "buffer_cells": 4, "n_fraction": n_fraction}})
    spec = st.InterfaceSpec.from_config(cfg.structure)
    lc, rc, strain = st.lead_cells(spec, cfg.lattice_constant("left"), cfg.lattice_constant("right"))
    return st.build(spec, lc, rc), strain


def test_inputs_from_results_file(tmp_path, capsys):
    from hpc_itc.store.file import ResultsFile
    from hpc_itc.store.structure import write_heterostructure

    het, strain = _heterostructure(1.0)
    rf = ResultsFile(tmp_path / "r.h5")
    rf.check_or_create("0" * 64, "")
    with pytest.raises(InputError) as info:
        cohp_inputs.cohp_inputs_from_results(rf.path, tmp_path / "x")
    assert info.value.key == "result" and "relax" in info.value.message
    rf.write_stage("relax", lambda g: write_heterostructure(g, het, strain), 1.0)
    assert cohp_inputs.cohp_inputs_main(str(rf.path), str(tmp_path / "lob"), 25.0) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "POTCAR" in line
    prov = json.loads((tmp_path / "lob" / "slab_provenance.json").read_text())
    assert prov["source"]["results_file"] == str(rf.path.resolve()) and prov["source"]["input_sha256"] == "0" * 64
    assert abs(prov["thickness_A"] - 25.0) <= het.left_lead.layer_step_A
    with pytest.raises(InputError):
        cohp_inputs.cohp_inputs_from_results(tmp_path / "missing.h5", tmp_path / "y")


