"""The interface as a surface scientist checks it: registry scan, bonding geometry, adhesion, stiffness.

Pure numerics on ASE structures and :class:`~hpc_itc.core.harmonic.RealSpaceIFC` force constants; energies come
through a callable, so nothing here knows about the MLIP, MPI, HDF5 or the input keys.

Conventions (stated once):

* *sides*: 0 = left material (z below the interface), 1 = right material; N atoms of the termination
  belong to the diamond side.
* *plane gap*: z of the lowest atom of side 1 minus z of the highest atom of side 0 (Å).
* *terminal atoms*: the atoms of the diamond plane facing the interface (C or N) on a metal/diamond
  pair, the first plane of the right side otherwise.  Bonds across the interface are counted from them.
* *bonded*: a pair closer than ``BOND_FACTOR`` x the sum of ASE's covalent radii (Cu-C 2.50 Å, Cu-N 2.44 Å).
* *adhesion energy* (J/m², negative = bound): E(slab) - E(left half) - E(right half) per interface area,
  the halves cut out of the slab unrelaxed (the ideal work of separation with its sign flipped).
* *interface stiffness* K_ab (eV/Å⁴): the restoring force constant per area of a rigid displacement of
  the right half against the left, K_ab = -sum_{i in left, j in right} Phi_ij,ab / A (translational sum
  rule: equal to the sum over the right half's own pairs).  zz resists opening the gap, xx and yy sliding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

EV_PER_A2_TO_J_PER_M2 = 16.021766339  # 1 eV/Å² in J/m²
BOND_FACTOR = 1.2
SOFT_FRACTION = 0.1  # an interface spring below this fraction of the weaker lead's interplanar spring is "soft"
IMAGINARY_THZ = -0.05  # a device mode below this (signed frequency, THz) counts as imaginary


def bond_cutoff_A(a: str, b: str) -> float:
    return BOND_FACTOR * (covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])


# ---- symmetry-reduced registry grid ----------------------------------------------------------------
def half_crystal_ops(atoms: Atoms, symprec: float = 1e-3) -> list[tuple[np.ndarray, np.ndarray]]:
    """z-preserving in-plane operations (R 2x2 in fractional in-plane coordinates, t 2-vector) of one half-crystal.

    ``atoms`` is a slab of the half-crystal (vacuum along z, periodic in plane).  spglib finds its layer
    group; only operations that keep z (no flips, no z translation) map the half-crystal, and its interface
    plane, onto itself.
    """
    import spglib

    cell = (np.array(atoms.cell), atoms.get_scaled_positions(), atoms.get_atomic_numbers())
    sym = spglib.get_symmetry(cell, symprec=symprec)
    ops = []
    for rot, trans in zip(sym["rotations"], sym["translations"]):
        if rot[2, 2] != 1 or rot[2, 0] or rot[2, 1] or rot[0, 2] or rot[1, 2]:
            continue
        if abs(trans[2] - np.round(trans[2])) > 1e-6:
            continue
        ops.append((rot[:2, :2].astype(float), np.asarray(trans[:2], float)))
    return ops


def irreducible_shifts(n_grid: int, ops_left, ops_right, repeat: tuple[int, int] = (1, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Shifts u of the right half (fractions of the *primitive* in-plane vectors) on an n x n grid, reduced.

    Applying an operation (R, t_L) of the left half to the whole bicrystal and undoing with the matching
    (R, t_R) of the right half maps shift u to R u + t_L - t_R (mod the lattice): same energy.  Operations
    are given in the fractional coordinates of the slab's in-plane cell (``repeat`` primitive cells).
    Returns (the irreducible shifts, (n, n) index of each grid point's representative).
    """
    rep_vec = np.asarray(repeat, float)
    grid = np.array([(i / n_grid, j / n_grid) for i in range(n_grid) for j in range(n_grid)])
    owner = -np.ones(len(grid), int)
    reps: list[int] = []

    def index_of(u: np.ndarray) -> int | None:
        k = np.round(u * n_grid) % n_grid
        if np.abs(u * n_grid - np.round(u * n_grid)).max() > 1e-6:
            return None
        return int(k[0] * n_grid + k[1])

    for g, u in enumerate(grid):
        if owner[g] >= 0:
            continue
        owner[g] = len(reps)
        reps.append(g)
        for rl, tl in ops_left:
            for rr, tr in ops_right:
                if not np.allclose(rl, rr):
                    continue
                # work in supercell fractions: u_sc = u / repeat
                v = (rl @ (u / rep_vec) + tl - tr) * rep_vec
                k = index_of(v % 1.0)
                if k is not None and owner[k] < 0:
                    owner[k] = owner[g]
    return grid[reps], owner.reshape(n_grid, n_grid)


