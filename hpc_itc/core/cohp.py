"""COHP bonding analysis of the Cu/diamond interface (paper Eqs. 8-10, Fig. 6).

hpc_itc does not run VASP or LOBSTER.  It does the two ends of that work:

* :func:`write_lobster_inputs` cuts a slab of about 30 Å centred on the interface
  from the relaxed heterostructure (whole layers, in-plane cell kept), adds vacuum
  and writes a VASP input set suited to LOBSTER (pymatgen's ``LobsterSet`` with the
  paper's DFT settings: PBEsol, 600 eV, Gaussian smearing 0.05 eV, EDIFF 1e-6,
  k spacing 0.4 1/Å) plus a ``lobsterin`` written with pymatgen's ``Lobsterin``.
  No POTCAR files are needed: ``POTCAR.spec`` names the PAW data sets instead.
  :func:`cohp_inputs_from_results` does the same from the ``/relax`` group of a
  results file (``python -m hpc_itc cohp-inputs RESULT.h5 OUTDIR``).

* :func:`analyse_lobster_folder` reads a finished LOBSTER folder (``ICOHPLIST.lobster``,
  ``COHPCAR.lobster`` and the structure in ``POSCAR``/``CONTCAR``) with pymatgen's
  parsers and finds the interface from the structure alone: the atoms are grouped
  into atomic planes along z, the one Cu/diamond boundary between planes is the
  interface, the Cu plane next to it is the *first Cu layer* and the two diamond
  planes next to it (C(1)+C(2), or N+C(2) when N terminates the diamond) are the
  *first diamond layer*.  Bonds of the ICOHP list between atoms of these layers
  whose z coordinates differ by more than ``min_dz_A`` (0.3 Å) are kept, as in the
  paper (x, y are periodic; heat flows along z).  Reported: -COHP(E) averaged over
  the kept bonds (E - E_F), -ICOHP per bond averaged over them, and -ICOHP (mean,
  count, mean length) and the averaged -COHP per bond-pair type "C(1)-Cu", "N-Cu",
  "C(1)-C(2)", "C-N" (N with C(2)) and, when present, others such as "C(2)-Cu".

Spin channels are summed (a spin-polarised run gives the same totals as an
unpolarised one).  Bonds of LOBSTER < 3 ICOHP lists, which stand for several
equivalent bonds, are weighted by that number.

* :func:`stage_cohp` is the pipeline stage: it analyses ``[cohp] lobster_dir`` and
  writes group ``/cohp`` of the results file.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpc_itc import __version__
from hpc_itc import log as logmod
from hpc_itc.errors import InputError

_log = logmod.get("cohp")

KEY = "cohp.lobster_dir"

# --- DFT / LOBSTER defaults (paper: Methods, "DFT labelling" and "COHP") -------------------
DFT_DEFAULTS: dict[str, Any] = {
    "functional": "PBEsol",  # GGA = PS with PBE PAW data sets
    "encut_eV": 600.0,
    "sigma_eV": 0.05,  # Gaussian smearing (ISMEAR = 0)
    "ediff_eV": 1e-6,
    "kspacing_per_A": 0.4,  # largest k-point spacing, 2*pi included (VASP's KSPACING convention)
}
BASIS: dict[str, str] = {"Cu": "3d 4s", "C": "2s 2p", "N": "2s 2p"}
POTCARS: dict[str, str] = {"Cu": "Cu", "C": "C", "N": "N"}  # the PAW sets whose valence matches BASIS
ELEMENT_ORDER = ("Cu", "C", "N")
COHP_ENERGY_RANGE_EV = (-30.0, 10.0)
BOND_CUTOFF_A = 3.0

# --- analysis ---------------------------------------------------------------------------
MIN_DZ_A = 0.3  # bonds whose ends differ in z by less than this are in-plane and not counted
PLANE_TOL_A = 0.4  # atoms closer than this in z (after sorting) belong to one atomic plane
MIN_VACUUM_A = 4.0  # the largest empty z gap of the cell must be at least this (a slab)
LENGTH_TOL_A = 0.02  # ICOHPLIST bond length vs the structure's geometry
PAPER_TYPES = ("C(1)-Cu", "N-Cu", "C(1)-C(2)", "C-N")
_LABEL_ORDER = {"C(1)": 0, "C(2)": 1, "N": 2, "Cu": 3}
_TYPE_NAMES = {("C(1)", "Cu"): "C(1)-Cu", ("N", "Cu"): "N-Cu", ("C(1)", "C(2)"): "C(1)-C(2)", ("C(2)", "N"): "C-N",
               ("C(2)", "Cu"): "C(2)-Cu"}


# =========================================================================================
# input set
# =========================================================================================
@dataclass
class SlabCut:
    """A slab cut from a heterostructure: atoms in POSCAR order and where they came from."""

    structure: Any  # pymatgen Structure, species grouped in ELEMENT_ORDER
    source_index: np.ndarray  # index of each POSCAR site in the heterostructure
    side: np.ndarray
    layer_from_interface: np.ndarray
    thickness_A: float  # z extent of the atoms
    vacuum_A: float
    n_layers: dict[str, int]  # {"left": n, "right": m}
    interface_z_A: float  # midway between the two facing planes, in slab coordinates
    truncated: bool  # the heterostructure had fewer layers than the request needed


def cut_slab(atoms, side, layer_from_interface, thickness_A: float = 30.0, vacuum_A: float = 15.0) -> SlabCut:
    """Whole layers on both sides of the interface, ``thickness_A`` in all, centred on it.

    Each side gets the number of its layers (``layer_from_interface`` -1, -2, ... on
    the left, 1, 2, ... on the right) whose far plane lies closest to
    ``thickness_A / 2`` from the interface mid-plane, so the slab's z extent is
    within one layer of the request.  The in-plane cell is kept, c is set normal
    to the interface with ``vacuum_A`` of vacuum, and atoms are grouped by element.
    """
    from pymatgen.core import Lattice, Structure

    side = np.asarray(side, dtype=int)
    lfi = np.asarray(layer_from_interface, dtype=int)
    pos = np.asarray(atoms.positions, dtype=float)
    cell = np.asarray(atoms.cell, dtype=float)
    symbols = np.array(atoms.get_chemical_symbols())
    if not (len(side) == len(lfi) == len(pos)):
        raise ValueError("atoms, side and layer_from_interface must have one entry per atom")
    if not (np.any(lfi == -1) and np.any(lfi == 1)):
        raise InputError("result", "the relaxed structure has no layers -1 and +1 at an interface; cannot cut an interface slab")
    if abs(cell[0, 2]) > 1e-6 or abs(cell[1, 2]) > 1e-6:
        raise InputError("result", "the in-plane cell vectors have z components; the interface must be normal to z")
    z = pos[:, 2]
    left_below = z[lfi < 0].mean() < z[lfi > 0].mean()
    sign = 1.0 if left_below else -1.0  # coordinate that grows from left to right
    u = sign * z
    u_iface = 0.5 * (u[lfi == -1].max() + u[lfi == 1].min())

    def choose(layers: np.ndarray, far) -> tuple[int, bool]:
        extents = [far(u[np.isin(lfi, layers[:n])]) for n in range(1, len(layers) + 1)]
        best = int(np.argmin([abs(e - 0.5 * thickness_A) for e in extents])) + 1
        step = extents[-1] / len(extents)  # about one layer
        return best, best == len(extents) and 0.5 * thickness_A - extents[-1] > 0.5 * step

    left_layers = np.sort(np.unique(lfi[lfi < 0]))[::-1]  # -1, -2, ...
    right_layers = np.sort(np.unique(lfi[lfi > 0]))  # 1, 2, ...
    n_left, short_left = choose(left_layers, lambda v: u_iface - v.min())
    n_right, short_right = choose(right_layers, lambda v: v.max() - u_iface)
    keep = np.flatnonzero(np.isin(lfi, np.concatenate([left_layers[:n_left], right_layers[:n_right]])))

    zk = z[keep]
    thickness = float(zk.max() - zk.min())
    c_len = thickness + vacuum_A
    new_pos = pos[keep].copy()
    shift = 0.5 * vacuum_A - zk.min()
    new_pos[:, 2] += shift
    order_key = [(ELEMENT_ORDER.index(s) if s in ELEMENT_ORDER else len(ELEMENT_ORDER), s) for s in symbols[keep]]
    order = sorted(range(len(keep)), key=lambda k: order_key[k])  # stable: slab (layer-major) order within an element
    keep = keep[order]
    new_pos = new_pos[order]
    lattice = Lattice(np.array([cell[0], cell[1], [0.0, 0.0, c_len]]))
    frac = np.linalg.solve(lattice.matrix.T, new_pos.T).T
    frac = np.mod(np.round(frac, 10), 1.0)  # wrapped in-plane; 0.9999999999 -> 0
    structure = Structure(lattice, list(symbols[keep]), frac)
    iface_z = sign * u_iface + shift
    return SlabCut(structure, keep, side[keep], lfi[keep], thickness, float(vacuum_A), {"left": n_left, "right": n_right},
                   float(iface_z), bool(short_left or short_right))


def kpoint_mesh(lattice_matrix: np.ndarray, kspacing_per_A: float) -> tuple[int, int, int]:
    """VASP's KSPACING rule: N_i = max(1, ceil(|b_i| / spacing)), b_i with the factor 2*pi."""
    recip = 2.0 * np.pi * np.linalg.inv(np.asarray(lattice_matrix, dtype=float)).T
    return tuple(int(max(1, math.ceil(np.linalg.norm(b) / kspacing_per_A - 1e-9))) for b in recip)


