"""Parameter sweeps (hpc_itc.tools.sweep): expansion, validation, one point per array task, collection."""

import csv
import json

import pytest

from hpc_itc.cli import main as cli_main
from hpc_itc.errors import InputError
from hpc_itc.tools import sweep

# a tiny run (about 7 s on 2 cores): 2+2 device cells, no bulk relaxation, coarse mesh, no LDOS
TINY = """
[run]
output = "res/tiny.h5"
stages = ["structure", "relax", "force_constants", "transport"]

[structure]
n_cells_left = 2
n_cells_right = 2
buffer_cells = 1

[relax]
fmax_eV_A = 0.5
max_steps = 5
lattice = "input"

[force_constants]
cutoff_A = 2.6

[transport]
q_mesh = [2, 2, 2]
temperatures_K = [300.0]
block_size = 2
path_points = 0
caroli_samples = 0
"""


def _write(tmp_path, table: str, base: str = TINY):
    path = tmp_path / "sweep.toml"
    path.write_text(table + "\n" + base)
    return path


def test_expand_product_and_zip(tmp_path):
    table = '[sweep]\n"structure.n_fraction" = [0.0, 1.0]\n"transport.q_mesh" = [[2, 2, 2], [3, 3, 3]]\n"transport.temperatures_K" = [[300.0], [100.0, 500.0]]\n'
    points = sweep.expand(_write(tmp_path, table))
    assert len(points) == 8
    assert points[0] == (0, {"structure.n_fraction": 0.0, "transport.q_mesh": [2, 2, 2], "transport.temperatures_K": [300.0]})
    assert points[1][1]["transport.temperatures_K"] == [100.0, 500.0]  # last key fastest
    assert points[7][1]["structure.n_fraction"] == 1.0
    zipped = sweep.expand(_write(tmp_path, table.replace("[sweep]", '[sweep]\nmode = "zip"')))
    assert [o["transport.q_mesh"] for _, o in zipped] == [[2, 2, 2], [3, 3, 3]]
    assert [i for i, _ in zipped] == [0, 1]
    s = sweep.load(_write(tmp_path, table))
    assert s.folder == (tmp_path / "res" / "tiny").resolve()
    assert s.point_output(3).name == "point_003.h5"


@pytest.mark.parametrize("table, key", [
    ('"structure.n_cels" = [1, 2]', "structure.n_cels"),
    ('"nosuch.key" = [1, 2]', "nosuch.key"),
    ('"run.output" = ["a.h5", "b.h5"]', "run.output"),
    ('"structure.n_fraction" = [0.0, 2.0]', "structure.n_fraction"),  # out of range
    ('"structure.n_fraction" = [0.5]', "structure.n_fraction"),  # cross-check: 1x1 in-plane allows 0 or 1
    ('"transport.q_mesh" = [[2, 2]]', "transport.q_mesh"),  # wrong length
    ('"transport.temperatures_K" = [300.0, 500.0]', "transport.temperatures_K"),  # scalars for a list key
    ('"structure.n_fraction" = 1.0', "structure.n_fraction"),  # not a list of values
    ('mode = "diagonal"\n"structure.n_fraction" = [0.0]', "sweep.mode"),
    ('mode = "zip"\n"structure.n_fraction" = [0.0, 1.0]\n"transport.q_mesh" = [[2, 2, 2]]', "sweep.mode"),
])
def test_bad_sweep_names_the_key(tmp_path, capsys, table, key):
    path = _write(tmp_path, "[sweep]\n" + table + "\n")
    with pytest.raises(InputError) as err:
        sweep.load(path)
    assert err.value.key == key
    assert cli_main(["sweep-size", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}: ")
    assert not (tmp_path / "res").exists()


def test_point_collect_and_array_index(tmp_path, monkeypatch, capsys):
    path = _write(tmp_path, '[sweep]\n"structure.interface_spacing_A" = [1.8, 2.0]\n')
    assert cli_main(["sweep-size", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "2"
    s = sweep.load(path)

    # point 1 from the Slurm array index; point 0 only gets its input written (an unfinished task)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert cli_main(["sweep-point", str(path)]) == 0
    assert s.point_output(1).is_file() and not s.point_output(0).exists()
    point_toml = s.point_input(1).read_text()
    assert "interface_spacing_A = 2.0" in point_toml and 'output = "point_001.h5"' in point_toml
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    assert cli_main(["sweep-point", str(path), "2"]) == 2  # out of range
    assert "error: index: " in capsys.readouterr().err
    assert cli_main(["sweep-point", str(path)]) == 2  # no index, no array task
    # point 0: a task that stopped after the structure stage (run.stages is not hashed: a rerun resumes)

    p0_toml = sweep.write_point_input(s, 0)
    p0_toml.write_text(p0_toml.read_text().replace('stages = [\n    "structure",\n    "relax",\n    "force_constants",\n    "transport",\n]', 'stages = ["structure"]'))
    assert 'stages = ["structure"]' in p0_toml.read_text()
    assert cli_main([str(p0_toml)]) == 0

    out = tmp_path / "collected"
    assert cli_main(["sweep-collect", str(path), "--out", str(out)]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["n_points"] == 2 and doc["n_finished"] == 1
    p0, p1 = doc["points"]
    assert p0["status"] == "unfinished" and p1["status"] == "finished"
    assert p0["stages_complete"] == ["structure"] and p0["stages_missing"] == ["relax", "force_constants", "transport"]
    assert p1["values"] == {"structure.interface_spacing_A": 2.0}
    assert set(p1["itc_MW_m2K"]) == {"left_to_right", "right_to_left"}
    assert "300.0" in p1["rectification_percent"]
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["status"] for r in rows] == ["unfinished", "finished"]
    assert rows[1]["structure.interface_spacing_A"] == "2" and rows[1]["itc_left_to_right_300.0K_MW_m2K"] != ""
    assert (out / "sweep_itc.png").stat().st_size > 0