@dataclass(frozen=True)
class RegistryScan:
    """Rigid scan: for each irreducible shift, the gap of lowest energy and that energy."""

    shifts_frac: np.ndarray  # (S, 2) irreducible shifts, fractions of the primitive in-plane vectors
    best_gap_A: np.ndarray  # (S,)
    best_energy_eV: np.ndarray  # (S,)
    gap_grid_A: np.ndarray  # (G,)
    energy_eV: np.ndarray  # (S, G) energy on the gap grid
    owner: np.ndarray  # (n, n) irreducible index of each point of the full grid
    start_index: int  # the shift the builder would have used (its row in shifts_frac)
    n_energy_calls: int

    @property
    def chosen(self) -> int:
        return int(np.argmin(self.best_energy_eV))

    @property
    def gain_eV(self) -> float:
        """Energy gained by the chosen registry over the start registry (>= 0), each at its best rigid gap."""
        return float(self.best_energy_eV[self.start_index] - self.best_energy_eV[self.chosen])

    def surface(self) -> np.ndarray:
        """(n, n) lowest rigid energy on the full shift grid, relative to the minimum (eV)."""
        e = self.best_energy_eV - self.best_energy_eV.min()
        return e[self.owner]


def scan_registry(energy: Callable[[tuple[float, float], float], float], shifts: np.ndarray, owner: np.ndarray,
                  start_shift: Sequence[float], gap_grid_A: np.ndarray, refine_tol_A: float = 2e-3) -> RegistryScan:
    """Rigid scan of E(shift, gap): the gap grid, then a bounded scalar minimisation around its best point."""
    from scipy.optimize import minimize_scalar

    calls = 0

    def e(shift, gap) -> float:
        nonlocal calls
        calls += 1
        return float(energy((float(shift[0]), float(shift[1])), float(gap)))

    table = np.array([[e(u, g) for g in gap_grid_A] for u in shifts])
    best_gap, best_e = np.empty(len(shifts)), np.empty(len(shifts))
    step = float(gap_grid_A[1] - gap_grid_A[0])
    for k, u in enumerate(shifts):
        m = int(np.argmin(table[k]))
        if 0 < m < len(gap_grid_A) - 1:
            res = minimize_scalar(lambda g: e(u, g), bounds=(gap_grid_A[m] - step, gap_grid_A[m] + step), method="bounded",
                                  options={"xatol": refine_tol_A})
            best_gap[k], best_e[k] = (res.x, res.fun) if res.fun < table[k, m] else (gap_grid_A[m], table[k, m])
        else:  # minimum on the edge of the grid (unbound at this shift): keep the edge
            best_gap[k], best_e[k] = gap_grid_A[m], table[k, m]
    n = owner.shape[0]
    start = np.round(np.asarray(start_shift, float) * n).astype(int) % n  # the grid point nearest the start registry
    return RegistryScan(np.asarray(shifts), best_gap, best_e, np.asarray(gap_grid_A), table, owner,
                        int(owner[start[0], start[1]]), calls)


