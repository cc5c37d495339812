"""Training-data sampling (hpc_itc.tools.sample) and VASP in/out (hpc_itc.core.dft), on EMT and hand-made VASP files."""

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from hpc_itc.core.dft import KBAR_TO_EV_A3, kpoint_mesh, read_vasp_folder
from hpc_itc.errors import InvalidInput
from hpc_itc.tools.collect_vasp import main_collect
from hpc_itc.tools.sample import KINDS, main_sample, select_by_disagreement

VASP = Path(__file__).resolve().parents[1] / "data" / "vasp"
REPO = Path(__file__).resolve().parents[2]

# tiny structures, EMT: a few seconds
EMT_TOML = """
[run]
output_dir = "{out}"
steps = ["sample", "dft"]
seed = {seed}

[structures]
bulk_repeat = [1, 1, 2]
inplane_repeat = [2, 1]
cu_layers = 2
diamond_layers = 2
vacuum_A = 6.0
prerelax_steps = {prerelax}

[mlip]
model = "emt"

[rattle]
amplitudes_A = [0.02, 0.1]
count = 2
strain_max = 0.02

[md]
trajectories = 1
snapshots = 2
equilibration_steps = 4
interval_steps = 3

[dft.incar]
ISIF = 3
"""


def _run(tmp_path, name, seed=7, prerelax=0, text=None):
    path = tmp_path / f"{name}.toml"
    path.write_text(text or EMT_TOML.format(out=name, seed=seed, prerelax=prerelax))
    assert main_sample(str(path)) == 0
    return tmp_path / name


@pytest.fixture(scope="module")
def emt_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("sample"), "out")


def test_sampled_extxyz(emt_run):
    frames = read(emt_run / "sampled.extxyz", ":")
    counts = Counter(a.info["config_type"] for a in frames)
    assert counts == {f"{k}_{m}": (4 if m == "rattle" else 2) for k in KINDS for m in ("rattle", "md")}
    assert [a.info["sample_index"] for a in frames] == list(range(len(frames)))
    for a in frames:
        assert a.calc is None and "momenta" not in a.arrays  # nothing mace could mistake for labels
        formula = Counter(a.get_chemical_symbols())
        kind = a.info["structure"]
        if kind == "cu":
            assert formula == {"Cu": 4}
        elif kind == "diamond":
            assert formula == {"C": 8}
        elif kind == "cu_diamond":
            assert formula == {"Cu": 4, "C": 8}
        elif kind == "cu_n_diamond":  # the 2 sites of the terminal C plane are N
            assert formula == {"Cu": 4, "C": 6, "N": 2}
        else:  # mixed plane: 1 Cu + 1 N
            assert formula == {"Cu": 5, "C": 6, "N": 1}
    md = [a for a in frames if a.info["method"] == "md"]
    assert all(a.info["temperature_K"] == 500.0 for a in md)
    assert sorted({a.info["md_time_fs"] for a in md}) == [7.0, 10.0]
    rat = [a for a in frames if a.info["method"] == "rattle"]
    assert {a.info["rattle_A"] for a in rat} == {0.02, 0.1}
    assert all(abs(a.info["strain"]) <= 0.02 for a in rat)


