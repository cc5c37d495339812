"""COHP bonding analysis of the Cu/diamond interface from a finished LOBSTER folder (paper Eqs. 8-10, Fig. 6).

hpc_itc does not run VASP or LOBSTER; :mod:`hpc_itc.core.lobster_inputs` writes the inputs.
:func:`analyse_lobster_folder` reads a finished LOBSTER folder (``ICOHPLIST.lobster``,
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
equivalent bonds, are weighted by that number.  Problems with the folder raise
:class:`~hpc_itc.errors.InvalidInput` with subject ``lobster_dir``.
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpc_itc.errors import InvalidInput, one_line

# --- analysis ---------------------------------------------------------------------------
MIN_DZ_A = 0.3  # bonds whose ends differ in z by less than this are in-plane and not counted
PLANE_TOL_A = 0.4  # atoms closer than this in z (after sorting) belong to one atomic plane
MIN_VACUUM_A = 4.0  # the largest empty z gap of the cell must be at least this (a slab)
LENGTH_TOL_A = 0.02  # ICOHPLIST bond length vs the structure's geometry
PAPER_TYPES = ("C(1)-Cu", "N-Cu", "C(1)-C(2)", "C-N")
_LABEL_ORDER = {"C(1)": 0, "C(2)": 1, "N": 2, "Cu": 3}
_TYPE_NAMES = {("C(1)", "Cu"): "C(1)-Cu", ("N", "Cu"): "N-Cu", ("C(1)", "C(2)"): "C(1)-C(2)", ("C(2)", "N"): "C-N",
               ("C(2)", "Cu"): "C(2)-Cu"}



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
        raise InvalidInput("lobster_dir", f"{where}: lattice vectors a and b must lie in the xy plane and c point up z (the interface normal)")
    symbols = [site.specie.symbol for site in structure]
    unknown = sorted(set(symbols) - {"Cu", "C", "N"})
    if unknown:
        raise InvalidInput("lobster_dir", f"{where} contains {', '.join(unknown)}; the analysis knows Cu/diamond interfaces with C and N only")
    n = len(symbols)
    c_z = lat[2, 2]
    frac = np.mod(structure.frac_coords[:, 2], 1.0)
    order = np.argsort(frac)
    fs = frac[order]
    gaps = np.diff(np.append(fs, fs[0] + 1.0)) * c_z
    k = int(np.argmax(gaps))
    if gaps[k] < min_vacuum_A:
        raise InvalidInput("lobster_dir", f"{where} has no vacuum gap along z (largest empty gap {gaps[k]:.2f} Å < {min_vacuum_A} Å); "
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
            raise InvalidInput("lobster_dir", f"{where}: the atomic plane at z = {z[p].mean():.2f} Å holds both Cu and C/N; cannot tell the Cu and diamond layers apart")
    if "cu" not in kinds or "diamond" not in kinds:
        found = "only Cu" if "diamond" not in kinds else "only C/N"
        raise InvalidInput("lobster_dir", f"{where} holds {found} atomic planes; no Cu/diamond interface found")
    boundaries = [i for i in range(len(planes) - 1) if kinds[i] != kinds[i + 1]]
    if len(boundaries) != 1:
        raise InvalidInput("lobster_dir", f"{where} has {len(boundaries)} Cu/diamond boundaries along z; expected a slab with exactly one interface")
    b = boundaries[0]
    if kinds[b] == "cu":
        cu_plane, d1, d2_index, cu_side = planes[b], planes[b + 1], b + 2, "below"
    else:
        cu_plane, d1, d2_index, cu_side = planes[b + 1], planes[b], b - 1, "above"
    if not (0 <= d2_index < len(planes)) or kinds[d2_index] != "diamond":
        raise InvalidInput("lobster_dir", f"{where}: the diamond side has a single atomic plane; the first diamond layer needs two")
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
        raise InvalidInput("lobster_dir", f"ICOHPLIST.lobster names atom '{name}', which is not an element followed by a site number")
    el, number = m.group(1), int(m.group(2))
    if not 1 <= number <= len(symbols) or symbols[number - 1] != el:
        found = symbols[number - 1] if 1 <= number <= len(symbols) else "no such site"
        raise InvalidInput("lobster_dir", f"ICOHPLIST.lobster names atom {name} but site {number} of {where} is {found}; "
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
        raise InvalidInput("lobster_dir", f"bond {label} of ICOHPLIST.lobster ({length:.4f} Å) does not fit the geometry of {where} "
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
        raise InvalidInput("lobster_dir", f"{path} shows no 'finished' line; the LOBSTER run in '{folder}' did not finish")
    m = re.findall(r"abs\.\s+total\s+spilling:\s+([0-9.]+)\s*%", text)
    return float(m[0]) if m else None


def analyse_lobster_folder(folder, min_dz_A: float = MIN_DZ_A, plane_tol_A: float = PLANE_TOL_A) -> CohpResult:
    """Interface bonding from a finished LOBSTER folder (see the module doc)."""
    from pymatgen.core import Structure
    from pymatgen.electronic_structure.core import Spin
    from pymatgen.io.lobster import Cohpcar, Icohplist

    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput("lobster_dir", f"LOBSTER folder '{folder}' not found; give the folder of a finished VASP + LOBSTER run")
    needed = {"ICOHPLIST.lobster": _find_file(folder, ("ICOHPLIST.lobster",)),
              "COHPCAR.lobster": _find_file(folder, ("COHPCAR.lobster",)),
              "POSCAR.lobster.vasp, POSCAR or CONTCAR": _find_file(folder, ("POSCAR.lobster.vasp", "POSCAR", "CONTCAR", "POSCAR.lobster"))}
    missing = [name for name, path in needed.items() if path is None]
    if missing:
        raise InvalidInput("lobster_dir", f"'{folder}' lacks {', '.join(missing)}; give the folder of a finished VASP + LOBSTER run")
    icohp_path, cohpcar_path, struct_path = needed.values()
    spilling = _read_lobsterout(folder)

    try:
        structure = Structure.from_file(struct_path)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad input file
        raise InvalidInput("lobster_dir", f"cannot read the structure in {struct_path} ({type(exc).__name__}: {one_line(exc, 100)})") from None
    where = struct_path.name
    layers = identify_interface_layers(structure, plane_tol_A, where=where)
    symbols = [site.specie.symbol for site in structure]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            icohplist = Icohplist(filename=str(icohp_path))
            coll = icohplist.icohpcollection
        except Exception as exc:  # noqa: BLE001
            raise InvalidInput("lobster_dir", f"{icohp_path} cannot be read ({type(exc).__name__}: {one_line(exc, 100)}); the file is truncated or not a LOBSTER ICOHPLIST") from None
        try:
            cohpcar = Cohpcar(filename=str(cohpcar_path))
        except Exception as exc:  # noqa: BLE001
            raise InvalidInput("lobster_dir", f"{cohpcar_path} cannot be read ({type(exc).__name__}: {one_line(exc, 100)}); the file is truncated or not a LOBSTER COHPCAR") from None
    energy = np.asarray(cohpcar.energies, dtype=float)
    expected_points = _cohpcar_points(cohpcar_path)
    if expected_points is not None and len(energy) != expected_points:
        raise InvalidInput("lobster_dir", f"{cohpcar_path} holds {len(energy)} energy points but its header announces {expected_points}; the file is truncated")
    # IcohpCollection keeps its per-bond lists in these attributes (pymatgen has no public accessor for atom names)
    labels = list(coll._list_labels)
    cohp_labels = [k for k in cohpcar.cohp_data if k != "average"]
    if len(labels) != len(cohp_labels) or set(labels) != set(cohp_labels):
        raise InvalidInput("lobster_dir", f"ICOHPLIST.lobster lists {len(labels)} bonds but COHPCAR.lobster {len(cohp_labels)}; "
                              "one of them is truncated or they come from different runs")
    if not labels:
        raise InvalidInput("lobster_dir", f"{icohp_path} lists no bonds")
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
            raise InvalidInput("lobster_dir", f"bond {label} joins {a1} and {a2} in ICOHPLIST.lobster but sites {[s + 1 for s in entry['sites']]} "
                                  "in COHPCAR.lobster; the files come from different runs")
        icohp = coll._list_icohp[idx]
        minus_icohp = -float(sum(icohp[s] for s in icohp))
        weight = int(coll._list_num[idx]) or 1
        curve = -np.sum([np.asarray(entry["COHP"][s], dtype=float) for s in spins], axis=0)
        kept.append(Bond(label, a1, a2, (i, j), bond_type(li, lj), length, dz, weight, minus_icohp))
        curves.append(curve)
    if not kept:
        raise InvalidInput("lobster_dir", f"no bond of {icohp_path} joins atoms of the first Cu layer and first diamond layer at different z "
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