# ---- geometry -----------------------------------------------------------------------------------------
def terminal_atoms(atoms: Atoms, side: np.ndarray, plane_tol_A: float = 0.3) -> np.ndarray:
    """Indices of the terminal atoms (see the module doc): the facing plane of the covalent side."""
    symbols = np.array(atoms.get_chemical_symbols())
    z = atoms.positions[:, 2]
    right_nonmetal = np.any(np.isin(symbols[side == 1], ("C", "N")))
    left_metal = np.all(symbols[side == 0] == "Cu")
    if right_nonmetal or left_metal:
        sel = np.flatnonzero(side == 1)
        return sel[z[sel] < z[sel].min() + plane_tol_A]
    sel = np.flatnonzero(side == 0)
    return sel[z[sel] > z[sel].max() - plane_tol_A]


def pair_key(a: str, b: str) -> str:
    """Name of a species pair, metal first ("Cu-C", "Cu-N"), else alphabetical ("C-C")."""
    if "Cu" in (a, b) and a != b:
        return f"Cu-{b if a == 'Cu' else a}"
    return "-".join(sorted((a, b)))


def cross_bonds(atoms: Atoms, side: np.ndarray, terminal: np.ndarray) -> dict[str, dict[str, float]]:
    """Per species pair (:func:`pair_key`; terminal T, X across the interface): nearest distance and coordination.

    For each terminal atom, its nearest atom of species X on the other side (minimum image in plane) and
    the number of X atoms within the bond cutoff.  Returns mean and range over the terminal atoms.
    """
    from ase.neighborlist import neighbor_list

    symbols = np.array(atoms.get_chemical_symbols())
    # every periodic image counts (in a 1x1 cell both Cu of a bridge site are images of one atom)
    ii, jj, dd = neighbor_list("ijd", atoms, 6.0)
    out: dict[str, dict[str, float]] = {}
    for t in terminal:
        mine = (ii == t) & (side[jj] != side[t])
        for x in sorted(set(symbols[side != side[t]])):
            d = dd[mine & (symbols[jj] == x)]
            key = pair_key(symbols[t], x)
            rec = out.setdefault(key, {"_d": [], "_n": [], "_pair": (symbols[t], x)})
            rec["_d"].append(float(d.min()) if len(d) else float("inf"))
            rec["_n"].append(int((d < bond_cutoff_A(symbols[t], x)).sum()))
    for key, rec in out.items():
        d, n, pair = np.array(rec.pop("_d")), np.array(rec.pop("_n")), rec.pop("_pair")
        rec.update(nearest_A=float(d.mean()), nearest_min_A=float(d.min()), nearest_max_A=float(d.max()),
                   coordination=float(n.mean()), coordination_min=int(n.min()), coordination_max=int(n.max()),
                   n_terminal=int(len(d)), bond_cutoff_A=bond_cutoff_A(*pair))
    return out


def plane_gap_A(atoms: Atoms, side: np.ndarray) -> float:
    z = atoms.positions[:, 2]
    return float(z[side == 1].min() - z[side == 0].max())


def layer_spacings(atoms: Atoms, side: np.ndarray, layer_from_interface: np.ndarray, region: np.ndarray,
                   steps_A: tuple[float, float]) -> dict[str, np.ndarray]:
    """Spacing of consecutive layers (mean z of each layer) on each side, and its deviation from the lead's step.

    Returns per side arrays ordered from the interface outwards: ``spacing_<side>`` (Å), ``deviation_<side>``
    (Å, spacing - lead step), ``device_<side>`` (True where both layers are device layers).
    """
    z = atoms.positions[:, 2]
    out = {}
    for s, name, order in ((0, "left", -1), (1, "right", 1)):
        layers = sorted(set(layer_from_interface[side == s].tolist()), key=lambda k: abs(k))
        mean_z = np.array([z[(side == s) & (layer_from_interface == k)].mean() for k in layers])
        dev = np.array([np.all(region[(side == s) & (layer_from_interface == k)] == 1) for k in layers])
        spacing = np.abs(np.diff(mean_z))
        out[f"spacing_{name}"] = spacing
        out[f"deviation_{name}"] = spacing - steps_A[s]
        out[f"device_{name}"] = dev[:-1] & dev[1:]
    return out


