"""COHP bonding analysis of an interface from a finished LOBSTER folder (paper Eqs. 8-10, Fig. 6).

hpc_itc does not run VASP or LOBSTER; :mod:`hpc_itc.core.lobster_inputs` writes the inputs.
:func:`analyse_lobster_folder` reads a finished LOBSTER folder (``ICOHPLIST.lobster``,
``COHPCAR.lobster`` and the structure in ``POSCAR.lobster.vasp``, ``CONTCAR`` or ``POSCAR``)
with pymatgen's parsers and finds the interface from the structure alone
(:func:`identify_interface_layers`):

* The **stacking axis** is the lattice vector across which the cell has a vacuum gap of at
  least ``MIN_VACUUM_A`` (a slab); positions along it are measured along the normal of the
  other two vectors, so a, b need not lie in the xy plane.  With no vacuum gap the cell is a
  **bulk** crystal; with vacuum across more than one vector the folder is refused.
* The atoms are grouped into **atomic planes** along that axis (a new plane where the gap to
  the previous atom exceeds ``plane_tol_A``).  The **interface** is the boundary between two
  planes that splits the slab into two sides sharing the fewest elements, neither side's
  elements a subset of the other's (Cu | C, Cu | C+N, GaN | AlN share N); among equally good
  boundaries the widest gap wins (Cu | N rather than N | C(2) for N-terminated diamond).  A
  slab with no such boundary (one material, or an intermixed interface) is a
  **one-material** slab.
* The **first layer** of each side is its plane nearest the interface plus its further planes
  within ``layer_thickness_A`` (1.5 Å) of that plane: one Cu(001) plane (1.8 Å apart) and the
  two diamond(001) planes C(1)+C(2) (0.9 Å apart), as in the paper.
* At an interface, bonds of the ICOHP list between atoms of the two first layers whose
  positions along the axis differ by more than ``min_dz_A`` (0.3 Å) are kept, as in the
  paper.  Sites are labelled by element and, on sides whose first layer has several planes,
  the plane number counted from the interface (``C(1)``, ``C(2)``); a bond's type joins the
  two labels in alphabetical order (``C(1)-Cu``, ``Al(1)-N(2)``).  For Cu/diamond the paper's
  names are kept: ``C(1)-Cu``, ``N-Cu``, ``C(1)-C(2)``, ``C-N`` (N with C(2)), ``C(2)-Cu``.
* In a bulk crystal or one-material slab every bond of the list is kept, typed by element pair
  and coordination shell (``C-C 1.55 Å``).

Reported: -COHP(E) averaged over the kept bonds (E - E_F), -ICOHP per bond averaged over them,
and -ICOHP (mean, count, mean length) and the averaged -COHP per bond type.

Spin channels are summed (a spin-polarised run gives the same totals as an unpolarised one).
Bonds of LOBSTER < 3 ICOHP lists, which stand for several equivalent bonds, are weighted by
that number.  Problems with the folder raise :class:`~hpc_itc.errors.InvalidInput` with
subject ``lobster_dir``.
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
MIN_DZ_A = 0.3  # bonds whose ends differ along the stacking axis by less than this are in-plane and not counted
PLANE_TOL_A = 0.4  # atoms closer than this along the axis (after sorting) belong to one atomic plane
LAYER_THICKNESS_A = 1.5  # planes of a side within this of its interface plane form its first layer
MIN_VACUUM_A = 4.0  # an empty gap of at least this across a lattice vector makes the cell a slab
LENGTH_TOL_A = 0.02  # ICOHPLIST bond length vs the structure's geometry
SHELL_TOL_A = 0.05  # bulk bonds of one element pair within this length form one coordination shell
PAPER_TYPES = ("C(1)-Cu", "N-Cu", "C(1)-C(2)", "C-N")
KINDS = ("interface", "one-material slab", "bulk")
AXES = "abc"
# Cu/diamond: the paper writes N (not N(1)) and names N-Cu and C-N in this order
_PAPER_NAMES = {("Cu", "N"): "N-Cu", ("C(2)", "N"): "C-N"}


@dataclass(frozen=True)
class Side:
    """One side of an interface: its name, elements and first layer (site indices, 0-based)."""

    name: str  # "Cu", "diamond" (C, with N termination), else the side's reduced formula
    elements: tuple[str, ...]
    position: str  # "below" or "above" the interface along the stacking axis
    first_layer_planes: tuple[tuple[int, ...], ...]  # the first layer's planes, from the interface outwards

    @property
    def first_layer(self) -> list[int]:
        return sorted(i for p in self.first_layer_planes for i in p)


@dataclass
class InterfaceLayers:
    """What :func:`identify_interface_layers` found in a structure."""

    kind: str  # one of KINDS
    stacking_axis: str  # "a", "b" or "c" (the lattice vector across the vacuum); "" for bulk
    labels: list[str | None]  # per site; None: not in a first layer (interface only)
    z_A: np.ndarray  # per site, along the stacking axis's normal, unwrapped (0 at the bottom of the slab)
    sides: tuple[Side, ...] = ()  # (below, above) at an interface, else ()
    interface_z_A: float = float("nan")  # midway between the two interface planes
    plane_z_A: list[float] = field(default_factory=list)  # z of every atomic plane found
    normal: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))  # unit normal of the planes

    def side(self, name: str) -> Side:
        """The side called ``name`` ("Cu", "diamond", ...)."""
        for s in self.sides:
            if s.name == name:
                return s
        raise KeyError(f"no side {name!r}; sides: {[s.name for s in self.sides]}")

    def describe(self) -> str:
        """One line for logs: 'interface diamond (below) | Cu (above) along c' or 'bulk crystal'."""
        if self.kind == "interface":
            below, above = self.sides
            return f"interface {below.name} (below) | {above.name} (above) along {self.stacking_axis}"
        if self.kind == "bulk":
            return "bulk crystal (no vacuum gap)"
        return f"one-material slab along {self.stacking_axis} (no plane boundary separates two materials)"


@dataclass
class Bond:
    label: str
    atom1: str
    atom2: str
    sites: tuple[int, int]
    type: str
    length_A: float
    dz_A: float  # along the stacking axis (NaN in a bulk crystal)
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
    layer_thickness_A: float = LAYER_THICKNESS_A

    def counts(self) -> dict[str, int]:
        return {name: t.count for name, t in self.per_type.items()}


def _find_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _vacuum_axes(frac: np.ndarray, spacing_A: np.ndarray, min_vacuum_A: float) -> list[tuple[int, float, float]]:
    """(axis, largest empty gap in Å, fractional coordinate where the atoms start) for every axis with a vacuum gap."""
    found = []
    for axis in range(3):
        fs = np.sort(np.mod(frac[:, axis], 1.0))
        gaps = np.diff(np.append(fs, fs[0] + 1.0)) * spacing_A[axis]
        k = int(np.argmax(gaps))
        if gaps[k] >= min_vacuum_A:
            found.append((axis, float(gaps[k]), float(fs[(k + 1) % len(fs)])))
    return found


def _side_name(elements: set[str], symbols_of_side: list[str]) -> str:
    if elements == {"Cu"}:
        return "Cu"
    if "C" in elements and elements <= {"C", "N"}:
        return "diamond"
    from pymatgen.core import Composition

    return Composition("".join(symbols_of_side)).reduced_formula


def _interface_boundary(planes: list[list[int]], symbols: list[str], z: np.ndarray) -> int | None:
    """Index b of the boundary between planes b-1 and b that is the interface (None: no two materials)."""
    sets = [{symbols[i] for i in p} for p in planes]
    best: tuple[int, float] | None = None
    best_b = None
    for b in range(1, len(planes)):
        below, above = set().union(*sets[:b]), set().union(*sets[b:])
        if below <= above or above <= below:
            continue
        gap = float(z[planes[b]].mean() - z[planes[b - 1]].mean())
        score = (len(below & above), -gap)
        if best is None or score < best:
            best, best_b = score, b
    return best_b


def _first_layer(planes: list[list[int]], z: np.ndarray, thickness_A: float) -> tuple[tuple[int, ...], ...]:
    """The planes (ordered from the interface outwards) within ``thickness_A`` of the first one."""
    z0 = z[planes[0]].mean()
    return tuple(tuple(sorted(p)) for p in planes if abs(z[p].mean() - z0) <= thickness_A + 1e-9)


def _side_labels(side_planes: tuple[tuple[int, ...], ...], symbols: list[str], labels: list[str | None]) -> None:
    numbered = len(side_planes) > 1
    for k, plane in enumerate(side_planes, start=1):
        for i in plane:
            labels[i] = f"{symbols[i]}({k})" if numbered else symbols[i]


def identify_interface_layers(structure, plane_tol_A: float = PLANE_TOL_A, min_vacuum_A: float = MIN_VACUUM_A,
                              where: str = "the structure", layer_thickness_A: float = LAYER_THICKNESS_A) -> InterfaceLayers:
    """Find the stacking axis, the interface and the first layer of each side (see the module doc)."""
    lattice = structure.lattice
    lat = np.asarray(lattice.matrix, dtype=float)
    symbols = [site.specie.symbol for site in structure]
    n = len(symbols)
    frac = np.asarray(structure.frac_coords, dtype=float)
    recip = np.linalg.inv(lat).T  # rows: reciprocal vectors without 2 pi; |b_i| = 1 / (spacing of the lattice planes)
    spacing = 1.0 / np.linalg.norm(recip, axis=1)
    axes = _vacuum_axes(frac, spacing, min_vacuum_A)
    if len(axes) > 1:
        raise InvalidInput("lobster_dir", f"{where} has vacuum across lattice vectors {', '.join(AXES[a] for a, _, _ in axes)}; "
                              "expected a slab (vacuum across one vector) or a bulk crystal")
    if not axes:
        normal = recip[2] / np.linalg.norm(recip[2])
        z = np.mod(frac[:, 2], 1.0) * spacing[2]
        return InterfaceLayers("bulk", "", [None] * n, z, normal=normal)
    axis, _, start = axes[0]
    normal = recip[axis] / np.linalg.norm(recip[axis])
    z = np.mod(frac[:, axis] - start, 1.0) * spacing[axis]
    zorder = np.argsort(z, kind="stable")
    planes: list[list[int]] = [[int(zorder[0])]]
    for a, b in zip(zorder[:-1], zorder[1:]):
        if z[b] - z[a] > plane_tol_A:
            planes.append([])
        planes[-1].append(int(b))
    plane_z = [float(z[p].mean()) for p in planes]
    b = _interface_boundary(planes, symbols, z)
    if b is None:
        return InterfaceLayers("one-material slab", AXES[axis], [None] * n, z, plane_z_A=plane_z, normal=normal)
    labels: list[str | None] = [None] * n
    sides = []
    for position, side_planes in (("below", planes[:b][::-1]), ("above", planes[b:])):
        first = _first_layer(side_planes, z, layer_thickness_A)
        members = [i for p in side_planes for i in p]
        elements = {symbols[i] for i in members}
        sides.append(Side(_side_name(elements, [symbols[i] for i in members]), tuple(sorted(elements)), position, first))
        _side_labels(first, symbols, labels)
    paper = {s.name for s in sides} == {"Cu", "diamond"}
    if paper:  # the paper writes N for the terminating N
        labels = [("N" if lab == "N(1)" else lab) for lab in labels]
    iface = 0.5 * (plane_z[b - 1] + plane_z[b])
    return InterfaceLayers("interface", AXES[axis], labels, z, tuple(sides), float(iface), plane_z, normal)


def bond_type(label1: str, label2: str) -> str:
    """Type of a bond between two labelled sites: the labels in alphabetical order (paper names for Cu/diamond)."""
    a, b = sorted((label1, label2))
    return _PAPER_NAMES.get((a, b), f"{a}-{b}")


def shell_types(bonds_pairs: list[tuple[str, float]], tol_A: float = SHELL_TOL_A) -> list[str]:
    """Bulk bond types 'A-B 1.55 Å': element pair and coordination shell (lengths within tol_A chained)."""
    out = [""] * len(bonds_pairs)
    by_pair: dict[str, list[int]] = {}
    for k, (pair, _) in enumerate(bonds_pairs):
        by_pair.setdefault(pair, []).append(k)
    for pair, ks in by_pair.items():
        ks = sorted(ks, key=lambda k: bonds_pairs[k][1])
        shell: list[int] = []
        for k in ks + [None]:
            if shell and (k is None or bonds_pairs[k][1] - bonds_pairs[shell[-1]][1] > tol_A):
                length = np.mean([bonds_pairs[j][1] for j in shell])
                for j in shell:
                    out[j] = f"{pair} {length:.2f} Å"
                shell = []
            if k is not None:
                shell.append(k)
    return out


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


def _bond_dz(structure, i: int, j: int, translation, length: float, label: str, where: str, normal) -> float:
    """Component along ``normal`` of the bond i -> j (+translation), the image chosen to match the listed length."""
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
    return float(vec[best] @ np.asarray(normal, dtype=float))


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


def analyse_lobster_folder(folder, min_dz_A: float = MIN_DZ_A, plane_tol_A: float = PLANE_TOL_A,
                           layer_thickness_A: float = LAYER_THICKNESS_A) -> CohpResult:
    """Interface bonding (or, for a bulk crystal or one-material slab, all bonds) of a finished LOBSTER folder (module doc)."""
    from pymatgen.core import Structure
    from pymatgen.electronic_structure.core import Spin
    from pymatgen.io.lobster import Cohpcar, Icohplist

    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput("lobster_dir", f"LOBSTER folder '{folder}' not found; give the folder of a finished VASP + LOBSTER run")
    needed = {"ICOHPLIST.lobster": _find_file(folder, ("ICOHPLIST.lobster",)),
              "COHPCAR.lobster": _find_file(folder, ("COHPCAR.lobster",)),
              "POSCAR.lobster.vasp, CONTCAR or POSCAR": _find_file(folder, ("POSCAR.lobster.vasp", "CONTCAR", "POSCAR", "POSCAR.lobster"))}
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
    layers = identify_interface_layers(structure, plane_tol_A, where=where, layer_thickness_A=layer_thickness_A)
    interface = layers.kind == "interface"
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
        if interface and (li is None or lj is None):
            continue
        length = float(coll._list_length[idx])
        dz = _bond_dz(structure, i, j, coll._list_translation[idx], length, label, where, layers.normal)
        if interface and abs(dz) <= min_dz_A:
            continue
        entry = cohpcar.cohp_data[label]
        if sorted(entry["sites"]) != sorted((i, j)):
            raise InvalidInput("lobster_dir", f"bond {label} joins {a1} and {a2} in ICOHPLIST.lobster but sites {[s + 1 for s in entry['sites']]} "
                                  "in COHPCAR.lobster; the files come from different runs")
        icohp = coll._list_icohp[idx]
        minus_icohp = -float(sum(icohp[s] for s in icohp))
        weight = int(coll._list_num[idx]) or 1
        curve = -np.sum([np.asarray(entry["COHP"][s], dtype=float) for s in spins], axis=0)
        kind = bond_type(li, lj) if interface else "-".join(sorted((symbols[i], symbols[j])))
        kept.append(Bond(label, a1, a2, (i, j), kind, length, dz if layers.kind != "bulk" else float("nan"), weight, minus_icohp))
        curves.append(curve)
    if not kept:
        raise InvalidInput("lobster_dir", f"no bond of {icohp_path} joins atoms of the two first layers at different heights "
                              f"(|dz| > {min_dz_A} Å); were COHPs computed for them (cohpGenerator range)?")
    if not interface:  # every bond: typed by element pair and coordination shell
        for bond, name in zip(kept, shell_types([(b.type, b.length_A) for b in kept])):
            bond.type = name

    w = np.array([b.weight for b in kept], dtype=float)
    curves_arr = np.array(curves)
    per_type: dict[str, TypeStats] = {}
    names = [t for t in PAPER_TYPES if any(b.type == t for b in kept)]
    others = {b.type for b in kept} - set(PAPER_TYPES)
    names += sorted(others, key=lambda t: (min(b.length_A for b in kept if b.type == t), t)) if not interface else sorted(others)
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
        charge_spilling_percent=float("nan") if spilling is None else spilling, layer_thickness_A=float(layer_thickness_A),
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
