"""The TOML input: schema, validation, normalisation and hash.

The schema below is the single source of truth: validation, defaults, the
documentation page (``docs/input.md``, written by ``python -m hpc_itc schema``)
and the input hash all come from it.  Every problem is reported as an
:class:`~hpc_itc.errors.InputError` naming the dotted key and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, Callable

import tomllib

from hpc_itc.errors import InputError

MATERIALS = ("cu", "diamond")
STAGES = ("structure", "relax", "force_constants", "transport", "ldos", "cohp", "committee")
# cohp needs a finished LOBSTER folder: add it to run.stages with cohp.lobster_dir; committee runs only when
# committee.models names members
DEFAULT_STAGES = tuple(st for st in STAGES if st != "cohp")
# the stages a stage needs finished first (run now or already in the file)
NEEDS: dict[str, tuple[str, ...]] = {st: STAGES[:k] for k, st in enumerate(STAGES[:5])}
NEEDS.update(cohp=(), committee=("structure", "relax", "force_constants", "transport"))
SHIPPED_COMMITTEE = "shipped"


def requested_stages(document: dict) -> list[str]:
    """The stages an input (a TOML document, possibly partial) asks for: run.stages (default: DEFAULT_STAGES),
    without committee when committee.models names no members."""
    stages = list(document.get("run", {}).get("stages", DEFAULT_STAGES))
    if not document.get("committee", {}).get("models"):
        stages = [st for st in stages if st != "committee"]
    return stages  # committee.models = ["shipped"]: the members in hpc_itc/models/committee/
DIRECTIONS = ("left_to_right", "right_to_left")
OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")

# What each stage's results depend on: tables, or single "table.key"s (only hashed keys count).  A
# finished stage is reused when these agree with the input and refused, naming the keys that differ,
# when they do not; a key outside them (a later stage's) leaves the stage usable.  "mlip" brings the
# model file's sha256 with it (driver.model_fingerprint).
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "structure": ("structure",),
    "relax": ("structure", "mlip", "relax"),
    "force_constants": ("structure", "mlip", "relax", "force_constants"),
    "transport": ("structure", "mlip", "relax", "force_constants", "transport"),
    "ldos": ("structure", "mlip", "relax", "force_constants", "transport.device_model", "ldos"),
    "cohp": (),  # reads only cohp.lobster_dir, which is checked by the stage itself (stages.cohp.is_current)
    # each member's model sha256 joins as "committee.member_sha256" (driver.committee_fingerprint)
    "committee": ("structure", "mlip", "relax", "force_constants", "transport", "committee"),
}
MAX_INPUT_BYTES = 1_000_000  # an hpc_itc input is a few kB; a larger file is a mistake (and 50 MB strings hang tomllib)
MAX_STRING_CHARS = 4096  # PATH_MAX on Linux
MAX_NAME_BYTES = 255  # NAME_MAX: one path component
CALCULATOR_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")  # mlip.calculator


@dataclass(frozen=True)
class Key:
    """One input key: its type, default, allowed values and documentation."""

    kind: str  # "int", "float", "bool", "str", "path", "int_list", "float_list", "str_list"
    default: Any
    doc: str
    unit: str = ""
    minimum: float | None = None  # inclusive unless exclusive_min
    exclusive_min: bool = False
    maximum: float | None = None
    choices: tuple | None = None
    length: int | None = None  # exact list length
    lengths: tuple[int, ...] | None = None  # allowed list lengths (instead of one exact length)
    min_length: int = 1
    unique: bool = True  # str_list: entries must not repeat (stage names, choices)
    required: bool = False
    hashed: bool = True  # part of the physics: changes the input hash
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def allowed(self) -> str:
        """Human description of what is allowed, for error messages and docs."""
        kinds = {
            "int": "an integer", "float": "a number", "bool": "true or false",
            "str": "a string", "path": "a file path (string)",
            "int_list": "a list of integers", "float_list": "a list of numbers",
            "str_list": "a list of strings",
            "table": "a table of keyword arguments",
        }
        parts = [kinds[self.kind]]
        if self.length:
            parts.append(f"of length {self.length}")
        if self.lengths:
            parts.append("of length " + " or ".join(str(n) for n in self.lengths))
        if self.choices:
            parts.append("one of " + ", ".join(repr(c) for c in self.choices))
        if self.minimum is not None:
            parts.append(("> " if self.exclusive_min else ">= ") + _fmt(self.minimum))
        if self.maximum is not None:
            parts.append("<= " + _fmt(self.maximum))
        return " ".join(parts)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


SCHEMA: dict[str, dict[str, Key]] = {
    "run": {
        "output": Key("path", "results.h5", "Results file (HDF5). Relative paths are relative to the input file's folder.", hashed=False),
        "stages": Key("str_list", list(DEFAULT_STAGES), "Stages to run, in pipeline order; a stage needs the ones before it (already in the file or run now), except cohp, which reads only cohp.lobster_dir, and committee, which needs structure to transport (it runs only when committee.models names members).", choices=STAGES, hashed=False),
        "log_level": Key("str", "info", "Logging verbosity.", choices=("debug", "info", "warning"), hashed=False),
        "progress_seconds": Key("float", 30.0, "Interval between progress lines on long stages.", unit="s", minimum=0.1, hashed=False),
        "allow_large": Key("bool", False, "Run an input whose resource estimate (slab atoms, memory per rank, force calls, incident modes; printed by validate) exceeds the limits of docs/resources.md. false: such an input is refused before any work.", hashed=False),
    },
    "structure": {
        "left_material": Key("str", "cu", "Material of the left lead and the left half of the device.", choices=MATERIALS),
        "right_material": Key("str", "diamond", "Material of the right lead and the right half of the device.", choices=MATERIALS),
        "n_cells_left": Key("int", 6, "(001) layers of primitive cells of the left material in the device (paper: 42).", minimum=1, maximum=10000),
        "n_cells_right": Key("int", 6, "(001) layers of primitive cells of the right material in the device (paper: 42).", minimum=1, maximum=10000),
        "buffer_cells": Key("int", 4, "Extra bulk layers outside the device on each side, held fixed in the relaxation so the device ends stay bulk-like.", minimum=1, maximum=1000),
        "inplane_repeat": Key("int_list", [1, 1], "In-plane repetition n x m of the square primitive (001) cell (side a/sqrt(2)).", length=2, minimum=1, maximum=100),
        "lattice_constant_left_A": Key("float", 0.0, "Cubic lattice constant of the left material; 0 takes the experimental value (Cu 3.615, diamond 3.567).", unit="Å", minimum=0.0),
        "lattice_constant_right_A": Key("float", 0.0, "Cubic lattice constant of the right material; 0 takes the experimental value.", unit="Å", minimum=0.0),
        "strained_side": Key("str", "left", "Which side is strained in-plane to the other's lattice.", choices=("left", "right")),
        "interface_spacing_A": Key("float", 0.0, "Distance along z between the last atomic plane of the left material and the first of the right (the starting gap; relax.relax_gap relaxes it). 0 = from covalent radii: the terminal atom's bond to its nearest atom across the interface is r_a + r_b (Cu-C 1.66, Cu-N 1.59 Å at the bonded registry; the vendored PBEsol MD: 1.52-1.58 bare); a junction of one material continues its bulk. Otherwise 0.5 to 5.", unit="Å", minimum=0.0, maximum=5.0),
        "interface_shift_frac": Key("float_list", [], "In-plane offset of the right material's first plane from the left's last layer origin, in units of the primitive in-plane vectors. [] = the bonded registry: metal atoms on the bulk sites of the terminal diamond atoms' missing neighbours (C or N on the Cu-Cu bridge, two Cu neighbours, as in the DFT configurations); a junction of one material continues its bulk. [0.5, 0.5] on Cu/diamond is the four-fold hollow, which does not bond.", lengths=(0, 2), min_length=0),
        "n_fraction": Key("float", 0.0, "Fraction x of the terminal diamond carbon plane replaced by N (0 bare, 1 full).", minimum=0.0, maximum=1.0),
        "n_seed": Key("int", 0, "Seed for the reproducible choice of N sites when 0 < x < 1.", minimum=0),
        "vacuum_A": Key("float", 12.0, "Vacuum added along z to the slab used for relaxation and device force constants.", unit="Å", minimum=6.0, maximum=200.0),
    },
    "mlip": {
        "model": Key("str", "default", "MACE model: 'default' (shipped with hpc_itc), a model file path (relative to the input file), or a MACE foundation-model name where downloads work.", required=False),
        "calculator": Key("str", "", "Instead of MACE: any ASE calculator, as 'package.module:factory' (a function or class returning it, e.g. 'ase.calculators.emt:EMT', 'sevenn.calculator:SevenNetCalculator'), called with [mlip.calculator_args]; '' = MACE from mlip.model. The hash covers the factory, its arguments, its package version and every file an argument names. Loading it runs the package's code: trust it like a model file."),
        "calculator_args": Key("table", {}, "Keyword arguments of mlip.calculator (a TOML table; strings naming an existing file are taken relative to the input file's folder). device and dtype (or default_dtype) are passed from mlip.device/mlip.dtype when the factory takes them and the table does not set them."),
        "device": Key("str", "cpu", "Torch device for force evaluations.", choices=("cpu", "cuda"), hashed=False),
        "dtype": Key("str", "float64", "Floating-point precision of force evaluations.", choices=("float64", "float32")),
        "num_threads": Key("int", 0, "Torch threads per rank; 0 lets hpc_itc choose (cores / ranks on the node).", minimum=0, hashed=False),
    },
    "relax": {
        "fmax_eV_A": Key("float", 0.02, "Force convergence threshold of the relaxation (paper: 0.02).", unit="eV/Å", minimum=0.0, exclusive_min=True),
        "max_steps": Key("int", 500, "Maximum optimizer steps.", minimum=1, maximum=1000000),
        "optimizer": Key("str", "FIRE", "ASE optimizer.", choices=OPTIMIZERS),
        "lattice": Key("str", "model", "'model': relax bulk lattice constants with the MLIP before building the interface; 'input': keep the input lattice constants.", choices=("model", "input")),
        "relax_gap": Key("bool", True, "Let the gap and the device length relax: the right buffer moves rigidly along z (the left buffer stays fixed), so device layers away from the interface settle at the lead's spacing. false: both buffers fixed (a change of the gap then strains the device layers).", ),
        "registry_search": Key("bool", False, "Before the relaxation, scan rigid in-plane shifts x gaps of a thin slab with the MLIP on a symmetry-reduced grid and start from the lowest-energy registry (stored in /relax/registry).", ),
        "registry_grid": Key("int", 8, "registry_search: shifts on an n x n grid of the primitive in-plane cell (reduced by the in-plane symmetry the two half-crystals share).", minimum=2, maximum=32),
        "registry_layers": Key("int", 3, "registry_search: layers of primitive cells per side in the thin slab that is scanned.", minimum=1, maximum=12),
        "rattle_A": Key("float", 0.0, "Standard deviation of a random displacement of the device atoms before the relaxation (breaks a symmetry that would hold the structure on a saddle); 0 = none. Seeded by rattle_seed and recorded in /relax.", unit="Å", minimum=0.0, maximum=0.2),
        "rattle_seed": Key("int", 0, "Seed of rattle_A.", minimum=0),
    },
    "force_constants": {
        "displacement_A": Key("float", 0.01, "Finite-displacement amplitude.", unit="Å", minimum=1e-4, maximum=0.1),
        "supercell_inplane": Key("int", 0, "In-plane supercell of the device's in-plane cell for the finite displacements; 0 picks the smallest one whose half-width exceeds cutoff_A.", minimum=0),
        "cutoff_A": Key("float", 4.5, "Radius beyond which force constants are dropped (then the acoustic sum rule is re-imposed); sets the principal-layer thickness.", unit="Å", minimum=1.0, maximum=15.0),
        "symprec": Key("float", 1e-5, "Symmetry tolerance for phonopy.", unit="Å", minimum=1e-8, maximum=0.1),
        "device_route": Key("str", "full", "'full': every symmetry-independent displacement of the slab; 'interface': only atoms within interface_radius_A of the interface plane, the other rows from the bulk lead force constants.", choices=("full", "interface")),
        "interface_radius_A": Key("float", 0.0, "device_route = 'interface': atoms within this z distance of the interface plane (and their symmetry images) are displaced; 0 = the MLIP's receptive field r_max x num_interactions (10 Å for the shipped model; 10 Å for a calculator of mlip.calculator, whose reach hpc_itc cannot read: set it).", unit="Å", minimum=0.0),
        "batch_size": Key("int", 1, "Displaced supercells per MACE model call; 1 = plain ASE calculator. For GPUs; slower on CPU.", minimum=1, hashed=False),
        "phonon_mesh": Key("int_list", [16, 16, 16], "Gamma-centred q mesh of the leads' phonon DOS (/force_constants/<lead>/phonons).", length=3, minimum=1, maximum=100),
    },
    "transport": {
        "q_mesh": Key("int_list", [8, 8, 8], "Uniform mesh of each incident lead's primitive Brillouin zone, N1 x N2 (in-plane) x N3 (paper: 20 20 20).", length=3, minimum=1, maximum=1000),
        "qz_refine": Key("int", 0, "Refinement m of q_z: incident modes on N1 x N2 x (m N3), the k_par columns unchanged. 1: the paper's mesh as given; 0: automatic, m such that the narrowest transmitting window (frequencies both leads carry) holds about 80 q_z values, which makes the two directions agree (see rectification). Applies to q_mesh_sweep too.", minimum=0, maximum=256),
        "directions": Key("str_list", list(DIRECTIONS), "Incidence directions: from the left lead, from the right lead.", choices=DIRECTIONS),
        "temperatures_K": Key("float_list", [300.0], "Temperatures for h(T).", unit="K", minimum=0.0, exclusive_min=True, maximum=10000.0),
        "frequency_bin_THz": Key("float", 0.25, "Bin width of the spectral transmittance and cumulative conductance grids.", unit="THz", minimum=0.001, maximum=10.0),
        "block_size": Key("int", 4, "In-plane k points per work block (the unit of distribution and checkpointing).", minimum=1, maximum=100000, hashed=False),
        "solver": Key("str", "rgf", "Device solve: 'rgf' (block-tridiagonal elimination over principal layers) or 'dense' (one dense LU, the baseline); same results to rounding.", choices=("rgf", "dense"), hashed=False),
        "use_symmetry": Key("bool", True, "Solve only the k_par columns irreducible under the in-plane point group shared by both leads and the device (found with spglib, checked on the force constants).", hashed=False),
        "symmetry_tol": Key("float", 1e-3, "Largest relative force-constant mismatch under which an operation still counts as a symmetry.", minimum=0.0, hashed=False),
        "path_points": Key("int", 100, "Points of the mode-resolved maps along Gamma-X-U|K-Gamma-W-K-Gamma-L of each lead (X along [001]); 0 disables.", minimum=0, maximum=100000),
        "caroli_samples": Key("int", 20, "(k_par, omega) points per direction where the Caroli formula Tr[Gamma_L G Gamma_R G^+] is compared with the sum of modal transmissions; 0 disables.", minimum=0, maximum=100000),
        "device_model": Key("str", "slab", "'slab': device force constants from the relaxed slab; 'left_lead': device built from the left lead's bulk force constants (validation of a junction of one material with itself: T = 1, h = radiation limit).", choices=("slab", "left_lead")),
        "q_mesh_sweep": Key("str_list", [], "Extra meshes for a convergence check, e.g. [\"10x10x10\", \"16x16x16\"]: h(T) of both directions stored under /transport/sweep/.", min_length=0),
    },
    "ldos": {
        "q_mesh": Key("int_list", [6, 6, 6], "Uniform mesh of each lead's primitive zone whose incident modes (both leads) build the LDOS (paper Eq. 7).", length=3, minimum=1, maximum=200),
        "broadening_THz": Key("float", 0.3, "Standard deviation of the Gaussian replacing the delta function.", unit="THz", minimum=0.001, maximum=10.0),
        "frequency_step_THz": Key("float", 0.02, "Spacing of the LDOS frequency grid.", unit="THz", minimum=0.0001, maximum=10.0),
        "left_layer": Key("int", -1, "Layer (layer_from_interface, negative = left material) taken as D1 of the overlap factor (paper: first Cu layer, -1).", maximum=-1),
        "right_layer": Key("int", 1, "Layer taken as D2 of the overlap factor (paper: first diamond layer, +1: C(1)+C(2) or N+C).", minimum=1),
    },
    "cohp": {
        "lobster_dir": Key("str", "", "Finished VASP+LOBSTER folder (ICOHPLIST.lobster, COHPCAR.lobster, POSCAR.lobster.vasp/CONTCAR/POSCAR) of an interface slab, a one-material slab or a bulk crystal, relative to the input file's folder; needed when run.stages has cohp. Inputs for it: python -m hpc_itc cohp-inputs.", hashed=False),
        "min_dz_A": Key("float", 0.3, "Interface bonds whose ends differ along the stacking axis by no more than this are in-plane and not counted.", unit="Å", minimum=0.0, hashed=False),
        "plane_tol_A": Key("float", 0.4, "Atoms closer than this along the stacking axis form one atomic plane.", unit="Å", minimum=0.01, maximum=0.85, hashed=False),
        "layer_thickness_A": Key("float", 1.5, "The first layer of each side: its plane nearest the interface and its planes within this distance of it (paper: one Cu(001) plane; C(1)+C(2) of diamond(001)).", unit="Å", minimum=0.0, maximum=10.0, hashed=False),
    },
    "committee": {
        "models": Key("str_list", [], "Error bars from model uncertainty: two or more MACE model files (relative to the input file's folder), or [\"shipped\"] for the three members in hpc_itc/models/committee/. The committee stage runs force_constants and transport once per member on the relaxed interface of mlip.model (members in parallel over the ranks; each member's results in <output>.committee/member_<k>.h5) and stores h per member, mean and spread in /committee.", min_length=0),
    },
}

DEFAULT_LATTICE_A = {"cu": 3.615, "diamond": 3.567}
ELEMENTS = {"cu": ("Cu",), "diamond": ("C",)}


def parse_mesh_list(dotted: str, items) -> tuple[tuple[int, int, int], ...]:
    """Meshes written "N1xN2xN3" as (N1, N2, N3) tuples, repeats dropped (order kept)."""
    allowed = 'a list of meshes, each "N1xN2xN3" with positive integers, e.g. ["10x10x10", "16x16x16"]'
    out: list[tuple[int, int, int]] = []
    for item in items:
        try:
            mesh = tuple(int(x) for x in item.lower().split("x"))
        except (TypeError, ValueError, AttributeError):
            raise InputError(dotted, f"got {item!r}; allowed: {allowed}") from None
        if len(mesh) != 3 or min(mesh) < 1 or max(mesh) > 1000:
            raise InputError(dotted, f"got {item!r}; allowed: {allowed} (at most 1000 per axis)")
        if mesh not in out:
            out.append(mesh)
    return tuple(out)


# values whose typed form differs from the checked TOML value (the TOML value is what the hash covers)
_TYPED = {("transport", "q_mesh_sweep"): parse_mesh_list}
_PY_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "path": str,
             "int_list": tuple, "float_list": tuple, "str_list": tuple, "table": dict}


def _settings_class(section: str, keys: dict[str, Key]) -> type:
    """A frozen dataclass with one field per key of ``[section]`` (no defaults: only :func:`validate` makes them)."""
    name = "".join(w.capitalize() for w in section.split("_")) + "Settings"
    cls = make_dataclass(name, [(k, _PY_TYPES[spec.kind]) for k, spec in keys.items()], frozen=True)
    cls.__module__ = __name__
    lines = [f"The validated ``[{section}]`` table (lists as tuples). Fields, from :data:`SCHEMA`:", ""]
    lines += [f"* ``{k}`` ({spec.unit or spec.kind}): {spec.doc}" for k, spec in keys.items()]
    cls.__doc__ = "\n".join(lines)
    return cls


SETTINGS_CLASSES: dict[str, type] = {section: _settings_class(section, keys) for section, keys in SCHEMA.items()}
RunSettings = SETTINGS_CLASSES["run"]
StructureSettings = SETTINGS_CLASSES["structure"]
MlipSettings = SETTINGS_CLASSES["mlip"]
RelaxSettings = SETTINGS_CLASSES["relax"]
ForceConstantsSettings = SETTINGS_CLASSES["force_constants"]
TransportSettings = SETTINGS_CLASSES["transport"]
LdosSettings = SETTINGS_CLASSES["ldos"]
CohpSettings = SETTINGS_CLASSES["cohp"]
CommitteeSettings = SETTINGS_CLASSES["committee"]


def _typed(section: str, values: dict[str, Any]) -> Any:
    out = {}
    for name, value in values.items():
        convert = _TYPED.get((section, name))
        if convert is not None:
            value = convert(f"{section}.{name}", value)
        elif isinstance(value, list):
            value = tuple(value)
        out[name] = value
    return SETTINGS_CLASSES[section](**out)


@dataclass(frozen=True)
class RunConfig:
    """The validated input: one frozen settings object per table, every default filled in.

    Made only by :func:`validate` (or :func:`load`); stages, tests and benchmarks all take it.
    ``document`` is the normalised TOML document it came from: the input hash and the copy
    stored in the results file are computed from it.
    """

    run: RunSettings
    structure: StructureSettings
    mlip: MlipSettings
    relax: RelaxSettings
    force_constants: ForceConstantsSettings
    transport: TransportSettings
    ldos: LdosSettings
    cohp: CohpSettings
    committee: CommitteeSettings
    source: Path  # the input file
    base_dir: Path  # folder that relative paths are relative to
    document: dict[str, dict[str, Any]] = field(repr=False, compare=False)
    given_tables: frozenset[str] = field(default=frozenset(), repr=False, compare=False)  # tables the input file sets

    @property
    def output_path(self) -> Path:
        return resolve_path(self.base_dir, self.run.output).resolve()

    @property
    def model(self) -> str:
        """Model spec for :mod:`hpc_itc.core.mlip`: 'default', a foundation name or an absolute path."""
        spec = self.mlip.model
        candidate = resolve_path(self.base_dir, spec)
        return str(candidate) if candidate.exists() else spec

    def hashed_view(self) -> dict[str, Any]:
        """The part of the input that determines the physics (what the hash covers)."""
        view: dict[str, Any] = {}
        for section, keys in SCHEMA.items():
            sub = {k: self.document[section][k] for k, spec in keys.items() if spec.hashed}
            if sub:
                view[section] = sub
        return view

    def sha256(self, extra: dict[str, Any] | None = None) -> str:
        """Hash of the normalised physics input (plus e.g. the model file's hash)."""
        payload = self.hashed_view()
        if extra:
            payload = {**payload, "_extra": extra}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def stage_inputs(self, stage: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The hashed keys stage ``stage`` depends on (:data:`STAGE_INPUTS`), as {"table.key": value};
        ``extra`` (the model fingerprint) joins them as "mlip.<name>" when the stage depends on [mlip]."""
        out: dict[str, Any] = {}
        for selector in STAGE_INPUTS[stage]:
            section, _, only = selector.partition(".")
            for name, spec in SCHEMA[section].items():
                if spec.hashed and (not only or name == only):
                    out[f"{section}.{name}"] = self.document[section][name]
            if section == "mlip" and extra:
                out.update({f"mlip.{k}": v for k, v in extra.items()})
        return out

    def stage_sha256(self, stage: str, extra: dict[str, Any] | None = None) -> str:
        """Hash of :meth:`stage_inputs` (stored on the stage group and in its checkpoints)."""
        return inputs_sha256(self.stage_inputs(stage, extra))

    def to_toml(self) -> str:
        """The normalised input as TOML text (stored in the results file)."""
        import tomli_w

        return tomli_w.dumps(self.document)

    def lattice_constant(self, side: str) -> float:
        """Cubic lattice constant (Å) of the ``side`` ("left"/"right") material: the input's, or experiment's for 0."""
        value = getattr(self.structure, f"lattice_constant_{side}_A")
        return value if value > 0 else DEFAULT_LATTICE_A[getattr(self.structure, f"{side}_material")]


def inputs_sha256(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _schema_default(dotted: str) -> Any:
    section, _, name = dotted.partition(".")
    spec = SCHEMA.get(section, {}).get(name)
    return "<absent>" if spec is None else spec.default


def whole_input_sha256(document: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
    """:meth:`RunConfig.sha256` of a stored (possibly older) normalised document: its hashed keys as stored.

    A file written before stage hashes records only this hash; recomputing it from the file's own
    ``input_toml`` (and this run's model fingerprint) proves that the document is the one it was made
    from, and with the same model, so its keys can be compared one by one."""
    view: dict[str, Any] = {}
    for section, keys in SCHEMA.items():
        given = document.get(section, {}) if isinstance(document.get(section), dict) else {}
        sub = {k: v for k, v in given.items() if k in keys and keys[k].hashed}
        if sub:
            view[section] = sub
    payload = {**view, "_extra": extra} if extra else view
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def differing_keys(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """"key (file X, input Y)" for every key whose value differs between two :meth:`RunConfig.stage_inputs`.

    A key the stored record lacks (the file predates the key) counts as its schema default: a newer
    hpc_itc's key at its default value does not invalidate a stage an older one wrote."""
    out = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key, _schema_default(key)), current.get(key, "<absent>")
        if a != b:
            short = lambda v: (str(v)[:37] + "...") if len(str(v)) > 40 else str(v)  # noqa: E731 - sha256s are long
            out.append(f"{key} (file {short(a)}, input {short(b)})")
    return out


def resolve_path(base: Path, value: str) -> Path:
    """``value`` as a path; relative paths are relative to ``base`` (the input file's folder)."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def read_toml(path: str | Path, what: str = "a TOML input file") -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or malformed file is a one-line InputError."""
    path = Path(path)
    try:
        if not path.is_file():
            raise InputError("input", f"file '{str(path)[:200]}' not found; give the path of {what}")
        size = path.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise InputError("input", f"'{path}' is {size / 1e6:.1f} MB; allowed: {what} of at most {MAX_INPUT_BYTES // 1000} kB")
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError("input", f"'{path}' is not valid TOML ({exc})") from None
    except RecursionError:
        raise InputError("input", f"'{path}' nests arrays or tables too deeply for TOML to read; allowed: {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("input", f"cannot read '{str(path)[:200]}' ({exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc})") from None


def load(path: str | Path) -> RunConfig:
    """Read and validate a TOML input file; raise InputError on any problem."""
    path = Path(path)
    raw = read_toml(path)
    return validate(raw, source=path.resolve(), base_dir=path.resolve().parent)


def validate(raw: dict[str, Any], source: Path | None = None, base_dir: Path | None = None) -> RunConfig:
    """Check ``raw`` (a parsed TOML document) against the schema and fill defaults."""
    data = check_tables(raw, SCHEMA)
    base = base_dir or Path.cwd()
    _cross_checks(data, base)
    tables = {section: _typed(section, values) for section, values in data.items()}
    given = frozenset(k for k in raw if isinstance(raw.get(k), dict)) if isinstance(raw, dict) else frozenset()
    return RunConfig(**tables, source=source or Path("<memory>"), base_dir=base, document=data, given_tables=given)


def check_tables(raw: Any, schema: dict[str, dict[str, Key]], sub_tables: dict[str, set[str]] | None = None) -> dict[str, dict[str, Any]]:
    """Tables and keys of ``raw`` checked against ``schema``, defaults filled in.

    Shared by every TOML input of hpc_itc (run, train, sample).  ``sub_tables``
    names nested tables a section may hold (e.g. {"dft": {"incar"}}); they are
    passed through unchecked for the caller to check.
    """
    if not isinstance(raw, dict):
        raise InputError("input", "the input must be a TOML document of tables")
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise InputError(unknown[0], f"unknown table; allowed tables are {', '.join(schema)}")
    sub_tables = sub_tables or {}
    data: dict[str, dict[str, Any]] = {}
    for section, keys in schema.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise InputError(section, f"must be a table ([{section}])")
        nested = sub_tables.get(section, set())
        extra = sorted(set(given) - set(keys) - nested)
        if extra:
            allowed = ", ".join([*keys, *sorted(nested)])
            raise InputError(f"{section}.{extra[0]}", f"unknown key; allowed keys in [{section}] are {allowed}")
        data[section] = {}
        for name, spec in keys.items():
            dotted = f"{section}.{name}"
            if name in given:
                data[section][name] = _check_value(dotted, spec, given[name])
            elif spec.required:
                raise InputError(dotted, f"is required: {spec.allowed()}")
            else:
                data[section][name] = copy.deepcopy(spec.default)
        for name in nested:
            if name in given:
                data[section][name] = given[name]
    return data


def _check_value(dotted: str, spec: Key, value: Any) -> Any:
    def bad() -> InputError:
        return InputError(dotted, f"got {value!r}; allowed: {spec.allowed()}")

    if spec.kind in ("int", "float", "bool", "str", "path"):
        return _check_scalar(dotted, spec, spec.kind, value, bad)
    if spec.kind == "table":
        return _check_table_value(dotted, value)
    # lists
    if not isinstance(value, list):
        raise bad()
    if spec.length is not None and len(value) != spec.length:
        raise bad()
    if spec.lengths is not None and len(value) not in spec.lengths:
        raise bad()
    if len(value) < spec.min_length:
        raise bad()
    item_kind = spec.kind.split("_")[0]
    items = [_check_scalar(dotted, spec, item_kind, v, bad) for v in value]
    if spec.kind == "str_list" and spec.unique and len(set(items)) != len(items):
        raise InputError(dotted, f"got {value!r}; entries must not repeat")
    return items


def _check_table_value(dotted: str, value: Any) -> dict[str, Any]:
    """A table of keyword arguments: strings, numbers, booleans, lists and tables of them (what JSON holds)."""
    if not isinstance(value, dict):
        raise InputError(dotted, f"got {str(value)[:40]!r}; allowed: a table [{dotted}] of keyword arguments")

    def check(path: str, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): check(f"{path}.{k}", x) for k, x in v.items()}
        if isinstance(v, list):
            return [check(f"{path}[{i}]", x) for i, x in enumerate(v)]
        if isinstance(v, float) and not math.isfinite(v):
            raise InputError(path, f"got {v}; allowed: a finite number")
        if isinstance(v, str) and (len(v) > MAX_STRING_CHARS or not v.isprintable()):
            raise InputError(path, f"allowed: one line of printable text, at most {MAX_STRING_CHARS} characters")
        if not isinstance(v, (str, int, float, bool)):
            raise InputError(path, f"got a {type(v).__name__}; allowed: strings, numbers, true/false, lists and tables")
        return v

    return check(dotted, value)


def _check_scalar(dotted: str, spec: Key, kind: str, value: Any, bad: Callable[[], InputError]) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind in ("str", "path"):
        if not isinstance(value, str) or not value.strip():
            raise bad()
        if len(value) > MAX_STRING_CHARS or not value.isprintable():
            raise InputError(dotted, f"got a string of {len(value)} characters{'' if value.isprintable() else ' with control characters (newline, tab, ...)'}; "
                                     f"allowed: {spec.allowed()} of one line, at most {MAX_STRING_CHARS} characters")
        if spec.choices and value not in spec.choices:
            raise bad()
        if kind == "path":
            check_path_name(dotted, value)
        return value
    if isinstance(value, bool):
        raise bad()
    if kind == "int":
        if not isinstance(value, int):
            raise bad()
    elif kind == "float":
        if not isinstance(value, (int, float)):
            raise bad()
        value = float(value)
        if not math.isfinite(value):
            raise bad()
    if spec.minimum is not None:
        if value < spec.minimum or (spec.exclusive_min and value == spec.minimum):
            raise bad()
    if spec.maximum is not None and value > spec.maximum:
        raise bad()
    return value


def check_path_name(dotted: str, value: str) -> None:
    """InputError when a path could not be a file name here (a component over NAME_MAX bytes)."""
    longest = max((len(part.encode()) for part in Path(value).parts), default=0)
    if longest > MAX_NAME_BYTES:
        raise InputError(dotted, f"has a path component of {longest} bytes; allowed: file and folder names of at most {MAX_NAME_BYTES} bytes")


def _cross_checks(data: dict[str, dict[str, Any]], base: Path) -> None:
    """Checks that involve more than one key."""
    s = data["structure"]
    x = s["n_fraction"]
    if x > 0 and "diamond" not in (s["left_material"], s["right_material"]):
        raise InputError("structure.n_fraction", "N termination needs a diamond side; allowed: 0 when neither side is diamond")
    if x > 0 and s["left_material"] == s["right_material"]:
        raise InputError("structure.n_fraction", "N termination needs a metal/diamond interface; allowed: 0 for a junction of one material with itself")
    if 0 < s["interface_spacing_A"] < 0.5:
        raise InputError("structure.interface_spacing_A", f"got {s['interface_spacing_A']}; allowed: 0 (from covalent radii) or 0.5 to 5")
    n_sites = s["inplane_repeat"][0] * s["inplane_repeat"][1]
    if 0 < x < 1:
        count = x * n_sites
        if abs(count - round(count)) > 1e-9:
            allowed = ", ".join(f"{k / n_sites:g}" for k in range(n_sites + 1))
            raise InputError("structure.n_fraction", f"x * n * m must be a whole number of sites; with inplane_repeat {s['inplane_repeat']} allowed x: {allowed}")
    if -data["ldos"]["left_layer"] > s["n_cells_left"] or data["ldos"]["right_layer"] > s["n_cells_right"]:
        raise InputError("ldos.left_layer" if -data["ldos"]["left_layer"] > s["n_cells_left"] else "ldos.right_layer",
                         f"must name a device layer; allowed: -{s['n_cells_left']}..-1 (left) and 1..{s['n_cells_right']} (right)")
    t = data["transport"]
    if t["device_model"] == "left_lead" and (s["left_material"] != s["right_material"] or x > 0):
        raise InputError("transport.device_model", "'left_lead' builds the device from the left lead: allowed only when left_material == right_material and n_fraction = 0")
    parse_mesh_list("transport.q_mesh_sweep", t["q_mesh_sweep"])
    stages = data["run"]["stages"]
    if "cohp" in stages and not data["cohp"]["lobster_dir"]:
        raise InputError("cohp.lobster_dir", "run.stages has cohp: give the folder of a finished VASP+LOBSTER run (or drop cohp from run.stages)")
    order = [st for st in STAGES if st in stages]
    if order != stages:
        raise InputError("run.stages", f"got {stages!r}; list stages in pipeline order: {', '.join(STAGES)}")
    model = data["mlip"]["model"]
    check_path_name("mlip.model", model)
    calculator = data["mlip"]["calculator"]
    if calculator:
        if not CALCULATOR_SPEC.match(calculator):
            raise InputError("mlip.calculator", f"got {calculator!r}; allowed: 'package.module:factory' (e.g. 'ase.calculators.emt:EMT')")
        if model != "default":
            raise InputError("mlip.model", "mlip.calculator replaces the MACE model; allowed: leave mlip.model unset and name the "
                                           "calculator's model file in [mlip.calculator_args]")
    elif data["mlip"]["calculator_args"]:
        raise InputError("mlip.calculator_args", "allowed only with mlip.calculator (the MACE route takes mlip.model)")
    if data["cohp"]["lobster_dir"]:
        check_path_name("cohp.lobster_dir", data["cohp"]["lobster_dir"])
    looks_like_path = model.endswith((".model", ".pt", ".pth")) or "/" in model or "\\" in model
    if looks_like_path and not resolve_path(base, model).is_file():
        raise InputError("mlip.model", f"model file '{model}' not found (relative paths are relative to the input file's folder); allowed: 'default', an existing MACE model file, or a foundation-model name")
    members = data["committee"]["models"]
    if members:
        if members != [SHIPPED_COMMITTEE]:
            if len(members) < 2 or SHIPPED_COMMITTEE in members:
                raise InputError("committee.models", f"got {members!r}; allowed: two or more model files, or [\"shipped\"]")
            for member in members:
                check_path_name("committee.models", member)
                if not resolve_path(base, member).is_file():
                    raise InputError("committee.models", f"model file '{member}' not found (relative paths are relative to the input file's folder); allowed: existing MACE model files, or [\"shipped\"]")
        if data["mlip"]["calculator"]:
            raise InputError("committee.models", "a committee of MACE models needs the MACE route; allowed: [] with mlip.calculator")
        if data["transport"]["device_model"] != "slab":
            raise InputError("committee.models", "the committee varies the interface's force constants; allowed: [] with transport.device_model = 'left_lead'")
    out = resolve_path(base, data["run"]["output"])
    if out.exists() and out.is_dir():
        raise InputError("run.output", f"'{out}' is a folder; give a file name such as results.h5")
    if not out.suffix == ".h5":
        raise InputError("run.output", f"got '{data['run']['output']}'; allowed: a file name ending in .h5")


def schema_markdown() -> str:
    """Documentation of every key (type, default, unit, allowed values)."""
    lines = [
        "# Input file reference",
        "",
        "hpc_itc reads one TOML file (`python -m hpc_itc INPUT.toml`). Every key is optional",
        "and has the default shown. Unknown keys and tables are errors. Keys marked",
        "*not hashed* do not change the physics: a results file can be resumed after",
        "changing them. Any other key belongs to the stages that depend on it (structure <",
        "relax (+ [mlip], the model file) < force_constants < transport; ldos takes",
        "transport.device_model): a finished stage is reused while its keys agree with the",
        "input, and a file whose finished stage was made with other values is refused,",
        "naming the keys (docs/results.md).",
        "This page is generated from `hpc_itc/config.py` by `python -m hpc_itc schema`.",
        "",
    ]
    for section, keys in SCHEMA.items():
        lines += [f"## [{section}]", "", "| key | type / allowed | default | unit | meaning |", "| --- | --- | --- | --- | --- |"]
        for name, spec in keys.items():
            default = json.dumps(spec.default)
            note = spec.doc + ("" if spec.hashed else " *(not hashed)*")
            lines.append(f"| `{name}` | {spec.allowed()} | `{default}` | {spec.unit} | {note} |")
        lines.append("")
    return "\n".join(lines)