def max_device_spacing_deviation(spacings: dict[str, np.ndarray], skip: int = 2) -> float:
    """Largest |spacing - lead step| (Å) of device layers beyond the first ``skip`` spacings of each side."""
    worst = 0.0
    for name in ("left", "right"):
        dev, inside = spacings[f"deviation_{name}"], spacings[f"device_{name}"]
        sel = np.flatnonzero(inside)
        sel = sel[sel >= skip]
        if len(sel):
            worst = max(worst, float(np.abs(dev[sel]).max()))
    return worst


def interface_area_A2(atoms: Atoms) -> float:
    c = np.array(atoms.cell)
    return float(abs(np.cross(c[0], c[1])[2]))


def adhesion_J_m2(energy: Callable[[Atoms], float], atoms: Atoms, side: np.ndarray, slab_energy_eV: float | None = None) -> dict[str, float]:
    """Adhesion energy (module doc) of the slab ``atoms``; ``energy`` evaluates an ASE structure (eV)."""
    e_slab = energy(atoms) if slab_energy_eV is None else slab_energy_eV
    halves = [energy(atoms[np.flatnonzero(side == s)]) for s in (0, 1)]
    area = interface_area_A2(atoms)
    w = (e_slab - halves[0] - halves[1]) / area
    return {"adhesion_J_m2": float(w * EV_PER_A2_TO_J_PER_M2), "adhesion_eV_A2": float(w), "energy_slab_eV": float(e_slab),
            "energy_left_half_eV": float(halves[0]), "energy_right_half_eV": float(halves[1]), "area_A2": area}


# ---- stiffness and stability from force constants -----------------------------------------------------
def interface_stiffness(ifc, side: np.ndarray, area_A2: float) -> np.ndarray:
    """K (3x3, eV/Å⁴) of a rigid displacement of side 1 against side 0 (module doc), from pair force constants."""
    cross = (side[ifc.i] == 0) & (side[ifc.j] == 1)
    return -ifc.phi[cross].sum(axis=0) / area_A2


def lead_interplanar_stiffness(ifc, area_A2: float) -> np.ndarray:
    """K (3x3, eV/Å⁴) between the half-crystals of a bulk lead cut between two layers (per layer-cell area).

    A pair from layer L to layer L + D (D > 0) crosses the cut for D choices of L, so it counts D times.
    The cut falls where the interface does (diamond: between a layer's upper atom and the next layer's lower).
    """
    ahead = ifc.shift[:, 2] > 0
    weight = ifc.shift[ahead, 2].astype(float)
    return -(ifc.phi[ahead] * weight[:, None, None]).sum(axis=0) / area_A2


def gamma_frequencies_THz(ifc) -> np.ndarray:
    """Signed frequencies (THz, negative = imaginary) at the in-plane Gamma point, rigid translations removed."""
    from hpc_itc.core.harmonic import OMEGA_TO_THZ

    n = ifc.n_atoms
    d = np.zeros((3 * n, 3 * n))
    for i, j, phi in zip(ifc.i, ifc.j, ifc.phi):
        d[3 * i:3 * i + 3, 3 * j:3 * j + 3] += phi
    d = 0.5 * (d + d.T)
    w = 1.0 / np.sqrt(np.repeat(ifc.masses, 3))
    dyn = d * w[:, None] * w[None, :]
    # the three translations of the whole slab, mass-weighted, projected out
    t = np.zeros((3 * n, 3))
    for a in range(3):
        t[a::3, a] = np.sqrt(ifc.masses)
    q, _ = np.linalg.qr(t)
    p = np.eye(3 * n) - q @ q.T
    ev = np.linalg.eigvalsh(p @ dyn @ p)
    # drop the three zeros that the projection created
    order = np.argsort(np.abs(ev))
    ev = np.sort(np.delete(ev, order[:3]))
    return np.sign(ev) * np.sqrt(np.abs(ev)) * OMEGA_TO_THZ


