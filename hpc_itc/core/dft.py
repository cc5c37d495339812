"""VASP single points for the training data: input sets out, labelled extxyz back in.

Writing (:func:`write_input_sets`, through pymatgen): one folder per configuration
with INCAR, KPOINTS (explicit mesh), POSCAR, ``POTCAR.spec`` (the POTCAR symbols,
one per line in POSCAR species order; hpc_itc has no pseudopotential library, so
put the matching POTCAR there yourself, e.g. ``cat $PSP/PBE_54/{Cu_pv,C,N}/POTCAR``)
and ``hpc_itc.json`` (config_type and provenance, read back by the collector).
Defaults are the paper's DFT settings (:data:`PAPER_INCAR`); ``[dft.incar]``
overrides or adds any tag.

Reading (:func:`read_vasp_folder`, :func:`main_collect`): ``vasprun.xml`` through
pymatgen's Vasprun; the last ionic step becomes one extxyz frame with

* ``REF_energy`` (eV): the sigma -> 0 energy ``e_0_energy`` (pymatgen's
  ``final_energy``, what atomate2/autoplex label with), computed as ASE does:
  e_fr(step) - PSTRESS*V + (e_0 - e_fr)(last SCF step), so the VASP e_0 bug and a
  PSTRESS enthalpy term are both handled; ``REF_free_energy`` keeps e_fr.
* ``REF_forces`` (eV/Å): as VASP prints them.
* ``REF_stress`` (eV/Å^3, 9 components, full 3x3 row-major): ASE's sign convention,
  positive = tensile, sigma = (1/V) dE/d(strain).  VASP prints the stress in kBar
  with the opposite sign (positive = the cell wants to expand, a pressure), so
  ``REF_stress = -0.1 GPa * stress_kBar = -stress_kBar / 1602.1766``.  This is the
  convention of ``hpc_itc/data/cunc_pbesol_crystal.extxyz`` (its stress rises with
  volume: compressed cells are negative) and the one MACE training reads.

A folder that did not finish (no vasprun.xml, a truncated or malformed one, an
electronic loop that hit NELM) is an :class:`~hpc_itc.errors.InvalidInput` naming the folder.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from ase.units import GPa as _GPa

from hpc_itc.errors import InvalidInput, one_line

# The paper's DFT settings (section 3.1): PAW-PBEsol, 600 eV, Gaussian smearing 0.05 eV,
# SCF to 1e-6 eV, k spacing <= 0.4 1/Å (KPOINTS), single points with stress.
PAPER_INCAR: dict[str, Any] = {
    "GGA": "PS",  # PBEsol with PBE PAW potentials
    "ENCUT": 600,
    "PREC": "Accurate",
    "ISMEAR": 0,
    "SIGMA": 0.05,
    "EDIFF": 1e-6,
    "NELM": 200,
    "ALGO": "Normal",
    "LREAL": False,
    "LASPH": True,
    "ISPIN": 1,
    "NSW": 0,
    "IBRION": -1,
    "ISIF": 2,  # stress tensor computed, ions and cell fixed
    "LWAVE": False,
    "LCHARG": False,
}
DEFAULT_POTCARS = {"Cu": "Cu_pv", "C": "C", "N": "N"}
KBAR_TO_EV_A3 = 0.1 * _GPa  # 1 kBar = 0.1 GPa = 1/1602.18 eV/Å^3 (ASE units)
META_FILE = "hpc_itc.json"


# ----------------------------------------------------------------------------- writing

def kpoint_mesh(cell: np.ndarray, spacing_per_A: float) -> tuple[int, int, int]:
    """N_i = max(1, ceil(|b_i| / spacing)), |b_i| = 2 pi / d_i (VASP's KSPACING rule)."""
    rec = 2.0 * np.pi * np.linalg.inv(np.asarray(cell, dtype=float)).T
    return tuple(max(1, int(math.ceil(np.linalg.norm(b) / spacing_per_A - 1e-9))) for b in rec)


def species_order(symbols: list[str]) -> list[int]:
    """Atom indices grouped by element in order of first appearance (stable), for POSCAR/POTCAR."""
    first: dict[str, int] = {}
    for s in symbols:
        first.setdefault(s, len(first))
    return sorted(range(len(symbols)), key=lambda i: (first[symbols[i]], i))


def _json_safe(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return str(value)


def write_vasp_inputs(atoms, folder: Path, *, incar: dict[str, Any] | None = None, kspacing_per_A: float = 0.4,
                      gamma_centred: bool = True, potcar_symbols: dict[str, str] | None = None,
                      potcar_functional: str = "PBE_54", meta: dict[str, Any] | None = None) -> Path:
    """INCAR, KPOINTS, POSCAR, POTCAR.spec and hpc_itc.json for one configuration."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    order = species_order(atoms.get_chemical_symbols())
    ordered = atoms[order]
    ordered.calc = None
    ordered.info = {}
    structure = AseAtomsAdaptor.get_structure(ordered)
    params = {**PAPER_INCAR, **(incar or {})}
    Incar(params).write_file(folder / "INCAR")
    mesh = kpoint_mesh(ordered.get_cell(), kspacing_per_A)
    comment = f"k spacing <= {kspacing_per_A} 1/A (2 pi included)"
    kp = Kpoints.gamma_automatic(mesh, comment=comment) if gamma_centred else Kpoints.monkhorst_automatic(mesh, comment=comment)
    kp.write_file(folder / "KPOINTS")
    info = dict(atoms.info)
    label = str(info.get("config_type", "hpc_itc"))
    Poscar(structure, comment=f"{label} {info.get('sample_id', '')}".strip()).write_file(folder / "POSCAR")
    potcars = {**DEFAULT_POTCARS, **(potcar_symbols or {})}
    elements = list(dict.fromkeys(ordered.get_chemical_symbols()))
    symbols = [potcars.get(e, e) for e in elements]
    (folder / "POTCAR.spec").write_text("\n".join(symbols) + "\n")
    record = {
        "config_type": label,
        "info": {k: _json_safe(v) for k, v in info.items()},
        "n_atoms": len(atoms),
        "poscar_order": order,  # POSCAR atom k is atom poscar_order[k] of the sampled configuration
        "potcar_symbols": symbols,
        "potcar_functional": potcar_functional,
        "note": "no POTCAR written: concatenate the POTCARs named in POTCAR.spec (in that order) from your "
                f"{potcar_functional} set into POTCAR",
        "kpoint_mesh": list(mesh),
        "kspacing_per_A": kspacing_per_A,
        **({"meta": _json_safe(meta)} if meta else {}),
    }
    (folder / META_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return folder


def write_input_sets(frames: Iterable, root: Path, settings: dict[str, Any]) -> list[Path]:
    """One folder ``NNNNN_<config_type>`` per configuration under ``root`` ([dft] settings)."""
    root = Path(root)
    folders = []
    for n, atoms in enumerate(frames):
        idx = int(atoms.info.get("sample_index", n))
        label = str(atoms.info.get("config_type", "config"))
        folders.append(write_vasp_inputs(
            atoms, root / f"{idx:05d}_{label}", incar=settings.get("incar"),
            kspacing_per_A=settings.get("kspacing_per_A", 0.4), gamma_centred=settings.get("gamma_centred", True),
            potcar_symbols=settings.get("potcar_symbols"), potcar_functional=settings.get("potcar_functional", "PBE_54"),
        ))
    return folders


# ----------------------------------------------------------------------------- reading

def read_vasp_folder(folder: str | Path, config_type: str | None = None):
    """The last ionic step of a finished VASP run as labelled ASE Atoms (see module doc for units and signs)."""
    from ase import Atoms

    folder = Path(folder)
    name = str(folder)
    if not folder.is_dir():
        raise InvalidInput(name, "not a folder; give VASP run folders")
    xml = folder / "vasprun.xml"
    if not xml.is_file():
        hint = " (OUTCAR present: VASP was killed before writing vasprun.xml?)" if (folder / "OUTCAR").is_file() else ""
        raise InvalidInput(name, f"no vasprun.xml{hint}; the run has not finished, rerun VASP there")
    vr = _parse_vasprun(xml, name)
    if not vr.ionic_steps:
        raise InvalidInput(name, "vasprun.xml holds no finished ionic step; rerun VASP there")
    step = vr.ionic_steps[-1]
    nelm = vr.parameters.get("NELM", 60)
    if not step.get("electronic_steps"):
        raise InvalidInput(name, "vasprun.xml has no electronic steps in its last ionic step; rerun VASP there")
    if not vr.converged_electronic:
        raise InvalidInput(name, f"electronic loop not converged (hit NELM = {nelm} steps, EDIFF = {vr.parameters.get('EDIFF', '?')}); raise NELM or change ALGO and rerun")
    if "forces" not in step:
        raise InvalidInput(name, "vasprun.xml has no forces; rerun with forces (any IBRION/NSW single point writes them)")
    structure = step["structure"] or vr.final_structure
    atoms = Atoms([site.specie.symbol for site in structure], positions=structure.cart_coords,
                  cell=structure.lattice.matrix, pbc=True)
    volume = float(abs(np.linalg.det(atoms.get_cell())))
    pstress_kbar = float(vr.parameters.get("PSTRESS", 0.0) or 0.0)
    last_scf = step["electronic_steps"][-1]
    e_fr = float(step["e_fr_energy"]) - pstress_kbar * KBAR_TO_EV_A3 * volume
    e_0 = e_fr + (float(last_scf["e_0_energy"]) - float(last_scf["e_fr_energy"]))
    forces = np.asarray(step["forces"], dtype=float)
    if forces.shape != (len(atoms), 3):
        raise InvalidInput(name, f"vasprun.xml forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
    atoms.info["REF_energy"] = e_0
    atoms.info["REF_free_energy"] = e_fr
    atoms.new_array("REF_forces", forces)
    if "stress" in step and step["stress"] is not None:
        stress_kbar = np.asarray(step["stress"], dtype=float).reshape(3, 3)
        atoms.info["REF_stress"] = (-stress_kbar * KBAR_TO_EV_A3).reshape(9)
    meta_path = folder / META_FILE
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInput(name, f"{META_FILE} is unreadable ({one_line(exc)}); delete it or fix it") from None
        if meta.get("n_atoms") not in (None, len(atoms)):
            raise InvalidInput(name, f"vasprun.xml has {len(atoms)} atoms but {META_FILE} says {meta['n_atoms']}: folder mixed up?")
        for k, v in meta.get("info", {}).items():
            if k not in ("config_type",) and isinstance(v, (str, int, float, bool)):
                atoms.info.setdefault(k, v)
    atoms.info["config_type"] = config_type or meta.get("config_type") or "vasp"
    atoms.info["vasp_folder"] = name
    return atoms


def _parse_vasprun(xml: Path, name: str):
    from pymatgen.io.vasp.outputs import Vasprun

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Vasprun(str(xml), parse_dos=False, parse_eigen=False, parse_projected_eigen=False,
                           parse_potcar_file=False, exception_on_bad_xml=True)
    except Exception as exc:  # lxml XMLSyntaxError for a cut file, ParseError, KeyError for missing sections
        kind = type(exc).__name__
        if "Syntax" in kind or "Parse" in kind:
            where = f" at line {exc.lineno}" if getattr(exc, "lineno", None) else ""
            raise InvalidInput(name, f"vasprun.xml is truncated or malformed ({kind}{where}): VASP did not finish (killed, out of time, still running); rerun it") from None
        raise InvalidInput(name, f"vasprun.xml could not be read ({kind}: {one_line(exc, 80)}); is it a complete VASP run?") from None


def expand_folders(folders: Iterable[str | Path]) -> list[Path]:
    """The folders themselves, or, for a folder holding run folders (no INCAR or vasprun.xml of its own), its
    subfolders that have an INCAR, vasprun.xml or hpc_itc.json, sorted by name."""
    out: list[Path] = []
    for f in folders:
        p = Path(f)
        own = any((p / n).is_file() for n in ("vasprun.xml", "INCAR", "OUTCAR", META_FILE))
        if p.is_dir() and not own:
            subs = sorted(q for q in p.iterdir() if q.is_dir() and any((q / n).is_file() for n in ("vasprun.xml", "INCAR", META_FILE)))
            if subs:
                out.extend(subs)
                continue
        out.append(p)
    return out


def collect(folders: Iterable[str | Path], out: str | Path, *, skip_unfinished: bool = False,
            config_type: str | None = None) -> tuple[list, list[tuple[str, str]]]:
    """Read the folders and write ``out`` (extxyz). Returns (frames, skipped [(folder, reason)])."""
    from ase.io import write

    out = Path(out)
    if out.suffix not in (".extxyz", ".xyz"):
        raise InvalidInput("--out", f"got '{out}'; allowed: a file name ending in .extxyz or .xyz")
    paths = expand_folders(folders)
    if not paths:
        raise InvalidInput("FOLDER", "no VASP folders given")
    frames, skipped = [], []
    for p in paths:
        try:
            frames.append(read_vasp_folder(p, config_type=config_type))
        except InvalidInput as exc:
            if not skip_unfinished:
                raise
            skipped.append((exc.subject, exc.message))
    if not frames:
        raise InvalidInput("FOLDER", f"none of the {len(paths)} folder(s) holds a finished VASP run")
    out.parent.mkdir(parents=True, exist_ok=True)
    write(out, frames, format="extxyz", parallel=False)
    return frames, skipped
