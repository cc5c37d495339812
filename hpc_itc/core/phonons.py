"""Bulk phonons of the leads from the stage's own force constants: dispersion, DOS, experiment.

The leads' unit cells are (001) layer cells (a1, a2 in plane, a3 to the next layer; see
:mod:`hpc_itc.core.structure`), in the frame x = [110], y = [-110], z = [001] of the cubic crystal.
High-symmetry points are given in cubic coordinates (units 2 pi / a) with X = (0, 0, 1) along
the transport direction [001]; in-plane components are scaled by the in-plane lattice constant
a_par = sqrt(2) |a1| and z components by a_perp = 2 a3_z, so a strained (tetragonal) lead keeps its
zone-boundary points at half reciprocal lattice vectors: X = (0, 0, 1/2), L = (1/2, 0, 1/2) in the
layer cell's reduced coordinates, for any strain.

Frequencies in THz (phonopy's units with eV, Å, amu), DOS in states/THz per primitive cell (integral
3 x atoms).  Path distances are phonopy's (1/Å, no 2 pi) in :class:`LeadPhonons` and stored with the
factor 2 pi, like the transport stage's mode maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tomllib

# cubic coordinates, units 2 pi / a (X along z = [001], the transport direction)
FCC_POINTS_CUBIC = {
    "G": (0.0, 0.0, 0.0),
    "X": (0.0, 0.0, 1.0),
    "U": (0.25, 0.25, 1.0),
    "K": (0.75, 0.75, 0.0),
    "L": (0.5, 0.5, 0.5),
    "W": (0.5, 0.0, 1.0),
    "X_inplane": (1.0, 0.0, 0.0),  # X along [100], in the interface plane (differs from X when strained)
}
FCC_PATH = (("G", "X", "U"), ("K", "G", "L", "W", "X"))
REFERENCE_FILE = Path(__file__).resolve().parents[1] / "data" / "reference_phonons.toml"

# which computed modes each reference entry is compared with: (point, branch, indices within the branch)
# branch "T" / "L": transverse / longitudinal modes sorted by frequency; "all": all modes sorted
REFERENCE_MATCH = {
    "cu": {"X_L": ("X", "L", (0,)), "X_T": ("X", "T", (0, 1)), "L_L": ("L", "L", (0,)), "L_T": ("L", "T", (0, 1))},
    "diamond": {"gamma_optical": ("G", "all", (3, 4, 5)), "X_TA": ("X", "T", (0, 1)), "X_TO": ("X", "T", (2, 3)),
                "X_LA_LO": ("X", "L", (0, 1)), "L_TA": ("L", "T", (0, 1)), "L_LA": ("L", "L", (0,))},
}


def reduced_qpoint(lattice: np.ndarray, cubic: tuple[float, float, float]) -> np.ndarray:
    """Reduced coordinates (in the layer cell's b1, b2, b3) of a point given in cubic units 2 pi / a."""
    lattice = np.asarray(lattice, float)
    a_par = np.sqrt(2.0) * np.linalg.norm(lattice[0])
    a_perp = 2.0 * lattice[2, 2]
    k1, k2, k3 = cubic
    q_cart = np.array([(k1 + k2) / np.sqrt(2.0) / a_par, (-k1 + k2) / np.sqrt(2.0) / a_par, k3 / a_perp])  # 1/Å, no 2 pi
    return lattice @ q_cart


@dataclass
class LeadPhonons:
    """Dispersion along the fcc path, total DOS, and the modes at Gamma, X, L (THz)."""

    material: str
    path_qpoints: np.ndarray  # (nq, 3) reduced
    path_distances: np.ndarray  # (nq,) 1/Å
    path_frequencies: np.ndarray  # (nq, nbands) THz
    path_segment: np.ndarray  # (nq,) segment index
    label_names: list[str]  # at label_distances, "U|K" where the path jumps
    label_distances: np.ndarray
    dos_frequencies: np.ndarray  # THz
    dos: np.ndarray  # states/THz per primitive cell
    mesh: tuple[int, int, int]
    points: dict = field(default_factory=dict)  # name -> {"q": reduced, "frequencies": THz, "longitudinal": fraction}
    comparison: list = field(default_factory=list)  # (label, computed THz, reference THz)

    def frequencies_at(self, name: str) -> np.ndarray:
        return self.points[name]["frequencies"]


def _modes_at(phonon, q_red: np.ndarray, lattice: np.ndarray) -> dict:
    """Frequencies and longitudinal fraction sum_a |e_a . q^|^2 of each mode at one q."""
    phonon.run_qpoints([q_red], with_eigenvectors=True)
    freqs = np.asarray(phonon.qpoints.frequencies[0], float)
    vecs = np.asarray(phonon.qpoints.eigenvectors[0])  # columns, mass-weighted
    q_cart = np.linalg.solve(np.asarray(lattice, float), q_red)  # q = sum_j q_j b_j, b_j columns of inv(lattice)
    nb = vecs.shape[1]
    if np.linalg.norm(q_cart) < 1e-12:
        longitudinal = np.full(nb, np.nan)
    else:
        qhat = q_cart / np.linalg.norm(q_cart)
        e = vecs.T.reshape(nb, -1, 3)
        longitudinal = (np.abs(e @ qhat) ** 2).sum(axis=1) / (np.abs(e) ** 2).sum(axis=(1, 2))
    return {"q": np.asarray(q_red, float), "frequencies": freqs, "longitudinal": longitudinal}


def _branch(point: dict, branch: str, n_basis: int) -> np.ndarray:
    """Frequencies of one branch, sorted: the n_basis most longitudinal modes are 'L', the rest 'T'."""
    f = point["frequencies"]
    if branch == "all":
        return np.sort(f)
    order = np.argsort(-point["longitudinal"], kind="stable")
    chosen = order[:n_basis] if branch == "L" else order[n_basis:]
    return np.sort(f[chosen])


def load_reference(material: str) -> dict[str, float]:
    with REFERENCE_FILE.open("rb") as fh:
        table = tomllib.load(fh)
    return {k: float(v) for k, v in table.get(material, {}).items() if k in REFERENCE_MATCH.get(material, {})}


def compare_with_reference(material: str, points: dict, n_basis: int) -> list[tuple[str, float, float]]:
    """(label, computed, reference) for each reference entry of ``material`` (THz)."""
    out = []
    reference = load_reference(material)
    for label, (point, branch, idx) in REFERENCE_MATCH.get(material, {}).items():
        if label not in reference or point not in points:
            continue
        f = _branch(points[point], branch, n_basis)
        if max(idx) >= len(f):
            continue
        out.append((label, float(np.mean(f[list(idx)])), reference[label]))
    return out


def lead_phonons(phonon, lattice: np.ndarray, material: str, mesh=(16, 16, 16), points_per_segment: int = 51) -> LeadPhonons:
    """Band structure along Gamma-X-U|K-Gamma-L-W-X, mesh DOS (tetrahedra) and the modes at G, X, L."""
    lattice = np.asarray(lattice, float)
    segments, starts, connections = [], [], []
    for branch in FCC_PATH:
        for k in range(len(branch) - 1):
            a = reduced_qpoint(lattice, FCC_POINTS_CUBIC[branch[k]])
            b = reduced_qpoint(lattice, FCC_POINTS_CUBIC[branch[k + 1]])
            segments.append(a + np.linspace(0.0, 1.0, points_per_segment)[:, None] * (b - a))
            starts.append((branch[k], branch[k + 1]))
            connections.append(k < len(branch) - 2)
    phonon.run_band_structure(segments, with_eigenvectors=False, path_connections=connections)
    bs = phonon.band_structure
    qpts = np.vstack(bs.qpoints)
    dist = np.concatenate(bs.distances)
    freqs = np.vstack(bs.frequencies)
    seg = np.concatenate([np.full(len(q), k) for k, q in enumerate(bs.qpoints)])
    names, where = [starts[0][0]], [float(bs.distances[0][0])]
    for k, (a, b) in enumerate(starts):
        end = float(bs.distances[k][-1])
        if k + 1 < len(starts) and not connections[k]:
            names.append(f"{b}|{starts[k + 1][0]}")
        else:
            names.append(b)
        where.append(end)
    phonon.run_mesh(list(mesh), with_eigenvectors=False, is_mesh_symmetry=True, is_gamma_center=True)
    phonon.run_total_dos()
    dos = {"frequency_points": phonon.total_dos.frequency_points, "total_dos": phonon.total_dos.dos}
    n_basis = len(phonon.primitive)
    points = {name: _modes_at(phonon, reduced_qpoint(lattice, FCC_POINTS_CUBIC[name]), lattice) for name in ("G", "X", "L", "X_inplane")}
    return LeadPhonons(material, qpts, dist, freqs, seg, names, np.array(where), np.asarray(dos["frequency_points"], float),
                       np.asarray(dos["total_dos"], float), tuple(int(x) for x in mesh), points,
                       compare_with_reference(material, points, n_basis))