def geometry_warnings(bonds: dict[str, dict[str, float]], adhesion: float | None, registry_given: bool) -> list[str]:
    """Warnings from the relaxed geometry and the adhesion energy."""
    out = []
    cause = ("the registry (structure.interface_shift_frac was given; [] takes the bonded registry, "
             "relax.registry_search = true scans for it)" if registry_given else "the model (mlip.model) or the registry")
    if adhesion is not None and adhesion >= 0:
        out.append(f"interface unbound: adhesion energy {adhesion:+.3f} J/m² >= 0; likely cause: {cause}")
    for key, rec in bonds.items():
        if key.startswith("Cu-"):
            if rec["coordination_max"] == 0:
                out.append(f"no {key} bond across the interface: nearest {rec['nearest_A']:.2f} Å > {rec['bond_cutoff_A']:.2f} Å "
                           f"(detached); likely cause: {cause}")
    return out


def stiffness_warnings(k_eV_A4: np.ndarray, lead_zz_eV_A4: float, lowest_THz: float, registry_given: bool) -> list[str]:
    """Warnings from the interface stiffness and the lowest device Gamma frequency."""
    out = []
    cause = ("the registry (structure.interface_shift_frac)" if registry_given else "the registry or the model (mlip.model)")
    diag = np.diag(k_eV_A4)
    eig = np.linalg.eigvalsh(0.5 * (k_eV_A4 + k_eV_A4.T))
    if eig.min() < 0:
        out.append(f"interface on a saddle: rigid-shift stiffness (xx, yy, zz) = ({diag[0]:.3f}, {diag[1]:.3f}, {diag[2]:.3f}) eV/Å⁴, "
                   f"lowest eigenvalue {eig.min():.3f} < 0; likely cause: {cause} (try relax.registry_search = true or relax.rattle_A)")
    elif diag[2] < SOFT_FRACTION * lead_zz_eV_A4:
        out.append(f"soft interface: zz stiffness {diag[2]:.3f} eV/Å⁴ < {SOFT_FRACTION:g} x the weaker lead's interplanar "
                   f"{lead_zz_eV_A4:.3f} eV/Å⁴; likely cause: {cause}")
    if lowest_THz < IMAGINARY_THZ:
        out.append(f"imaginary device mode at Gamma: {lowest_THz:.3f} THz (the relaxed slab is not a minimum); likely cause: {cause}")
    return out


def relaxed_report(atoms: Atoms, side: np.ndarray, region: np.ndarray, layer_from_interface: np.ndarray,
                   lead_steps_A: tuple[float, float], energy: Callable[[Atoms], float] | None,
                   registry_given: bool, slab_energy_eV: float | None = None) -> dict:
    """Bonding diagnostics of a relaxed slab: gap, bonds, layer spacings, adhesion (when ``energy``), warnings.

    ``slab_energy_eV``: the slab's energy when the caller has it (the relaxation's last step), saving a call.
    """
    terminal = terminal_atoms(atoms, side)
    bonds = cross_bonds(atoms, side, terminal)
    spacings = layer_spacings(atoms, side, layer_from_interface, region, lead_steps_A)
    adhesion = adhesion_J_m2(energy, atoms, side, slab_energy_eV) if energy is not None else None
    reference = vendored_dft_reference()
    for key, rec in bonds.items():
        if key in reference:
            rec.update({f"dft_{k}": v for k, v in reference[key].items()})
    return {
        "plane_gap_A": plane_gap_A(atoms, side),
        "terminal_atoms": terminal,
        "bonds": bonds,
        "spacings": spacings,
        "layer_spacing_max_deviation_A": max_device_spacing_deviation(spacings),
        "adhesion": adhesion,
        "warnings": geometry_warnings(bonds, adhesion["adhesion_J_m2"] if adhesion else None, registry_given)
        + dft_comparison_warnings(bonds, reference, registry_given),
    }


