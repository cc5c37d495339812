"""Training-data sampling for the MLIP (paper section 3.1): ``python -m hpc_itc sample SAMPLE.toml``.

Five starting structures, built with the project's own builder (:mod:`hpc_itc.core.structure`):

============== ==========================================================================
kind           what is built
============== ==========================================================================
cu             bulk fcc Cu: the tetragonal (001) cell (a/sqrt2, a/sqrt2, a), 2 atoms,
               repeated ``structures.bulk_repeat``
diamond        bulk diamond: the same cell with 4 C atoms, repeated ``bulk_repeat``
cu_diamond     bare Cu/diamond(001) slab (``build`` with N fraction 0), vacuum along z
cu_n_diamond   Cu/N/diamond: the terminal diamond C plane fully replaced by N (x = 1)
cu_cun_diamond Cu/Cu-N/diamond: the terminal diamond C plane replaced by a *mixed* plane,
               a fraction ``structures.mixed_cu_fraction`` (default 0.5) of its sites Cu and
               the rest N (the paper's Cu/Cu_xN_(1-x)/diamond with x = 0.5; cf. C64Cu60N4
               next to C64Cu56N8 in the authors' data).  Sites: the builder's reproducible
               N-site choice (seed ``structures.site_seed``); the Cu atoms of that plane are
               moved ``structures.mixed_cu_shift_A`` towards the Cu side (on the carbon site
               a Cu-C bond would be 1.54 Å).
============== ==========================================================================

The interfaces are the same slabs (layer cells, strain, spacing, vacuum) that the
main pipeline relaxes and differentiates, so the training data cover the
configurations the MLIP is applied to.  Optionally each starting structure is
pre-relaxed with the MLIP (positions only).

From each starting structure: rattled copies (isotropic strain uniform in
[-strain_max, strain_max], then Gaussian displacements of standard deviation
``amplitude`` per Cartesian component) and NVT MD snapshots with the chosen MLIP
(paper: 500 K).  Every (structure, sample) task has its own seed derived from
``run.seed`` and the task's identity (numpy SeedSequence), tasks are dealt
round-robin over MPI ranks, and the output is written in task order, so the
result does not depend on the number of ranks.

Outputs in ``run.output_dir``: ``sampled.extxyz`` (config_type ``<kind>_rattle`` /
``<kind>_md``), optionally ``selected.extxyz`` + ``selection.csv`` (configurations
ranked by the force deviation of the committee ``select.models``) and ``vasp/`` input sets
(:mod:`hpc_itc.core.dft`).  ``mlip.model = "emt"`` (and ``"emt"`` in ``select.models``)
uses ASE's EMT, a cheap toy potential for tests and demos only: it is not a
model of Cu/diamond.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpc_itc.config import SHIPPED_COMMITTEE, Key, check_tables, read_toml, resolve_path
from hpc_itc.errors import InputError, keyed, message_line

KINDS = ("cu", "diamond", "cu_diamond", "cu_n_diamond", "cu_cun_diamond")
STEPS = ("sample", "select", "dft")
THERMOSTATS = ("langevin", "berendsen", "nose_hoover", "bussi")
EMT_NAME = "emt"
SAMPLED_FILE = "sampled.extxyz"
SELECTED_FILE = "selected.extxyz"
SCORES_FILE = "selection.csv"
VASP_DIR = "vasp"
_METHOD_CODE = {"rattle": 0, "md": 1, "relax": 2}

SCHEMA: dict[str, dict[str, Key]] = {
    "run": {
        "output_dir": Key("path", "sample_out", "Folder for sampled.extxyz, selected.extxyz, selection.csv and vasp/ (relative to the input file's folder)."),
        "steps": Key("str_list", ["sample", "dft"], "Steps to run, in order: 'sample' (write sampled.extxyz), 'select' (rank by the committee's force spread, select.models), 'dft' (VASP input sets). Without 'sample' the others read output_dir/sampled.extxyz from an earlier run.", choices=STEPS),
        "seed": Key("int", 0, "Master seed; every task's seed is derived from it and the task's identity.", minimum=0),
        "log_level": Key("str", "info", "Logging verbosity.", choices=("debug", "info", "warning")),
    },
    "structures": {
        "kinds": Key("str_list", list(KINDS), "Starting structures (paper: all five). cu_cun_diamond is the mixed Cu/N terminal plane, see mixed_cu_fraction.", choices=KINDS),
        "lattice_constant_cu_A": Key("float", 0.0, "Cubic lattice constant of Cu; 0 takes the project's value 3.615.", unit="Å", minimum=0.0),
        "lattice_constant_diamond_A": Key("float", 0.0, "Cubic lattice constant of diamond; 0 takes 3.567.", unit="Å", minimum=0.0),
        "bulk_repeat": Key("int_list", [3, 3, 2], "Repetitions of the tetragonal (001) cell (a/sqrt2, a/sqrt2, a) for bulk Cu (2 atoms) and diamond (4 atoms).", length=3, minimum=1),
        "inplane_repeat": Key("int_list", [2, 2], "In-plane repetition n x m of the square primitive (001) cell for the interfaces.", length=2, minimum=1),
        "cu_layers": Key("int", 4, "(001) layers of primitive cells of Cu in the interface slabs (1 atom per cell each).", minimum=1),
        "diamond_layers": Key("int", 4, "(001) layers of primitive cells of diamond in the interface slabs (2 atoms per cell each).", minimum=1),
        "strained_side": Key("str", "cu", "Which side takes the other's in-plane lattice.", choices=("cu", "diamond")),
        "interface_spacing_A": Key("float", 0.0, "z distance between the last Cu plane and the first diamond plane; 0 = from covalent radii (as in [structure] of the run input).", unit="Å", minimum=0.0, maximum=5.0),
        "interface_shift_frac": Key("float_list", [], "In-plane offset of the diamond's first plane; [] = the bonded registry (as in [structure] of the run input).", lengths=(0, 2), min_length=0),
        "vacuum_A": Key("float", 10.0, "Vacuum along z of the interface slabs.", unit="Å", minimum=4.0),
        "mixed_cu_fraction": Key("float", 0.5, "cu_cun_diamond: fraction of the terminal plane's sites that are Cu (the rest N); times n*m must be whole.", minimum=0.0, exclusive_min=True, maximum=1.0),
        "mixed_cu_shift_A": Key("float", 0.4, "cu_cun_diamond: Cu atoms of the mixed plane are moved this far towards the Cu side.", unit="Å", minimum=0.0, maximum=1.5),
        "site_seed": Key("int", 0, "Seed of the reproducible choice of Cu and N sites in the mixed plane.", minimum=0),
        "prerelax_steps": Key("int", 0, "FIRE steps relaxing each starting structure's positions with the MLIP before sampling (0: none).", minimum=0),
        "prerelax_fmax_eV_A": Key("float", 0.05, "Force threshold of the pre-relaxation.", unit="eV/Å", minimum=0.0, exclusive_min=True),
    },
    "mlip": {
        "model": Key("str", "default", "Potential for MD and pre-relaxation: 'default' (shipped MACE model), a MACE model file (relative to the input file), a foundation name, or 'emt' (ASE's EMT: a cheap toy for tests and demos, not a Cu/diamond model)."),
        "device": Key("str", "cpu", "Torch device.", choices=("cpu", "cuda")),
        "dtype": Key("str", "float64", "Floating-point precision.", choices=("float64", "float32")),
        "num_threads": Key("int", 0, "Torch threads per rank; 0: cores / ranks on the node.", minimum=0),
    },
    "rattle": {
        "amplitudes_A": Key("float_list", [0.01, 0.05, 0.1], "Standard deviations of the Gaussian displacement per Cartesian component.", unit="Å", minimum=0.0, exclusive_min=True, maximum=1.0),
        "count": Key("int", 2, "Rattled configurations per structure and amplitude (0: no rattling).", minimum=0),
        "strain_max": Key("float", 0.02, "Isotropic linear strain of each rattled cell, uniform in [-strain_max, strain_max] (0: fixed cell).", minimum=0.0, maximum=0.2),
    },
    "md": {
        "trajectories": Key("int", 1, "Independent NVT trajectories per structure (0: no MD).", minimum=0),
        "snapshots": Key("int", 4, "Snapshots kept per trajectory.", minimum=1),
        "temperature_K": Key("float", 500.0, "Thermostat temperature (paper: 500 K); initial velocities Maxwell-Boltzmann at this temperature.", unit="K", minimum=0.0, exclusive_min=True),
        "timestep_fs": Key("float", 1.0, "MD time step.", unit="fs", minimum=0.0, exclusive_min=True, maximum=10.0),
        "equilibration_steps": Key("int", 200, "Steps before the first snapshot.", minimum=0),
        "interval_steps": Key("int", 50, "Steps between snapshots.", minimum=1),
        "thermostat": Key("str", "langevin", "NVT thermostat (ASE).", choices=THERMOSTATS),
        "friction_per_fs": Key("float", 0.01, "Langevin friction.", unit="1/fs", minimum=0.0, exclusive_min=True),
        "taut_fs": Key("float", 100.0, "Relaxation time of the berendsen and bussi thermostats, damping time of nose_hoover.", unit="fs", minimum=0.0, exclusive_min=True),
    },
    "select": {
        "models": Key("str_list", [], "Committee for 'select': [\"shipped\"] (the three committee members in hpc_itc/models/committee/) or two or more models ('default', model files, foundation names, 'emt'); each configuration is scored by the committee's spread, the largest over atoms of the standard deviation of the members' forces (eV/Å).", min_length=0),
        "count": Key("int", 10, "Configurations kept (the highest scores).", minimum=1),
    },
    "dft": {
        "configurations": Key("str", "auto", "Which configurations get VASP inputs: 'all' sampled, 'selected' only, 'auto' (selected when the select step ran, else all).", choices=("auto", "all", "selected")),
        "kspacing_per_A": Key("float", 0.4, "Largest k-point spacing (paper: 0.4); mesh N_i = max(1, ceil(|b_i| / spacing)) with |b_i| including 2 pi (VASP's KSPACING rule), written as an explicit KPOINTS file.", unit="1/Å", minimum=0.0, exclusive_min=True),
        "gamma_centred": Key("bool", True, "Gamma-centred mesh (else Monkhorst-Pack)."),
        "potcar_functional": Key("str", "PBE_54", "POTCAR set recorded in POTCAR.spec's notes (hpc_itc writes no POTCAR)."),
    },
}
# free-form tables, validated by _check_table
TABLES = {
    "dft.incar": "INCAR tags overriding/adding to the paper's defaults (see hpc_itc.core.dft.PAPER_INCAR), e.g. ISIF = 3, IDIPOL = 3.",
    "dft.potcar_symbols": "POTCAR symbol per element written to POTCAR.spec (defaults Cu = 'Cu_pv', C = 'C', N = 'N').",
}


@dataclass
class SampleConfig:
    data: dict[str, dict[str, Any]]
    source: Path
    base_dir: Path

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.data[section]

    @property
    def output_dir(self) -> Path:
        return resolve_path(self.base_dir, self.data["run"]["output_dir"]).resolve()

    def model_spec(self, spec: str) -> str:
        """'emt', or what :mod:`hpc_itc.core.mlip` takes (paths made absolute)."""
        if spec.strip().lower() == EMT_NAME:
            return EMT_NAME
        candidate = resolve_path(self.base_dir, spec)
        return str(candidate.resolve()) if candidate.exists() else spec

    def select_models(self) -> list[str]:
        """select.models as model specs, ["shipped"] expanded to the shipped committee's files."""
        models = list(self.data["select"]["models"])
        if models == [SHIPPED_COMMITTEE]:
            from hpc_itc.core.mlip import shipped_committee

            return [str(p) for p in shipped_committee()]
        return [self.model_spec(m) for m in models]

    def lattice_constant(self, material: str) -> float:
        from hpc_itc.core.structure import EXPERIMENTAL_LATTICE_A

        value = self.data["structures"][f"lattice_constant_{material}_A"]
        return value if value > 0 else EXPERIMENTAL_LATTICE_A[material]

    def needs_mlip(self) -> bool:
        return ("sample" in self.data["run"]["steps"]
                and (self.data["md"]["trajectories"] > 0 or self.data["structures"]["prerelax_steps"] > 0))


