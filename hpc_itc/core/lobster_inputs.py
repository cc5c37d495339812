"""VASP + LOBSTER inputs for the COHP analysis of an interface (paper Eqs. 8-10, Fig. 6).

:func:`write_lobster_inputs` cuts a slab of about 30 Å centred on the interface from the relaxed
heterostructure (whole layers, in-plane cell kept), adds vacuum and writes a VASP input set suited
to LOBSTER (pymatgen's ``LobsterSet`` with the paper's DFT settings: PBEsol, 600 eV, Gaussian
smearing 0.05 eV, EDIFF 1e-6, k spacing 0.4 1/Å) plus a ``lobsterin`` written with pymatgen's
``Lobsterin``.  No POTCAR files are needed: ``POTCAR.spec`` names the PAW data sets instead.
The finished run is analysed by :mod:`hpc_itc.core.cohp`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpc_itc import __version__
from hpc_itc import log as logmod
from hpc_itc.core.cohp import MIN_VACUUM_A
from hpc_itc.core.dft import kpoint_mesh
from hpc_itc.errors import InvalidInput

_log = logmod.get("cohp")

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
        raise InvalidInput("relaxed structure", "the relaxed structure has no layers -1 and +1 at an interface; cannot cut an interface slab")
    if abs(cell[0, 2]) > 1e-6 or abs(cell[1, 2]) > 1e-6:
        raise InvalidInput("relaxed structure", "the in-plane cell vectors have z components; the interface must be normal to z")
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
        raise InvalidInput("thickness", f"got {thickness_A!r}; allowed: a slab thickness > 0 Å")
    if not vacuum_A >= MIN_VACUUM_A:
        raise InvalidInput("vacuum", f"got {vacuum_A!r}; allowed: a vacuum thickness >= {MIN_VACUUM_A} Å (the analysis finds the slab by its vacuum gap)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInput("outdir", f"'{out}' exists and is not a folder; give a folder for the VASP + LOBSTER inputs")
    basis = {**BASIS, **(basis or {})}
    potcars = {**POTCARS, **(potcars or {})}
    cut = cut_slab(atoms_relaxed, side, layer_from_interface, thickness_A, vacuum_A)
    structure = cut.structure
    elements = [el for el in dict.fromkeys(str(s) for s in structure.species)]
    missing = [el for el in elements if el not in basis or el not in potcars]
    if missing:
        raise InvalidInput("relaxed structure", f"no LOBSTER basis / POTCAR choice for element(s) {', '.join(missing)}; hpc_itc knows {', '.join(BASIS)}")
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
        "written_by": f"hpc_itc {__version__} (hpc_itc.core.lobster_inputs.write_lobster_inputs)",
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