# ---- the DFT reference ----------------------------------------------------------------------------------
def terminal_bond_lengths(atoms: Atoms, species: str, max_bond_A: float = 2.5) -> np.ndarray | None:
    """Nearest Cu distance (Å) of every ``species`` atom bonded to Cu in a Cu/diamond configuration.

    Returns None for a configuration that is not a plain Cu/(N-terminated) diamond interface: one with
    Cu bonded to ``species`` inside the same atomic plane (a mixed Cu/N terminal plane, |dz| < 0.6 Å).
    """
    from ase.neighborlist import neighbor_list

    symbols = np.array(atoms.get_chemical_symbols())
    if "Cu" not in symbols or species not in symbols:
        return None
    i, j, d, vec = neighbor_list("ijdD", atoms, max_bond_A)
    pair = (symbols[i] == species) & (symbols[j] == "Cu")
    if not pair.any() or np.any(np.abs(vec[pair, 2]) < 0.6):
        return None
    return np.array([d[pair & (i == t)].min() for t in np.unique(i[pair])])


def dft_bond_reference(frames: Sequence[Atoms]) -> dict[str, dict[str, float]]:
    """Distribution of the terminal atom's nearest Cu distance in DFT interface configurations.

    Near-equilibrium configurations only: rattled ones (``info['data_type'] == 'rattle'``, compressed)
    are left out; Cu-C from the bare interfaces (no N), Cu-N from the N-terminated ones.  Per pair: mean,
    standard deviation, 10th and 90th percentile over all terminal atoms, number of atoms and configurations.
    """
    out = {}
    for species, key in (("C", "Cu-C"), ("N", "Cu-N")):
        pooled, n_frames = [], 0
        for atoms in frames:
            symbols = set(atoms.get_chemical_symbols())
            if atoms.info.get("data_type") == "rattle" or (species == "C" and "N" in symbols):
                continue
            lengths = terminal_bond_lengths(atoms, species)
            if lengths is not None:
                pooled.append(lengths)
                n_frames += 1
        if pooled:
            d = np.concatenate(pooled)
            out[key] = {"mean_A": float(d.mean()), "std_A": float(d.std()), "p10_A": float(np.percentile(d, 10)),
                        "p90_A": float(np.percentile(d, 90)), "n_atoms": int(len(d)), "n_configurations": n_frames}
    return out


@lru_cache(maxsize=1)
def vendored_dft_reference() -> dict[str, dict[str, float]]:
    """:func:`dft_bond_reference` of the PBEsol configurations shipped in ``hpc_itc/data/`` (origin in its README)."""
    from importlib import resources

    from ase.io import read

    path = resources.files("hpc_itc") / "data" / "cunc_pbesol_crystal.extxyz"
    return dft_bond_reference(read(str(path), ":", parallel=False))  # rank 0 alone: no ASE broadcast


def dft_comparison_warnings(bonds: dict[str, dict[str, float]], reference: dict[str, dict[str, float]], registry_given: bool) -> list[str]:
    """A warning for each Cu-C / Cu-N bond outside the central 80 % of the DFT distribution."""
    out = []
    for key, rec in bonds.items():
        ref = reference.get(key)
        if ref is None or ref["p10_A"] <= rec["nearest_A"] <= ref["p90_A"]:
            continue
        cause = "the registry (structure.interface_shift_frac)" if registry_given else "the model (mlip.model)"
        out.append(f"{key} nearest distance {rec['nearest_A']:.3f} Å outside the vendored PBEsol range {ref['p10_A']:.2f}-{ref['p90_A']:.2f} Å "
                   f"(10th-90th percentile, mean {ref['mean_A']:.3f}); likely cause: {cause}")
    return out