# ----------------------------------------------------------------------------- input

def load_sample_config(path: str | Path) -> SampleConfig:
    """Read and validate a SAMPLE.toml; InputError naming the dotted key on any problem."""
    path = Path(path)
    raw = read_toml(path, "a sampling TOML file")
    return validate_sample(raw, source=path.resolve(), base_dir=path.resolve().parent)


def validate_sample(raw: dict[str, Any], source: Path | None = None, base_dir: Path | None = None) -> SampleConfig:
    nested: dict[str, set[str]] = {}
    for t in TABLES:
        if "." in t:
            section, name = t.split(".", 1)
            nested.setdefault(section, set()).add(name)
    data = check_tables(raw, SCHEMA, nested)
    for section, names in nested.items():
        for name in sorted(names):
            data[section][name] = _check_table(f"{section}.{name}", (raw.get(section) or {}).get(name, {}))
    base = base_dir or Path.cwd()
    _cross_checks(data, base)
    return SampleConfig(data=data, source=source or Path("<memory>"), base_dir=base)


def _check_table(dotted: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(dotted, f"got {value!r}; allowed: a table such as [{dotted}]")
    out: dict[str, Any] = {}
    for k, v in value.items():
        if dotted == "dft.incar":
            if not k.replace("_", "").isalnum() or k.upper() != k:
                raise InputError(f"{dotted}.{k}", "INCAR tags are upper-case letters, digits and _ (e.g. ISIF)")
            ok = isinstance(v, (bool, int, float, str)) or (
                isinstance(v, list) and v and all(isinstance(x, (int, float, bool)) and not isinstance(x, bool) for x in v))
            if not ok or (isinstance(v, float) and not math.isfinite(v)) or (isinstance(v, str) and not v.strip()):
                raise InputError(f"{dotted}.{k}", f"got {v!r}; allowed: a number, true/false, a non-empty string or a list of numbers")
            if isinstance(v, str) and (not v.isprintable() or len(v) > 200):
                # a newline (or another control character) would add lines of its own to the INCAR
                raise InputError(f"{dotted}.{k}", f"got {v[:40]!r}{'...' if len(v) > 40 else ''}; allowed: one line of printable text (at most 200 characters)")
        else:  # dft.potcar_symbols
            from ase.data import chemical_symbols

            if k not in chemical_symbols[1:]:
                raise InputError(f"{dotted}.{k}", "keys are element symbols (Cu, C, N)")
            if not isinstance(v, str) or not v.strip() or not v.startswith(k):
                raise InputError(f"{dotted}.{k}", f"got {v!r}; allowed: a POTCAR symbol of {k} such as '{k}' or '{k}_pv'")
        out[k] = v
    return out


def _cross_checks(data: dict[str, dict[str, Any]], base: Path) -> None:
    steps = data["run"]["steps"]
    if [s for s in STEPS if s in steps] != steps:
        raise InputError("run.steps", f"got {steps!r}; list steps in the order {', '.join(STEPS)}")
    s = data["structures"]
    if 0 < s["interface_spacing_A"] < 0.5:
        raise InputError("structures.interface_spacing_A", f"got {s['interface_spacing_A']}; allowed: 0 (from covalent radii) or 0.5 to 5")
    if "cu_cun_diamond" in s["kinds"]:
        n_sites = s["inplane_repeat"][0] * s["inplane_repeat"][1]
        count = s["mixed_cu_fraction"] * n_sites
        if abs(count - round(count)) > 1e-9 or round(count) < 1:
            allowed = ", ".join(f"{k / n_sites:g}" for k in range(1, n_sites + 1))
            raise InputError("structures.mixed_cu_fraction",
                             f"x * n * m must be a whole number of sites; with inplane_repeat {s['inplane_repeat']} allowed x: {allowed}")
    if "sample" in steps and data["rattle"]["count"] == 0 and data["md"]["trajectories"] == 0:
        raise InputError("rattle.count", "rattle.count and md.trajectories are both 0: nothing to sample; allowed: at least one > 0")
    models = [data["mlip"]["model"]]
    if "select" in steps:
        sel = data["select"]["models"]
        if sel == [SHIPPED_COMMITTEE]:
            sel = []  # the shipped files exist (checked when they are loaded)
        elif len(sel) < 2 or SHIPPED_COMMITTEE in sel:
            raise InputError("select.models", f"got {sel!r}; the select step needs a list of two or more different models, or [\"shipped\"]")
        models += sel
    for i, model in enumerate(models):
        key = "mlip.model" if i == 0 else "select.models"
        looks_like_path = model.endswith((".model", ".pt", ".pth")) or "/" in model or "\\" in model
        if looks_like_path and not resolve_path(base, model).is_file():
            raise InputError(key, f"model file '{model}' not found (relative paths are relative to the input file's folder); allowed: 'default', 'emt', an existing MACE model file or a foundation-model name")


def schema_markdown() -> str:
    """Reference of every SAMPLE.toml key (for docs/sample_input.md)."""
    lines = ["# Sampling input reference (`python -m hpc_itc sample SAMPLE.toml`)", "",
             "Every key is optional and has the default shown; unknown keys are errors.",
             "Generated from `hpc_itc/tools/sample.py`.", ""]
    for section, keys in SCHEMA.items():
        lines += [f"## [{section}]", "", "| key | type / allowed | default | unit | meaning |", "| --- | --- | --- | --- | --- |"]
        for name, spec in keys.items():
            lines.append(f"| `{name}` | {spec.allowed()} | `{json.dumps(spec.default)}` | {spec.unit} | {spec.doc} |")
        for dotted, doc in TABLES.items():
            if dotted.startswith(section + "."):
                lines.append(f"| `[{dotted}]` | a table | `{{}}` | | {doc} |")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- structures

def starting_structures(cfg: SampleConfig) -> dict[str, Any]:
    """The unrelaxed starting structure of every kind in ``structures.kinds`` (ASE Atoms)."""
    return {kind: build_starting_structure(kind, cfg["structures"], cfg.lattice_constant("cu"),
                                           cfg.lattice_constant("diamond"))
            for kind in cfg["structures"]["kinds"]}


def build_starting_structure(kind: str, s: dict[str, Any], a_cu: float, a_diamond: float):
    """One of the paper's five starting structures from the project's builder."""
    from hpc_itc.core.structure import InterfaceSpec, build, cubic_layer_cell, lead_cells, terminal_diamond_plane

    if kind in ("cu", "diamond"):
        cell = cubic_layer_cell(kind, a_cu if kind == "cu" else a_diamond)
        atoms = cell.conventional().repeat(tuple(s["bulk_repeat"]))
        atoms.info["structure"] = kind
        return atoms
    n_fraction = {"cu_diamond": 0.0, "cu_n_diamond": 1.0, "cu_cun_diamond": 1.0 - s["mixed_cu_fraction"]}[kind]
    spec = InterfaceSpec(
        left_material="cu", right_material="diamond", n_cells_left=s["cu_layers"], n_cells_right=s["diamond_layers"],
        buffer_cells=0, inplane_repeat=tuple(s["inplane_repeat"]),
        strained_side="left" if s["strained_side"] == "cu" else "right",
        interface_spacing_A=s["interface_spacing_A"], interface_shift_frac=tuple(s["interface_shift_frac"]),
        n_fraction=n_fraction, n_seed=s["site_seed"], vacuum_A=s["vacuum_A"],
    )
    left, right, _ = lead_cells(spec, a_cu, a_diamond)
    het = build(spec, left, right)
    atoms = het.atoms.copy()
    if kind == "cu_cun_diamond":
        plane = terminal_diamond_plane(het)
        symbols = atoms.get_chemical_symbols()
        positions = atoms.get_positions()
        # Cu sits on the diamond side's first plane; the Cu slab is the left (lower z) side
        for i in plane:
            if symbols[i] == "C":
                symbols[i] = "Cu"
                positions[i, 2] -= s["mixed_cu_shift_A"]
        atoms.set_chemical_symbols(symbols)
        atoms.set_positions(positions)
    atoms.info["structure"] = kind
    return atoms


# ----------------------------------------------------------------------------- calculators

def make_calculator(spec: str, *, device: str = "cpu", dtype: str = "float64", num_threads: int | None = None,
                    key: str = "mlip.model"):
    """An ASE calculator: 'emt' (ASE's EMT, a toy for tests/demos) or a MACE model via :mod:`hpc_itc.core.mlip`."""
    if spec.strip().lower() == EMT_NAME:
        from ase.calculators.emt import EMT

        return EMT()
    from hpc_itc.core import mlip

    with keyed({"model": key, "device": "mlip.device", "dtype": "mlip.dtype", "num_threads": "mlip.num_threads"}):
        return mlip.load_calculator(spec, device=device, dtype=dtype, num_threads=num_threads)


def check_model_elements(spec: str, symbols: set[str], key: str) -> None:
    if spec == EMT_NAME:
        from ase.calculators.emt import parameters

        missing = sorted(symbols - set(parameters))
        if missing:
            raise InputError(key, f"EMT has no parameters for {', '.join(missing)}")
        return
    from hpc_itc.core import mlip

    with keyed({"model": key}):
        mlip.check_elements(spec, symbols)


def _threads(cfg: SampleConfig) -> int:
    from hpc_itc.parallel import ranks_on_node

    return cfg["mlip"]["num_threads"] or max(1, (os.cpu_count() or 1) // ranks_on_node())


# ----------------------------------------------------------------------------- sampling

@dataclass(frozen=True)
class Task:
    kind: str
    method: str  # "rattle" or "md"
    a: int  # amplitude index (rattle) or trajectory index (md)
    b: int  # sample index within the amplitude (rattle); 0 for md

    def seed_sequence(self, master_seed: int) -> np.random.SeedSequence:
        """A seed that depends on the task's identity only (not on ranks or the other tasks)."""
        return np.random.SeedSequence(entropy=master_seed,
                                      spawn_key=(KINDS.index(self.kind), _METHOD_CODE[self.method], self.a, self.b))

    @property
    def config_type(self) -> str:
        return f"{self.kind}_{self.method}"


def sampling_tasks(cfg: SampleConfig) -> list[Task]:
    """Every task, in output order: per kind (input order) its rattles, then its MD trajectories."""
    tasks = []
    for kind in cfg["structures"]["kinds"]:
        for a in range(len(cfg["rattle"]["amplitudes_A"])):
            for b in range(cfg["rattle"]["count"]):
                tasks.append(Task(kind, "rattle", a, b))
        for t in range(cfg["md"]["trajectories"]):
            tasks.append(Task(kind, "md", t, 0))
    return tasks


def _clean(atoms, info: dict[str, Any]):
    """A bare copy (positions, cell, pbc, symbols) with ``info``: no calculator, momenta or constraints."""
    from ase import Atoms

    out = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.get_cell(), pbc=atoms.pbc)
    out.info.update(info)
    return out


def rattle(atoms, amplitude_A: float, strain_max: float, rng: np.random.Generator):
    """Isotropic strain uniform in [-strain_max, strain_max], then Gaussian displacements (std ``amplitude_A``)."""
    out = atoms.copy()
    strain = float(rng.uniform(-strain_max, strain_max)) if strain_max > 0 else 0.0
    if strain:
        out.set_cell(out.get_cell() * (1.0 + strain), scale_atoms=True)
    out.positions += rng.normal(scale=amplitude_A, size=(len(out), 3))
    return out, strain


def _dynamics(atoms, md: dict[str, Any], rng: np.random.Generator):
    from ase import units
    from ase.parallel import DummyMPI

    dt = md["timestep_fs"] * units.fs
    T = md["temperature_K"]
    serial = DummyMPI()  # one task = one rank: never let ASE talk to MPI.COMM_WORLD
    name = md["thermostat"]
    if name == "langevin":
        from ase.constraints import FixCom
        from ase.md.langevin import Langevin

        atoms.set_constraint(FixCom())  # ASE >= 3.28: fixcm=False plus FixCom samples NVT correctly
        return Langevin(atoms, dt, temperature_K=T, friction=md["friction_per_fs"] / units.fs, fixcm=False, rng=rng,
                        comm=serial)
    if name == "berendsen":
        from ase.md.nvtberendsen import NVTBerendsen

        return NVTBerendsen(atoms, dt, temperature_K=T, taut=md["taut_fs"] * units.fs, comm=serial)
    if name == "bussi":
        from ase.md.bussi import Bussi

        return Bussi(atoms, dt, temperature_K=T, taut=md["taut_fs"] * units.fs, rng=rng, comm=serial)
    from ase.md.nose_hoover_chain import NoseHooverChainNVT

    return NoseHooverChainNVT(atoms, dt, temperature_K=T, tdamp=md["taut_fs"] * units.fs, comm=serial)


def md_snapshots(atoms, calc, md: dict[str, Any], rng: np.random.Generator) -> list[tuple[Any, float]]:
    """NVT MD from ``atoms``; returns (snapshot, time in fs) pairs."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.parallel import DummyMPI

    work = atoms.copy()
    work.calc = calc
    MaxwellBoltzmannDistribution(work, temperature_K=md["temperature_K"], rng=rng, comm=DummyMPI())
    Stationary(work)
    dyn = _dynamics(work, md, rng)
    if md["equilibration_steps"]:
        dyn.run(md["equilibration_steps"])
    out = []
    for _ in range(md["snapshots"]):
        dyn.run(md["interval_steps"])
        out.append((work.copy(), dyn.nsteps * md["timestep_fs"]))
    work.calc = None
    return out


def run_task(task: Task, start, cfg: SampleConfig, calc) -> list:
    """The configurations of one task (deterministic from run.seed and the task)."""
    rng = np.random.default_rng(task.seed_sequence(cfg["run"]["seed"]))
    base = {"config_type": task.config_type, "structure": task.kind, "method": task.method}
    if task.method == "rattle":
        amp = cfg["rattle"]["amplitudes_A"][task.a]
        atoms, strain = rattle(start, amp, cfg["rattle"]["strain_max"], rng)
        info = {**base, "rattle_A": amp, "strain": strain, "sample_id": f"{task.kind}_rattle_a{task.a}_s{task.b}"}
        return [_clean(atoms, info)]
    md = cfg["md"]
    frames = []
    for k, (snap, t_fs) in enumerate(md_snapshots(start, calc, md, rng)):
        info = {**base, "temperature_K": md["temperature_K"], "md_time_fs": t_fs, "thermostat": md["thermostat"],
                "sample_id": f"{task.kind}_md_t{task.a}_f{k}"}
        frames.append(_clean(snap, info))
    return frames


def prerelax(atoms, calc, steps: int, fmax: float):
    from ase.optimize import FIRE

    work = atoms.copy()
    work.calc = calc
    opt = FIRE(work, logfile=None, comm=_serial())
    opt.run(fmax=fmax, steps=steps)
    work.calc = None
    return work


def _serial():
    from ase.parallel import DummyMPI

    return DummyMPI()


def run_sampling(cfg: SampleConfig, comm, log) -> list | None:
    """All sampled configurations, in task order, on rank 0 (None elsewhere)."""
    from hpc_itc.parallel import my_share

    starts = starting_structures(cfg)
    calc = None
    if cfg.needs_mlip():
        m = cfg["mlip"]
        calc = make_calculator(cfg.model_spec(m["model"]), device=m["device"], dtype=m["dtype"], num_threads=_threads(cfg))
    steps = cfg["structures"]["prerelax_steps"]
    if steps:
        kinds = list(starts)
        mine = {kinds[i]: prerelax(starts[kinds[i]], calc, steps, cfg["structures"]["prerelax_fmax_eV_A"])
                for i in my_share(range(len(kinds)), comm)}
        for part in comm.allgather(mine):
            starts.update(part)
        if comm.rank == 0:
            log.info("pre-relaxed %d starting structure(s) (at most %d FIRE steps)", len(kinds), steps)
    tasks = sampling_tasks(cfg)
    # deal the expensive MD tasks first so that they spread over ranks; the output order is fixed below
    order = sorted(range(len(tasks)), key=lambda i: (tasks[i].method != "md", i))
    mine = my_share(order, comm)
    t0 = time.monotonic()
    done: dict[int, list] = {}
    for n, i in enumerate(mine, 1):
        done[i] = run_task(tasks[i], starts[tasks[i].kind], cfg, calc)
        log.debug("task %d (%s) done", i, tasks[i].config_type)
        if comm.rank == 0 and (tasks[i].method == "md" or n == len(mine)):
            log.info("sampling: %d/%d of rank 0's tasks, %.1f s", n, len(mine), time.monotonic() - t0)
    parts = comm.gather(done, root=0)
    if comm.rank != 0:
        return None
    merged: dict[int, list] = {}
    for part in parts:
        merged.update(part)
    frames = [atoms for i in range(len(tasks)) for atoms in merged[i]]
    for idx, atoms in enumerate(frames):
        atoms.info["sample_index"] = idx
    return frames


# ----------------------------------------------------------------------------- selection

def max_force_deviation(atoms, calculators) -> float:
    """The committee's spread on ``atoms`` (eV/Å): the largest over atoms of the standard deviation of the
    members' force vectors, sqrt(<|F_i - <F_i>|^2>) (DP-GEN's max force deviation; for two members
    |F_1 - F_2| / 2)."""
    forces = []
    for calc in calculators:
        work = atoms.copy()
        work.calc = calc
        forces.append(np.asarray(work.get_forces(), dtype=float))
        work.calc = None
    stack = np.array(forces)  # (members, atoms, 3)
    deviation = np.sqrt(((stack - stack.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0))
    return float(deviation.max(initial=0.0))


def select_by_disagreement(frames, calculators, count: int, comm=None) -> tuple[list[int], np.ndarray]:
    """Indices of the ``count`` most uncertain frames (highest score first; ties by index) and all scores.

    Under MPI each rank scores a round-robin share; every rank gets the result.
    """
    from hpc_itc.parallel import SerialComm, my_share

    comm = comm or SerialComm()
    mine = {i: max_force_deviation(frames[i], calculators) for i in my_share(range(len(frames)), comm)}
    scores = np.zeros(len(frames))
    for part in comm.allgather(mine):
        for i, s in part.items():
            scores[i] = s
    ranked = sorted(range(len(frames)), key=lambda i: (-scores[i], i))
    return ranked[: min(count, len(frames))], scores


def run_selection(cfg: SampleConfig, frames, comm, log) -> list:
    """Score ``frames`` (on every rank) with select.models; rank 0 writes selected.extxyz and selection.csv."""
    m = cfg["mlip"]
    calcs = [make_calculator(cfg.model_spec(spec), device=m["device"], dtype=m["dtype"], num_threads=_threads(cfg),
                             key="select.models") for spec in cfg.select_models()]
    chosen, scores = select_by_disagreement(frames, calcs, cfg["select"]["count"], comm)
    selected = []
    for rank, i in enumerate(chosen):
        atoms = frames[i].copy()
        atoms.info["max_force_deviation_eV_A"] = float(scores[i])
        atoms.info["selection_rank"] = rank
        selected.append(atoms)
    if comm.rank == 0:
        out = cfg.output_dir
        _write_extxyz(out / SELECTED_FILE, selected)
        rank_of = {i: r for r, i in enumerate(chosen)}
        with (out / SCORES_FILE).open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["sample_index", "config_type", "sample_id", "max_force_deviation_eV_A", "selection_rank"])
            for i, atoms in enumerate(frames):
                w.writerow([i, atoms.info.get("config_type", ""), atoms.info.get("sample_id", ""),
                            f"{scores[i]:.6f}", rank_of.get(i, "")])
        log.info("select: %d of %d configurations by the force deviation of the committee %s (max %.3f eV/Å) -> %s, %s",
                 len(selected), len(frames), ", ".join(Path(m).name for m in cfg.select_models()), float(scores.max(initial=0.0)),
                 out / SELECTED_FILE, out / SCORES_FILE)
    return selected


# ----------------------------------------------------------------------------- files and driver

def _write_extxyz(path: Path, frames) -> None:
    from ase.io import write

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp, frames, format="extxyz", parallel=False)
    os.replace(tmp, path)


def read_extxyz(path: Path) -> list:
    from ase.io import read

    return read(path, index=":", format="extxyz", parallel=False)


def _prepare(cfg: SampleConfig) -> None:
    """Checks that need the models or earlier outputs (rank 0)."""
    symbols = {"Cu", "C"}
    kinds = cfg["structures"]["kinds"]
    if any(k in kinds for k in ("cu_n_diamond", "cu_cun_diamond")):
        symbols.add("N")
    steps = cfg["run"]["steps"]
    # cheap checks first, then the ones that load models
    if "sample" not in steps and not (cfg.output_dir / SAMPLED_FILE).is_file():
        raise InputError("run.steps", f"without 'sample' the steps read {cfg.output_dir / SAMPLED_FILE}, which does not exist; add 'sample'")
    if ("dft" in steps and cfg["dft"]["configurations"] == "selected" and "select" not in steps
            and not (cfg.output_dir / SELECTED_FILE).is_file()):
        raise InputError("dft.configurations", "'selected' needs the select step (or an earlier selected.extxyz); allowed: 'all' or add 'select' to run.steps")
    if "select" in steps:
        from hpc_itc.core.mlip import resolve_model

        specs = cfg.select_models()
        if len({s if s == EMT_NAME else resolve_model(s) for s in specs}) != len(specs):
            raise InputError("select.models", f"got {cfg['select']['models']!r}; the models must differ")
    if cfg.needs_mlip():
        check_model_elements(cfg.model_spec(cfg["mlip"]["model"]), symbols, "mlip.model")
    if "select" in steps:
        for spec in specs:
            check_model_elements(spec, symbols, "select.models")


def _counts(frames) -> dict[str, int]:
    counts: dict[str, int] = {}
    for atoms in frames:
        ct = atoms.info.get("config_type", "")
        counts[ct] = counts.get(ct, 0) + 1
    return counts


def run_sample(cfg: SampleConfig, comm, log) -> dict[str, Any]:
    """Run the steps of ``cfg``; returns a summary (on rank 0)."""
    out = cfg.output_dir
    steps = cfg["run"]["steps"]
    summary: dict[str, Any] = {"output_dir": str(out), "steps": steps}
    frames = None
    if "sample" in steps:
        t0 = time.monotonic()
        frames = run_sampling(cfg, comm, log)
        if comm.rank == 0:
            _write_extxyz(out / SAMPLED_FILE, frames)
            summary["sampled"] = _counts(frames)
            log.info("sample: %d configurations (%s) in %.1f s on %d rank(s) -> %s", len(frames),
                     ", ".join(f"{k} {v}" for k, v in summary["sampled"].items()), time.monotonic() - t0, comm.size,
                     out / SAMPLED_FILE)
    elif comm.rank == 0:
        frames = read_extxyz(out / SAMPLED_FILE)
    selected = None
    if "select" in steps:
        frames = comm.bcast(frames, root=0)
        selected = run_selection(cfg, frames, comm, log)
        summary["selected"] = _counts(selected)
    if "dft" in steps and comm.rank == 0:
        from hpc_itc.core.dft import write_input_sets

        which = cfg["dft"]["configurations"]
        if which == "auto":
            which = "selected" if selected is not None else "all"
        if which == "selected" and selected is None:
            selected = read_extxyz(out / SELECTED_FILE)
        chosen = selected if which == "selected" else frames
        folders = write_input_sets(chosen, out / VASP_DIR, cfg["dft"])
        summary["vasp_folders"] = len(folders)
        log.info("dft: %d VASP input sets (%s configurations) -> %s", len(folders), which, out / VASP_DIR)
    if comm.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "sample_summary.json").write_text(json.dumps({**summary, "input": str(cfg.source), "config": cfg.data},
                                                            indent=1, default=str) + "\n")
    comm.barrier()
    return summary


def main_sample(path: str) -> int:
    """``python -m hpc_itc sample SAMPLE.toml``: 0 ok, 2 bad input (one line on stderr), 1 failure."""
    from hpc_itc import log as logmod
    from hpc_itc.parallel import world

    comm = world()
    try:
        cfg = load_sample_config(path)
    except InputError as exc:
        if comm.rank == 0:
            print(message_line(exc), file=sys.stderr)
        return 2
    logmod.setup(comm.rank, cfg["run"]["log_level"])
    log = logmod.get("sample")
    prepared = False
    try:
        error = None
        if comm.rank == 0:
            try:
                _prepare(cfg)
            except InputError as exc:
                error = (exc.key, exc.message)
        error = comm.bcast(error, root=0)
        if error is not None:
            raise InputError(*error)
        prepared = True
        summary = run_sample(cfg, comm, log)
        if comm.rank == 0:
            log.info("done: %s", json.dumps({k: v for k, v in summary.items() if k != "output_dir"}))
        return 0
    except InputError as exc:
        if not prepared or comm.size == 1:  # raised alike on every rank
            if comm.rank == 0:
                print(message_line(exc), file=sys.stderr)
            return 2
        print(message_line(exc), file=sys.stderr)  # one rank only: the others would wait forever
        comm.Abort(2)
        return 2
    except Exception as exc:  # noqa: BLE001
        print(f"error: rank {comm.rank}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if comm.size > 1:
            comm.Abort(1)
        raise