def write_lobster_inputs(atoms_relaxed, side, layer_from_interface, out_dir, thickness_A: float = 30.0,
                         vacuum_A: float = 15.0, *, encut_eV: float = DFT_DEFAULTS["encut_eV"],
                         sigma_eV: float = DFT_DEFAULTS["sigma_eV"], ediff_eV: float = DFT_DEFAULTS["ediff_eV"],
                         kspacing_per_A: float = DFT_DEFAULTS["kspacing_per_A"], bond_cutoff_A: float = BOND_CUTOFF_A,
                         cohp_energy_range_eV: tuple[float, float] = COHP_ENERGY_RANGE_EV,
                         basis: dict[str, str] | None = None, potcars: dict[str, str] | None = None,
                         source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write INCAR, KPOINTS, POSCAR, POTCAR.spec, lobsterin, slab_provenance.json and README.txt.

    ``atoms_relaxed`` (ase Atoms), ``side`` and ``layer_from_interface`` are the
    relaxed heterostructure and its per-atom bookkeeping (see
    :class:`hpc_itc.core.structure.Heterostructure`).  ``source`` is copied into the
    provenance file (e.g. the results file and its input hash).  Returns a summary.
    """
    from pymatgen.io.lobster import Lobsterin
    from pymatgen.io.lobster.sets import LobsterSet
    from pymatgen.io.vasp.inputs import Kpoints

    if not thickness_A > 0:
        raise InputError("--thickness", f"got {thickness_A!r}; allowed: a slab thickness > 0 Å")
    if not vacuum_A >= MIN_VACUUM_A:
        raise InputError("--vacuum", f"got {vacuum_A!r}; allowed: a vacuum thickness >= {MIN_VACUUM_A} Å (the analysis finds the slab by its vacuum gap)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("outdir", f"'{out}' exists and is not a folder; give a folder for the VASP + LOBSTER inputs")
    basis = {**BASIS, **(basis or {})}
    potcars = {**POTCARS, **(potcars or {})}
    cut = cut_slab(atoms_relaxed, side, layer_from_interface, thickness_A, vacuum_A)
    structure = cut.structure
    elements = [el for el in dict.fromkeys(str(s) for s in structure.species)]
    missing = [el for el in elements if el not in basis or el not in potcars]
    if missing:
        raise InputError("result", f"no LOBSTER basis / POTCAR choice for element(s) {', '.join(missing)}; hpc_itc knows {', '.join(BASIS)}")
    mesh = kpoint_mesh(structure.lattice.matrix, kspacing_per_A)
    incar_settings = {"GGA": "PS", "ENCUT": float(encut_eV), "SIGMA": float(sigma_eV), "EDIFF": float(ediff_eV),
                      "ISPIN": 1, "MAGMOM": None, "NELM": 200}
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LobsterSet's "brand new implementation" and POTCAR-override warnings
        vasp_set = LobsterSet(structure, isym=0, ismear=0, user_supplied_basis={el: basis[el] for el in elements},
                              user_incar_settings=incar_settings, user_kpoints_settings=Kpoints.gamma_automatic(mesh),
                              user_potcar_settings={el: potcars[el] for el in elements}, user_potcar_functional="PBE_54",
                              sort_structure=False)
        vasp_set.write_input(str(out), potcar_spec=True)
        incar = dict(vasp_set.incar)
    spec_file = out / "POTCAR.spec"
    spec_file.write_text(spec_file.read_text().rstrip("\n") + "\n")
    lobsterin = Lobsterin({
        "basisSet": "pbeVaspFit2015",
        "basisfunctions": [f"{el} {basis[el]}" for el in elements],
        "COHPstartEnergy": float(cohp_energy_range_eV[0]),
        "COHPendEnergy": float(cohp_energy_range_eV[1]),
        "gaussianSmearingWidth": float(sigma_eV),
        "cohpGenerator": f"from 0.1 to {bond_cutoff_A:.3f}",
    })
    lobsterin.write_lobsterin(str(out / "lobsterin"))

    layers = cut.layer_from_interface
    first = {"left": [int(i) + 1 for i in np.flatnonzero(layers == -1)], "right": [int(i) + 1 for i in np.flatnonzero(layers == 1)]}
    provenance = {
        "written_by": f"hpc_itc {__version__} (hpc_itc.core.cohp.write_lobster_inputs)",
        "source": source or {},
        "thickness_requested_A": float(thickness_A),
        "thickness_A": cut.thickness_A,
        "vacuum_A": cut.vacuum_A,
        "n_layers": cut.n_layers,
        "truncated": cut.truncated,
        "interface_z_A": cut.interface_z_A,
        "first_layers_poscar_index": first,
        "settings": {"incar": {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in incar.items()},
                     "kpoints_gamma_mesh": list(mesh), "kspacing_per_A": kspacing_per_A, "functional": "PBEsol",
                     "potcars": {el: potcars[el] for el in elements}, "basis": {el: basis[el] for el in elements},
                     "cohp_generator_A": [0.1, bond_cutoff_A], "cohp_energy_range_eV": list(cohp_energy_range_eV)},
        "atoms": [{"poscar_index": k + 1, "symbol": str(structure[k].specie), "source_index": int(cut.source_index[k]),
                   "side": int(cut.side[k]), "layer_from_interface": int(layers[k]),
                   "z_A": float(structure.cart_coords[k, 2])} for k in range(len(structure))],
    }
    (out / "slab_provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    (out / "README.txt").write_text(_readme(cut, mesh, elements, potcars, basis, incar, bond_cutoff_A, cohp_energy_range_eV))
    if cut.truncated:
        _log.warning("cohp inputs: the relaxed structure is thinner than %.1f Å; the slab holds all its layers (%.2f Å)",
                     thickness_A, cut.thickness_A)
    return {"out_dir": str(out), "n_atoms": len(structure), "thickness_A": cut.thickness_A, "vacuum_A": cut.vacuum_A,
            "n_layers": cut.n_layers, "kpoints": list(mesh), "truncated": cut.truncated,
            "formula": structure.composition.formula}


def _readme(cut: SlabCut, mesh, elements, potcars, basis, incar, cutoff, erange) -> str:
    spec = " ".join(potcars[el] for el in elements)
    return f"""VASP + LOBSTER inputs for the COHP analysis of the interface (written by hpc_itc {__version__})

Slab: {len(cut.structure)} atoms ({cut.structure.composition.formula}), {cut.thickness_A:.2f} Å of atoms
({cut.n_layers['left']} layers of the left material, {cut.n_layers['right']} of the right one, whole layers,
centred on the interface) + {cut.vacuum_A:.2f} Å of vacuum along z; in-plane cell of the relaxed heterostructure.
{'NOTE: the relaxed structure was thinner than requested; the slab holds all of its layers.' if cut.truncated else ''}
slab_provenance.json maps every POSCAR site to its atom in the relaxed heterostructure and its layer label.

POTCAR: NOT INCLUDED. No POTCAR files exist where these inputs were written. POTCAR.spec lists the
PAW data sets, in POSCAR order ({spec}); build the POTCAR from your licensed PBE (PBE_54) set, e.g.
    cat $VASP_PP_PATH/potpaw_PBE/{{{','.join(potcars[el] for el in elements)}}}/POTCAR > POTCAR   (in that order)
The LOBSTER basis ({'; '.join(f'{el}: {basis[el]}' for el in elements)}) matches these valence configurations.

Settings (paper): PBEsol (GGA = PS), ENCUT {incar.get('ENCUT')} eV, Gaussian smearing (ISMEAR 0) SIGMA {incar.get('SIGMA')} eV,
EDIFF {incar.get('EDIFF')}, Gamma-centred k mesh {mesh[0]}x{mesh[1]}x{mesh[2]} (spacing <= 0.4 1/Å), static run (NSW 0),
ISYM 0, LWAVE, NBANDS {incar.get('NBANDS')} (= number of LOBSTER basis functions), non-spin-polarised.
lobsterin: basis set pbeVaspFit2015, COHPs of all atom pairs from 0.1 to {cutoff:.2f} Å (cohpGenerator),
energy window {erange[0]} .. {erange[1]} eV around E_F, Gaussian smearing width = SIGMA.
No dipole correction is set; add IDIPOL = 3 / LDIPOL if you want one.

Run: VASP (static SCF) in this folder, then LOBSTER (e.g. lobster-5.1.1) in the same folder.
Then point hpc_itc at the finished folder:
    [cohp]
    lobster_dir = "<this folder>"
and run the cohp stage; it needs ICOHPLIST.lobster, COHPCAR.lobster and POSCAR (or CONTCAR) from here.
"""


def read_relaxed(result_path) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any]]:
    """(atoms, side, layer_from_interface, source info) from the /relax group of a results file."""
    from ase import Atoms

    from hpc_itc.store.file import read_str_array

    from hpc_itc.store.file import open_for_reading

    path = Path(result_path)
    with open_for_reading(path) as f:
        if "relax" not in f or not f["relax"].attrs.get("complete", False):
            raise InputError("result", f"'{path}' has no finished relax stage; run the structure and relax stages first")
        g = f["relax"]
        atoms = Atoms(read_str_array(g["symbols"]), positions=g["positions"][()], cell=g["cell"][()], pbc=True)
        side = g["side"][()]
        lfi = g["layer_from_interface"][()]
        source = {"results_file": str(path.resolve()), "group": "/relax",
                  "input_sha256": str(f.attrs.get("input_sha256", "")),
                  "relax_converged": bool(g.attrs.get("converged", False))}
    return atoms, side, lfi, source


def cohp_inputs_from_results(result_path, out_dir, thickness_A: float = 30.0, vacuum_A: float = 15.0, **kwargs) -> dict[str, Any]:
    """``python -m hpc_itc cohp-inputs RESULT.h5 OUTDIR [--thickness 30]``: inputs from /relax."""
    atoms, side, lfi, source = read_relaxed(result_path)
    return write_lobster_inputs(atoms, side, lfi, out_dir, thickness_A, vacuum_A, source=source, **kwargs)


def cohp_inputs_main(result: str, out_dir: str, thickness_A: float = 30.0, vacuum_A: float = 15.0) -> int:
    """CLI body: write the inputs and print one summary line; returns the exit status."""
    s = cohp_inputs_from_results(result, out_dir, thickness_A, vacuum_A)
    note = " (structure thinner than requested: all layers used)" if s["truncated"] else ""
    print(f"wrote VASP + LOBSTER inputs for a {s['n_atoms']}-atom slab ({s['formula']}, {s['thickness_A']:.2f} Å, "
          f"{s['n_layers']['left']}+{s['n_layers']['right']} layers, k mesh {'x'.join(map(str, s['kpoints']))}) to {s['out_dir']}{note}; "
          "no POTCAR: see POTCAR.spec and README.txt")
    return 0


# =========================================================================================
# analysis of a finished LOBSTER folder
# =========================================================================================
@dataclass
class InterfaceLayers:
    """The first Cu layer and first diamond layer found in a structure."""

    labels: list[str | None]  # per site: "Cu", "C(1)", "C(2)", "N" or None (not in the two layers)
    z_A: np.ndarray  # per site, unwrapped along the slab (0 at the bottom of the slab)
    cu_layer: list[int]  # site indices (0-based)
    diamond_planes: tuple[list[int], list[int]]  # terminal plane, second plane
    cu_side: str  # "below" or "above" the diamond
    interface_z_A: float  # midway between the first Cu plane and the terminal diamond plane (unwrapped z)
    plane_z_A: list[float] = field(default_factory=list)  # z of every atomic plane found


@dataclass
class Bond:
    label: str
    atom1: str
    atom2: str
    sites: tuple[int, int]
    type: str
    length_A: float
    dz_A: float
    weight: int  # equivalent bonds this entry stands for (1 from LOBSTER 3 on)
    minus_icohp_eV: float


@dataclass
class TypeStats:
    count: int
    minus_icohp_mean_eV: float
    length_mean_A: float
    minus_cohp_mean: np.ndarray


@dataclass
class CohpResult:
    folder: str
    structure_file: str
    energy_eV: np.ndarray  # E - E_F
    efermi_eV: float  # as LOBSTER reports it (energies are already shifted by it)
    minus_cohp_mean: np.ndarray  # averaged over kept bonds, spins summed
    minus_icohp_mean_eV: float
    n_bonds: int
    bonds: list[Bond]
    per_type: dict[str, TypeStats]
    layers: InterfaceLayers
    spin_polarized: bool
    min_dz_A: float
    plane_tol_A: float
    n_icohp_entries: int
    charge_spilling_percent: float = float("nan")  # abs. total spilling from lobsterout, when listed

    def counts(self) -> dict[str, int]:
        return {name: t.count for name, t in self.per_type.items()}


def _find_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _one_line(exc: Exception, limit: int = 100) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > limit:
        first = first[: limit - 3] + "..."
    return f"{type(exc).__name__}: {first}".rstrip(": ")


def identify_interface_layers(structure, plane_tol_A: float = PLANE_TOL_A, min_vacuum_A: float = MIN_VACUUM_A,
                              where: str = "the structure") -> InterfaceLayers:
    """Find the Cu/diamond interface along z and label the first Cu and first diamond layer.

    Atoms are grouped into atomic planes (sorted z, a new plane where the gap to the
    previous atom exceeds ``plane_tol_A``); a plane is Cu (only Cu) or diamond (only
    C and N).  The slab must have a vacuum gap of at least ``min_vacuum_A`` and
    exactly one boundary between a Cu plane and a diamond plane.
    """
    lat = np.asarray(structure.lattice.matrix, dtype=float)
    if abs(lat[0, 2]) > 1e-3 or abs(lat[1, 2]) > 1e-3 or lat[2, 2] <= 0:
        raise InputError(KEY, f"{where}: lattice vectors a and b must lie in the xy plane and c point up z (the interface normal)")
    symbols = [site.specie.symbol for site in structure]
    unknown = sorted(set(symbols) - {"Cu", "C", "N"})
    if unknown:
        raise InputError(KEY, f"{where} contains {', '.join(unknown)}; the analysis knows Cu/diamond interfaces with C and N only")
    n = len(symbols)
    c_z = lat[2, 2]
    frac = np.mod(structure.frac_coords[:, 2], 1.0)
    order = np.argsort(frac)
    fs = frac[order]
    gaps = np.diff(np.append(fs, fs[0] + 1.0)) * c_z
    k = int(np.argmax(gaps))
    if gaps[k] < min_vacuum_A:
        raise InputError(KEY, f"{where} has no vacuum gap along z (largest empty gap {gaps[k]:.2f} Å < {min_vacuum_A} Å); "
                              "expected a slab with one Cu/diamond interface and vacuum")
    start = fs[(k + 1) % n]
    z = np.mod(frac - start, 1.0) * c_z
    zorder = np.argsort(z, kind="stable")
    planes: list[list[int]] = [[int(zorder[0])]]
    for a, b in zip(zorder[:-1], zorder[1:]):
        if z[b] - z[a] > plane_tol_A:
            planes.append([])
        planes[-1].append(int(b))
    kinds = []
    for p in planes:
        els = {symbols[i] for i in p}
        if els == {"Cu"}:
            kinds.append("cu")
        elif els <= {"C", "N"}:
            kinds.append("diamond")
        else:
            raise InputError(KEY, f"{where}: the atomic plane at z = {z[p].mean():.2f} Å holds both Cu and C/N; cannot tell the Cu and diamond layers apart")
    if "cu" not in kinds or "diamond" not in kinds:
        found = "only Cu" if "diamond" not in kinds else "only C/N"
        raise InputError(KEY, f"{where} holds {found} atomic planes; no Cu/diamond interface found")
    boundaries = [i for i in range(len(planes) - 1) if kinds[i] != kinds[i + 1]]
    if len(boundaries) != 1:
        raise InputError(KEY, f"{where} has {len(boundaries)} Cu/diamond boundaries along z; expected a slab with exactly one interface")
    b = boundaries[0]
    if kinds[b] == "cu":
        cu_plane, d1, d2_index, cu_side = planes[b], planes[b + 1], b + 2, "below"
    else:
        cu_plane, d1, d2_index, cu_side = planes[b + 1], planes[b], b - 1, "above"
    if not (0 <= d2_index < len(planes)) or kinds[d2_index] != "diamond":
        raise InputError(KEY, f"{where}: the diamond side has a single atomic plane; the first diamond layer needs two")
    d2 = planes[d2_index]
    labels: list[str | None] = [None] * n
    for i in cu_plane:
        labels[i] = "Cu"
    for i in d1:
        labels[i] = "N" if symbols[i] == "N" else "C(1)"
    for i in d2:
        labels[i] = "N" if symbols[i] == "N" else "C(2)"
    iface = 0.5 * (z[cu_plane].mean() + z[d1].mean())
    return InterfaceLayers(labels, z, sorted(cu_plane), (sorted(d1), sorted(d2)), cu_side, float(iface),
                           [float(z[p].mean()) for p in planes])


def bond_type(label1: str, label2: str) -> str:
    a, b = sorted((label1, label2), key=lambda s: _LABEL_ORDER[s])
    return _TYPE_NAMES.get((a, b), f"{a}-{b}")


_ATOM_RE = re.compile(r"^([A-Z][a-z]?)(\d+)$")


def _site_of(name: str, symbols: list[str], where: str) -> int:
    m = _ATOM_RE.match(name)
    if not m:
        raise InputError(KEY, f"ICOHPLIST.lobster names atom '{name}', which is not an element followed by a site number")
    el, number = m.group(1), int(m.group(2))
    if not 1 <= number <= len(symbols) or symbols[number - 1] != el:
        found = symbols[number - 1] if 1 <= number <= len(symbols) else "no such site"
        raise InputError(KEY, f"ICOHPLIST.lobster names atom {name} but site {number} of {where} is {found}; "
                              "the structure file is not the one LOBSTER used")
    return number - 1


def _bond_dz(structure, i: int, j: int, translation, length: float, label: str, where: str) -> float:
    """z component of the bond i -> j (+translation), the image chosen to match the listed length."""
    lat = np.asarray(structure.lattice.matrix, dtype=float)
    frac = np.mod(structure.frac_coords, 1.0)
    t0 = np.asarray(translation, dtype=float)
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)
    cands = np.vstack([t0, t0 + shifts, shifts])
    vec = (frac[j] + cands - frac[i]) @ lat
    err = np.abs(np.linalg.norm(vec, axis=1) - length)
    best = 0 if err[0] <= LENGTH_TOL_A else int(np.argmin(err))
    if err[best] > LENGTH_TOL_A:
        raise InputError(KEY, f"bond {label} of ICOHPLIST.lobster ({length:.4f} Å) does not fit the geometry of {where} "
                              f"(closest image {np.linalg.norm(vec[best]):.4f} Å); the structure file is not the one LOBSTER used")
    return float(vec[best, 2])


def _read_lobsterout(folder: Path) -> float | None:
    """Fail if lobsterout (when present) shows an unfinished run; return the abs. total charge spilling (%) if listed."""
    path = _find_file(folder, ("lobsterout",))
    if path is None:
        return None
    from monty.io import zopen

    with zopen(path, mode="rt", encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    if not any("finished" in line.split() for line in text.splitlines()):
        raise InputError(KEY, f"{path} shows no 'finished' line; the LOBSTER run in '{folder}' did not finish")
    m = re.findall(r"abs\.\s+total\s+spilling:\s+([0-9.]+)\s*%", text)
    return float(m[0]) if m else None


def analyse_lobster_folder(folder, min_dz_A: float = MIN_DZ_A, plane_tol_A: float = PLANE_TOL_A) -> CohpResult:
    """Interface bonding from a finished LOBSTER folder (see the module doc)."""
    from pymatgen.core import Structure
    from pymatgen.electronic_structure.core import Spin
    from pymatgen.io.lobster import Cohpcar, Icohplist

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(KEY, f"LOBSTER folder '{folder}' not found; give the folder of a finished VASP + LOBSTER run")
    needed = {"ICOHPLIST.lobster": _find_file(folder, ("ICOHPLIST.lobster",)),
              "COHPCAR.lobster": _find_file(folder, ("COHPCAR.lobster",)),
              "POSCAR or CONTCAR": _find_file(folder, ("POSCAR", "CONTCAR", "POSCAR.lobster"))}
    missing = [name for name, path in needed.items() if path is None]
    if missing:
        raise InputError(KEY, f"'{folder}' lacks {', '.join(missing)}; give the folder of a finished VASP + LOBSTER run")
    icohp_path, cohpcar_path, struct_path = needed.values()
    spilling = _read_lobsterout(folder)

    try:
        structure = Structure.from_file(struct_path)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad input file
        raise InputError(KEY, f"cannot read the structure in {struct_path} ({_one_line(exc)})") from None
    where = struct_path.name
    layers = identify_interface_layers(structure, plane_tol_A, where=where)
    symbols = [site.specie.symbol for site in structure]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            icohplist = Icohplist(filename=str(icohp_path))
            coll = icohplist.icohpcollection
        except Exception as exc:  # noqa: BLE001
            raise InputError(KEY, f"{icohp_path} cannot be read ({_one_line(exc)}); the file is truncated or not a LOBSTER ICOHPLIST") from None
        try:
            cohpcar = Cohpcar(filename=str(cohpcar_path))
        except Exception as exc:  # noqa: BLE001
            raise InputError(KEY, f"{cohpcar_path} cannot be read ({_one_line(exc)}); the file is truncated or not a LOBSTER COHPCAR") from None
    energy = np.asarray(cohpcar.energies, dtype=float)
    expected_points = _cohpcar_points(cohpcar_path)
    if expected_points is not None and len(energy) != expected_points:
        raise InputError(KEY, f"{cohpcar_path} holds {len(energy)} energy points but its header announces {expected_points}; the file is truncated")
    # IcohpCollection keeps its per-bond lists in these attributes (pymatgen has no public accessor for atom names)
    labels = list(coll._list_labels)
    cohp_labels = [k for k in cohpcar.cohp_data if k != "average"]
    if len(labels) != len(cohp_labels) or set(labels) != set(cohp_labels):
        raise InputError(KEY, f"ICOHPLIST.lobster lists {len(labels)} bonds but COHPCAR.lobster {len(cohp_labels)}; "
                              "one of them is truncated or they come from different runs")
    if not labels:
        raise InputError(KEY, f"{icohp_path} lists no bonds")
    spins = [Spin.up, Spin.down] if cohpcar.is_spin_polarized else [Spin.up]

    kept: list[Bond] = []
    curves: list[np.ndarray] = []
    for idx, label in enumerate(labels):
        a1, a2 = coll._list_atom1[idx], coll._list_atom2[idx]
        i, j = _site_of(a1, symbols, where), _site_of(a2, symbols, where)
        li, lj = layers.labels[i], layers.labels[j]
        if li is None or lj is None:
            continue
        length = float(coll._list_length[idx])
        dz = _bond_dz(structure, i, j, coll._list_translation[idx], length, label, where)
        if abs(dz) <= min_dz_A:
            continue
        entry = cohpcar.cohp_data[label]
        if sorted(entry["sites"]) != sorted((i, j)):
            raise InputError(KEY, f"bond {label} joins {a1} and {a2} in ICOHPLIST.lobster but sites {[s + 1 for s in entry['sites']]} "
                                  "in COHPCAR.lobster; the files come from different runs")
        icohp = coll._list_icohp[idx]
        minus_icohp = -float(sum(icohp[s] for s in icohp))
        weight = int(coll._list_num[idx]) or 1
        curve = -np.sum([np.asarray(entry["COHP"][s], dtype=float) for s in spins], axis=0)
        kept.append(Bond(label, a1, a2, (i, j), bond_type(li, lj), length, dz, weight, minus_icohp))
        curves.append(curve)
    if not kept:
        raise InputError(KEY, f"no bond of {icohp_path} joins atoms of the first Cu layer and first diamond layer at different z "
                              f"(|dz| > {min_dz_A} Å); were COHPs computed for them (cohpGenerator range)?")

    w = np.array([b.weight for b in kept], dtype=float)
    curves_arr = np.array(curves)
    per_type: dict[str, TypeStats] = {}
    names = [t for t in PAPER_TYPES if any(b.type == t for b in kept)] + sorted({b.type for b in kept} - set(PAPER_TYPES))
    for name in names:
        sel = np.array([b.type == name for b in kept])
        ws = w[sel]
        per_type[name] = TypeStats(
            count=int(ws.sum()),
            minus_icohp_mean_eV=float(np.average([b.minus_icohp_eV for b, s in zip(kept, sel) if s], weights=ws)),
            length_mean_A=float(np.average([b.length_A for b, s in zip(kept, sel) if s], weights=ws)),
            minus_cohp_mean=np.average(curves_arr[sel], axis=0, weights=ws),
        )
    result = CohpResult(
        folder=str(folder.resolve()), structure_file=struct_path.name, energy_eV=energy, efermi_eV=float(cohpcar.efermi),
        minus_cohp_mean=np.average(curves_arr, axis=0, weights=w),
        minus_icohp_mean_eV=float(np.average([b.minus_icohp_eV for b in kept], weights=w)), n_bonds=int(w.sum()),
        bonds=kept, per_type=per_type, layers=layers, spin_polarized=bool(cohpcar.is_spin_polarized),
        min_dz_A=float(min_dz_A), plane_tol_A=float(plane_tol_A), n_icohp_entries=len(labels),
        charge_spilling_percent=float("nan") if spilling is None else spilling,
    )
    return result


def _cohpcar_points(path: Path) -> int | None:
    """Number of energy points announced in line 2 of a COHPCAR (None if unreadable)."""
    from monty.io import zopen

    try:
        with zopen(path, mode="rt", encoding="utf-8") as fh:
            fh.readline()
            return int(fh.readline().split()[2])
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None


# =========================================================================================
# results file
# =========================================================================================
def write_cohp_group(g, result: CohpResult) -> None:
    """Fill group /cohp (see docs/results.md)."""
    from hpc_itc.store.file import write_array

    lay = result.layers
    names = list(result.per_type)
    write_array(g, "energy", result.energy_eV, "eV", doc="E - E_F (LOBSTER's shifted energy axis)")
    write_array(g, "minus_cohp_mean", result.minus_cohp_mean, "eV",
                doc="-COHP(E) averaged over the kept interface bonds (spins summed)")
    write_array(g, "types", np.array(names, dtype="S"), doc="bond-pair types: C(1)-Cu, N-Cu, C(1)-C(2), C-N (N with C(2)), others")
    write_array(g, "type_count", np.array([result.per_type[t].count for t in names], dtype=int), doc="bonds of each type")
    write_array(g, "type_minus_icohp_mean", np.array([result.per_type[t].minus_icohp_mean_eV for t in names]), "eV",
                doc="-ICOHP per bond, mean over the bonds of each type")
    write_array(g, "type_length_mean", np.array([result.per_type[t].length_mean_A for t in names]), "Å")
    write_array(g, "type_minus_cohp_mean", np.array([result.per_type[t].minus_cohp_mean for t in names]), "eV",
                doc="-COHP(E) averaged over the bonds of each type (rows follow 'types')")
    b = g.create_group("bonds")
    write_array(b, "label", np.array([x.label for x in result.bonds], dtype="S"), doc="COHP# in ICOHPLIST.lobster / COHPCAR.lobster")
    write_array(b, "atom1", np.array([x.atom1 for x in result.bonds], dtype="S"))
    write_array(b, "atom2", np.array([x.atom2 for x in result.bonds], dtype="S"))
    write_array(b, "type", np.array([x.type for x in result.bonds], dtype="S"))
    write_array(b, "length", np.array([x.length_A for x in result.bonds]), "Å")
    write_array(b, "dz", np.array([x.dz_A for x in result.bonds]), "Å", doc="z(atom2) - z(atom1)")
    write_array(b, "weight", np.array([x.weight for x in result.bonds], dtype=int), doc="equivalent bonds per entry (LOBSTER < 3 lists)")
    write_array(b, "minus_icohp", np.array([x.minus_icohp_eV for x in result.bonds]), "eV")
    g.attrs["mean_minus_icohp_eV"] = result.minus_icohp_mean_eV
    g.attrs["n_bonds"] = result.n_bonds
    g.attrs["counts"] = json.dumps(result.counts())
    g.attrs["folder"] = result.folder
    g.attrs["structure_file"] = result.structure_file
    g.attrs["efermi_eV"] = result.efermi_eV
    g.attrs["spin_polarized"] = result.spin_polarized
    g.attrs["min_dz_A"] = result.min_dz_A
    g.attrs["plane_tol_A"] = result.plane_tol_A
    g.attrs["cu_side"] = lay.cu_side
    g.attrs["first_cu_layer_sites"] = [i + 1 for i in lay.cu_layer]
    g.attrs["first_diamond_layer_sites"] = [i + 1 for i in lay.diamond_planes[0] + lay.diamond_planes[1]]
    g.attrs["n_icohp_entries"] = result.n_icohp_entries
    g.attrs["charge_spilling_percent"] = result.charge_spilling_percent


def summary_from_group(g) -> dict[str, Any]:
    """The ``cohp`` entry of ``inspect --json`` from group /cohp."""
    names = [x.decode() if isinstance(x, bytes) else str(x) for x in g["types"][()]]
    return {
        "mean_minus_icohp_eV": float(g.attrs["mean_minus_icohp_eV"]),
        "n_bonds": int(g.attrs["n_bonds"]),
        "per_type": {name: {"count": int(c), "minus_icohp_eV": float(v), "length_A": float(length)}
                     for name, c, v, length in zip(names, g["type_count"][()], g["type_minus_icohp_mean"][()], g["type_length_mean"][()])},
        "folder": str(g.attrs["folder"]),
    }


def _section(ctx) -> dict[str, Any]:
    return ctx.cfg.data.get("cohp", {}) if hasattr(ctx.cfg, "data") else ctx.cfg["cohp"]


def configured_folder(ctx) -> Path | None:
    """``[cohp] lobster_dir`` resolved against the input file's folder (None when not set)."""
    spec = _section(ctx).get("lobster_dir") or ""
    if not spec:
        return None
    folder = Path(spec).expanduser()
    return folder if folder.is_absolute() else Path(ctx.cfg.base_dir) / folder


def stage_is_current(ctx) -> bool:
    """True when /cohp is complete and was made from the configured folder and thresholds.

    ``lobster_dir`` is not part of the input hash, so a finished /cohp may come from
    another folder; the driver can use this to decide whether to run the stage again.
    """
    folder = configured_folder(ctx)
    if folder is None or not ctx.results.is_complete("cohp"):
        return False
    sec = _section(ctx)
    with ctx.results.open() as f:
        a = f["cohp"].attrs
        return (str(a.get("folder", "")) == str(folder.resolve())
                and float(a.get("min_dz_A", -1)) == float(sec.get("min_dz_A", MIN_DZ_A))
                and float(a.get("plane_tol_A", -1)) == float(sec.get("plane_tol_A", PLANE_TOL_A)))


def stage_cohp(ctx) -> None:
    """Analyse ``[cohp] lobster_dir`` (relative to the input file's folder) on rank 0 and write /cohp."""
    from hpc_itc.store.file import StageTimer

    timer = StageTimer()
    section = _section(ctx)
    folder = configured_folder(ctx)
    if folder is None:
        if ctx.is_root:
            _log.info("cohp: no [cohp] lobster_dir given; nothing to analyse (write inputs with 'python -m hpc_itc cohp-inputs')")
        return
    min_dz = float(section.get("min_dz_A", MIN_DZ_A))
    plane_tol = float(section.get("plane_tol_A", PLANE_TOL_A))

    def work() -> None:
        result = analyse_lobster_folder(folder, min_dz_A=min_dz, plane_tol_A=plane_tol)  # raises before anything is written
        _log.info("cohp: %d interface bonds (Cu %s diamond), mean -ICOHP %.4f eV; %s", result.n_bonds, result.layers.cu_side,
                  result.minus_icohp_mean_eV,
                  ", ".join(f"{k} {t.count} x {t.minus_icohp_mean_eV:.4f} eV" for k, t in result.per_type.items()))
        ctx.results.write_stage("cohp", lambda g: write_cohp_group(g, result), timer)

    ctx.on_root(work)