def test_deterministic_from_seed(tmp_path, emt_run):
    again = _run(tmp_path, "again")
    assert (again / "sampled.extxyz").read_bytes() == (emt_run / "sampled.extxyz").read_bytes()
    other = _run(tmp_path, "other", seed=8)
    assert (other / "sampled.extxyz").read_bytes() != (emt_run / "sampled.extxyz").read_bytes()


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="no mpiexec on PATH")
def test_two_ranks_give_the_same_file(tmp_path):
    serial = _run(tmp_path, "serial", prerelax=3)
    path = tmp_path / "mpi.toml"
    path.write_text(EMT_TOML.format(out="mpi", seed=7, prerelax=3))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe")
    code = f"import sys; from hpc_itc.tools.sample import main_sample; sys.exit(main_sample({str(path)!r}))"
    proc = subprocess.run(["mpiexec", "-n", "2", "--oversubscribe", sys.executable, "-c", code],
                          capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 rank(s)" in proc.stderr
    assert (tmp_path / "mpi" / "sampled.extxyz").read_bytes() == (serial / "sampled.extxyz").read_bytes()


def test_dft_inputs_parse_back(emt_run):
    from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar

    frames = read(emt_run / "sampled.extxyz", ":")
    folders = sorted((emt_run / "vasp").iterdir())
    assert len(folders) == len(frames)  # configurations = "auto" without select: all
    for folder in folders[::7]:
        incar = Incar.from_file(folder / "INCAR")
        assert incar["GGA"].upper() == "PS" and incar["ENCUT"] == 600 and incar["ISMEAR"] == 0
        assert incar["SIGMA"] == 0.05 and incar["EDIFF"] == 1e-6 and incar["PREC"] == "Accurate"
        assert incar["NSW"] == 0 and incar["IBRION"] == -1
        assert incar["ISIF"] == 3  # the override from [dft.incar]
        meta = json.loads((folder / "hpc_itc.json").read_text())
        atoms = frames[meta["info"]["sample_index"]]
        assert meta["config_type"] == atoms.info["config_type"] and folder.name.endswith(atoms.info["config_type"])
        poscar = Poscar.from_file(folder / "POSCAR")
        s = poscar.structure
        assert np.allclose(s.lattice.matrix, atoms.cell[:], atol=1e-8)
        assert np.allclose(s.cart_coords, atoms.positions[meta["poscar_order"]], atol=1e-8)
        spec = (folder / "POTCAR.spec").read_text().split()
        assert [p.split("_")[0] for p in spec] == poscar.site_symbols
        kp = Kpoints.from_file(folder / "KPOINTS")
        assert tuple(kp.kpts[0]) == kpoint_mesh(atoms.cell[:], 0.4)
        assert kp.style.name == "Gamma"


def test_kpoint_mesh_spacing():
    cell = np.diag([5.0, 2.5, 30.0])
    mesh = kpoint_mesh(cell, 0.4)
    assert mesh == (4, 7, 1)  # 2 pi / 5 / 0.4 = 3.14 -> 4; 2 pi / 2.5 / 0.4 = 6.28 -> 7; vacuum -> 1
    spacing = 2 * np.pi / np.diag(cell) / np.array(mesh)
    assert np.all(spacing <= 0.4)


BAD = [
    ("[rattle]\namplitudes_A = [-0.1]\n", "rattle.amplitudes_A"),
    ("[structures]\nkinds = ['cu', 'graphene']\n", "structures.kinds"),
    ("[structures]\nmixed_cu_fraction = 0.3\n", "structures.mixed_cu_fraction"),
    ("[run]\nsteps = ['sample', 'select']\n[select]\nmodels = ['emt']\n", "select.models"),
    ("[run]\nsteps = ['dft', 'sample']\n", "run.steps"),
    ("[md]\ntemprature_K = 300.0\n", "md.temprature_K"),
    ("[md]\nthermostat = 'andersen'\n", "md.thermostat"),
    ("[dft.incar]\nencut = 500\n", "dft.incar.encut"),
    ("[dft.potcar_symbols]\nCu = 'C'\n", "dft.potcar_symbols.Cu"),
    ("[mlip]\nmodel = 'nowhere/x.model'\n", "mlip.model"),
    ("[nonsense]\n", "nonsense"),
    ("[run]\nsteps = ['select']\n[select]\nmodels = ['emt', 'default']\n", "run.steps"),  # no sampled.extxyz yet
]


@pytest.mark.parametrize("text,key", BAD)
def test_bad_input_is_one_line_naming_the_key(tmp_path, capsys, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main_sample(str(path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {key}:"), err
    assert not (tmp_path / "sample_out").exists()


# ------------------------------------------------------------------ VASP output

FORCES = np.array([[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3], [0.5, 0.0, 0.05], [-0.5, 0.0, -0.05]])
STRESS_KBAR = np.array([[50.0, 5.0, 2.0], [5.0, -20.0, -3.0], [2.0, -3.0, 10.0]])


def test_read_finished_vasp_units_and_signs():
    a = read_vasp_folder(VASP / "finished")
    assert a.get_chemical_symbols() == ["Cu", "Cu", "C", "N"]
    assert a.info["REF_energy"] == pytest.approx(-20.495, abs=1e-9)  # sigma -> 0 energy
    assert a.info["REF_free_energy"] == pytest.approx(-20.500, abs=1e-9)
    assert np.allclose(a.arrays["REF_forces"], FORCES)
    stress = np.asarray(a.info["REF_stress"])
    assert stress.shape == (9,)
    # VASP's +50 kBar (xx) is a pressure: the cell pushes outwards -> compressive -> negative in ASE's convention
    assert stress[0] == pytest.approx(-50.0 / 1602.1766208, rel=1e-8)
    assert np.allclose(stress.reshape(3, 3), -STRESS_KBAR * KBAR_TO_EV_A3)
    assert a.info["config_type"] == "cu_n_diamond_rattle" and a.info["rattle_A"] == 0.05
    # independent check: ASE's own VASP reader, whose stress is ASE-signed
    ref = read(VASP / "finished" / "vasprun.xml", format="vasp-xml")
    assert a.info["REF_energy"] == pytest.approx(ref.get_potential_energy(), abs=1e-8)
    assert np.allclose(stress, ref.get_stress(voigt=False).reshape(9))
    assert np.allclose(a.arrays["REF_forces"], ref.get_forces())
    assert np.allclose(a.cell[:], ref.cell[:]) and np.allclose(a.positions, ref.positions)


def test_real_vasp_file_with_pstress(tmp_path):
    """A real VASP 6.3 vasprun.xml shipped with ASE (PSTRESS = 1 kBar): same labels as ASE's reader."""
    import ase

    src = Path(ase.__file__).parent / "test" / "testdata" / "vasp" / "vasprun_pstress.xml"
    if not src.is_file():
        pytest.skip("ASE's test data not installed")
    (tmp_path / "run").mkdir()
    shutil.copy(src, tmp_path / "run" / "vasprun.xml")
    a = read_vasp_folder(tmp_path / "run")
    ref = read(src, format="vasp-xml")
    assert a.info["REF_energy"] == pytest.approx(ref.get_potential_energy(), abs=1e-6)
    assert a.info["REF_free_energy"] == pytest.approx(ref.get_potential_energy(force_consistent=True), abs=1e-6)
    assert np.allclose(a.info["REF_stress"], ref.get_stress(voigt=False).reshape(9))
    assert a.info["config_type"] == "vasp"


def test_dataset_stress_convention_is_ase():
    """The vendored PBEsol data are ASE-signed: the stress of the rattled Cu cells rises with their volume."""
    frames = [a for a in read(REPO / "hpc_itc" / "data" / "cunc_pbesol_crystal.extxyz", ":")
              if a.get_chemical_formula() == "Cu150"]
    vol = np.array([a.get_volume() for a in frames])
    trace = np.array([np.trace(np.reshape(a.info["REF_stress"], (3, 3))) for a in frames])
    assert np.corrcoef(vol, trace)[0, 1] > 0.9
    assert trace[np.argmin(vol)] < 0 < trace[np.argmax(vol)]


def test_collect_writes_training_extxyz(tmp_path, capsys):
    out = tmp_path / "train.extxyz"
    assert main_collect([str(VASP / "finished")], str(out)) == 0
    assert "wrote 1 labelled" in capsys.readouterr().out
    (a,) = read(out, ":")
    assert a.info["config_type"] == "cu_n_diamond_rattle"
    assert a.info["REF_energy"] == pytest.approx(-20.495)
    assert np.allclose(np.reshape(a.info["REF_stress"], (3, 3)), -STRESS_KBAR * KBAR_TO_EV_A3)
    assert np.allclose(a.arrays["REF_forces"], FORCES)
    assert a.calc is None  # REF_ keys only, nothing mace would read as a model prediction


@pytest.mark.parametrize("folder,words", [
    ("no_vasprun", "no vasprun.xml"),
    ("truncated", "truncated"),
    ("unconverged", "electronic loop not converged"),
])
def test_unfinished_folder_is_one_line_naming_it(tmp_path, capsys, folder, words):
    out = tmp_path / "x.extxyz"
    assert main_collect([str(VASP / "finished"), str(VASP / folder)], str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {VASP / folder}:") and words in err[0], err
    assert not out.exists()
    with pytest.raises(InvalidInput):
        read_vasp_folder(VASP / folder)


def test_collect_skips_unfinished_and_expands_parent(tmp_path, capsys):
    out = tmp_path / "x.extxyz"
    assert main_collect([str(VASP)], str(out), skip_unfinished=True) == 0
    captured = capsys.readouterr()
    assert "wrote 1 labelled" in captured.out and captured.err.count("warning: skipped") == 3
    assert len(read(out, ":")) == 1


# ------------------------------------------------------------------ selection

def _perturbed_emt():
    """EMT plus a short-ranged repulsion: agrees with EMT except where atoms come close."""
    from ase.calculators.emt import EMT
    from ase.calculators.lj import LennardJones
    from ase.calculators.mixing import SumCalculator

    return SumCalculator([EMT(), LennardJones(sigma=1.9, epsilon=0.02, rc=2.6, smooth=True)])


def test_selection_ranks_the_uncertain_configuration_first():
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(5):
        a = bulk("Cu", "fcc", a=3.6, cubic=True)
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        frames.append(a)
    odd = frames[3].copy()
    odd.positions[1] = odd.positions[0] + [1.75, 0.0, 0.0]  # a close contact: outside what the models agree on
    frames.insert(2, odd)
    chosen, scores = select_by_disagreement(frames, [EMT(), _perturbed_emt()], count=2)
    assert chosen[0] == 2
    assert scores[2] > 5 * np.delete(scores, 2).max()
    assert len(chosen) == 2 and scores[chosen[0]] >= scores[chosen[1]]


def test_select_step_with_the_shipped_committee(tmp_path):
    """sample -> select (the shipped committee's force spread) -> VASP inputs for the selected configurations only."""
    text = """
[run]
output_dir = "sel"
steps = ["sample", "select", "dft"]
seed = 3

[structures]
bulk_repeat = [1, 1, 2]
inplane_repeat = [2, 1]
cu_layers = 2
diamond_layers = 2
vacuum_A = 6.0

[rattle]
amplitudes_A = [0.02, 0.1]
count = 1

[mlip]
num_threads = 1

[md]
trajectories = 0

[select]
models = ["shipped"]
count = 3
"""
    out = _run(tmp_path, "sel", text=text)
    selected = read(out / "selected.extxyz", ":")
    assert len(selected) == 3
    rows = (out / "selection.csv").read_text().strip().splitlines()[1:]
    scores = {int(r.split(",")[0]): float(r.split(",")[3]) for r in rows}
    assert len(scores) == 10  # 5 kinds x 2 amplitudes x 1
    assert min(scores.values()) > 0  # three distinct members spread on every configuration
    best = sorted(scores, key=lambda i: (-scores[i], i))[:3]
    assert [a.info["sample_index"] for a in selected] == best
    assert [a.info["selection_rank"] for a in selected] == [0, 1, 2]
    assert sorted(p.name[:5] for p in (out / "vasp").iterdir()) == sorted(f"{i:05d}" for i in best)


# ------------------------------------------------------------------ structures and MD pieces

def test_starting_structures_from_the_builder():
    from ase.neighborlist import neighbor_list

    from hpc_itc.tools.sample import SCHEMA, build_starting_structure

    s = {k: spec.default for k, spec in SCHEMA["structures"].items()}  # defaults: 2x2 in-plane, 4+4 layers
    built = {kind: build_starting_structure(kind, s, 3.615, 3.567) for kind in KINDS}
    assert Counter(built["cu"].get_chemical_symbols()) == {"Cu": 2 * 3 * 3 * 2}
    assert Counter(built["diamond"].get_chemical_symbols()) == {"C": 4 * 3 * 3 * 2}
    assert Counter(built["cu_diamond"].get_chemical_symbols()) == {"Cu": 16, "C": 32}
    assert Counter(built["cu_n_diamond"].get_chemical_symbols()) == {"Cu": 16, "C": 28, "N": 4}
    assert Counter(built["cu_cun_diamond"].get_chemical_symbols()) == {"Cu": 18, "C": 28, "N": 2}
    for kind, atoms in built.items():
        d = neighbor_list("d", atoms, 1.4)
        assert len(d) == 0, kind  # no unphysically close pairs
    # the N of Cu/N/diamond form the plane facing the Cu: lower z than every C, above every Cu
    a = built["cu_n_diamond"]
    z = {s_: a.positions[np.array(a.get_chemical_symbols()) == s_, 2] for s_ in ("Cu", "C", "N")}
    assert np.ptp(z["N"]) < 1e-9 and z["Cu"].max() < z["N"].min() < z["C"].min()
    # mixed plane: 2 Cu moved mixed_cu_shift_A towards the Cu side, 2 N left in the plane
    b = built["cu_cun_diamond"]
    zn = b.positions[np.array(b.get_chemical_symbols()) == "N", 2]
    assert np.ptp(zn) < 1e-9  # one plane (its height above the Cu: the covalent gap for x = 0.5, see structure.py)
    zcu = np.sort(b.positions[np.array(b.get_chemical_symbols()) == "Cu", 2])[-2:]
    assert np.allclose(zcu, zn[0] - s["mixed_cu_shift_A"])


@pytest.mark.parametrize("thermostat", ["langevin", "berendsen", "nose_hoover", "bussi"])
def test_thermostats_are_seeded(thermostat):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from hpc_itc.tools.sample import SCHEMA, md_snapshots

    md = {k: spec.default for k, spec in SCHEMA["md"].items()}
    md.update(thermostat=thermostat, equilibration_steps=3, interval_steps=2, snapshots=2)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    runs = [md_snapshots(atoms, EMT(), md, np.random.default_rng(5)) for _ in range(2)]
    assert [t for _, t in runs[0]] == [5.0, 7.0]
    assert all(np.array_equal(x.positions, y.positions) for (x, _), (y, _) in zip(*runs))
    assert not np.allclose(runs[0][0][0].positions, atoms.positions)


def test_committee_force_deviation_is_the_spread_of_the_members():
    """Two members: max_i |F1 - F2|_i / 2; three: the standard deviation of the force vectors, by hand."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from hpc_itc.tools.sample import max_force_deviation

    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    a.positions += np.random.default_rng(1).normal(scale=0.05, size=a.positions.shape)
    forces = []
    for calc in (EMT(), _perturbed_emt()):
        b = a.copy()
        b.calc = calc
        forces.append(b.get_forces())
    assert max_force_deviation(a, [EMT(), _perturbed_emt()]) == pytest.approx(
        np.linalg.norm(forces[0] - forces[1], axis=1).max() / 2, rel=1e-12)
    assert max_force_deviation(a, [EMT(), EMT()]) == 0.0
    third = forces[1] * 0.0
    mean = (forces[0] + forces[1] + third) / 3
    spread = np.sqrt(sum(np.sum((f - mean) ** 2, axis=1) for f in (forces[0], forces[1], third)) / 3).max()

    class Zero(EMT):
        def calculate(self, *args, **kwargs):
            super().calculate(*args, **kwargs)
            self.results["forces"] = self.results["forces"] * 0.0

    assert max_force_deviation(a, [EMT(), _perturbed_emt(), Zero()]) == pytest.approx(spread, rel=1e-12)
