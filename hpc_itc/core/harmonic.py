"""Real-space harmonic models and the dynamical blocks the scattering solver needs.

A :class:`RealSpaceIFC` is a list of pair force constants Phi(i, j + T) between
atom i of a reference cell and atom j translated by the lattice vector
T = shift . lattice (lattice rows a1, a2, a3).  Bloch sums use the *cell gauge*:
the phase of a pair is exp(i theta . shift) with theta_k = q . a_k, and atom
positions carry no phase.  Leads and device are written with the same unwrapped
atom positions (see :mod:`hpc_itc.core.structure`), so their blocks match.

Units: force constants in eV/Å^2, masses in amu; mass-weighted matrices are in
eV/(Å^2 amu), whose square root times :data:`OMEGA_TO_THZ` is a frequency in THz.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# sqrt(eV / (Å^2 amu)) expressed as f = omega/2pi in THz, and in rad/s.  phonopy's own factor, so
# frequencies agree with phonopy's to rounding (its physical constants differ from CODATA 2018 by ~1e-7)
from phonopy.physical_units import get_physical_units as _phonopy_units

OMEGA_TO_THZ = float(_phonopy_units().DefaultToTHz)
OMEGA_UNIT_RAD_S = OMEGA_TO_THZ * 2 * np.pi * 1e12


@dataclass
class RealSpaceIFC:
    """Pair force constants of a crystal (periodic along a1, a2 and, for bulk, a3)."""

    lattice: np.ndarray  # (3, 3) Å, rows a1, a2, a3
    positions: np.ndarray  # (N, 3) Å, unwrapped
    masses: np.ndarray  # (N,) amu
    i: np.ndarray  # (P,) int
    j: np.ndarray  # (P,) int
    shift: np.ndarray  # (P, 3) int
    phi: np.ndarray  # (P, 3, 3) eV/Å^2
    _flat_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_atoms(self) -> int:
        return len(self.masses)

    @property
    def n_dof(self) -> int:
        return 3 * self.n_atoms

    def pair_vectors(self) -> np.ndarray:
        """Cartesian vectors from atom i to the image of atom j (Å)."""
        return self.positions[self.j] + self.shift @ self.lattice - self.positions[self.i]

    # ---- construction ------------------------------------------------------------
    @classmethod
    def from_phonopy(cls, phonon, frac_positions: np.ndarray, masses: np.ndarray) -> "RealSpaceIFC":
        """Pairs from a phonopy object with force constants (compact or full).

        ``frac_positions`` are the unit cell's unwrapped fractional coordinates
        (the same atoms phonopy was given); the integer lattice shift of each pair
        is read off phonopy's shortest vectors, and a pair with several equally
        short images is split equally among them (as phonopy's dynamical matrix does).
        """
        primitive = phonon.primitive
        svecs, multi = primitive.get_smallest_vectors()
        fc = phonon.force_constants
        p2s = np.asarray(primitive.p2s_map)
        p2p = primitive.p2p_map  # supercell index of a primitive atom -> primitive index
        s2pp = np.array([p2p[k] for k in primitive.s2p_map])
        n_sc = multi.shape[0]
        compact = fc.shape[0] != fc.shape[1]
        frac = np.asarray(frac_positions, float)
        rows_i, rows_j, shifts, phis = [], [], [], []
        for ip in range(len(p2s)):
            fc_row = fc[ip] if compact else fc[p2s[ip]]
            for js in range(n_sc):
                count, addr = multi[js, ip]
                jp = s2pp[js]
                block = fc_row[js] / count
                for v in svecs[addr : addr + count]:
                    t = frac[ip] + v - frac[jp]
                    rows_i.append(ip)
                    rows_j.append(jp)
                    shifts.append(np.rint(t).astype(int))
                    phis.append(block)
        lattice = np.asarray(primitive.cell, float)
        positions = frac @ lattice
        return cls(lattice, positions, np.asarray(masses, float), np.array(rows_i), np.array(rows_j),
                   np.array(shifts, dtype=int).reshape(-1, 3), np.array(phis).reshape(-1, 3, 3))

    def truncated(self, cutoff_A: float) -> tuple["RealSpaceIFC", float]:
        """Drop pairs longer than ``cutoff_A`` and restore the acoustic sum rule.

        What was dropped from a row is added to that atom's on-site block (then
        symmetrised), so translations cost no energy again.  Returns the new model
        and the largest |sum_j Phi_ij| element remaining (eV/Å^2), a measure of how
        well the sum rule holds after the correction.
        """
        dist = np.linalg.norm(self.pair_vectors(), axis=1)
        onsite = (self.i == self.j) & ~self.shift.any(axis=1)
        keep = (dist <= cutoff_A + 1e-9) | onsite
        phi = self.phi.copy()
        dropped = np.zeros((self.n_atoms, 3, 3))
        np.add.at(dropped, self.i[~keep], self.phi[~keep])
        # fold the dropped tail into the (single, merged) on-site block of each atom
        onsite_idx = np.flatnonzero(onsite)
        for atom, p in enumerate(self.onsite_pairs()):
            if p >= 0:
                phi[p] = phi[p] + dropped[atom]
        for p in onsite_idx:
            phi[p] = 0.5 * (phi[p] + phi[p].T)
        out = RealSpaceIFC(self.lattice, self.positions, self.masses, self.i[keep], self.j[keep], self.shift[keep], phi[keep])
        return out, out.sum_rule_violation()

    def onsite_pairs(self) -> np.ndarray:
        """Index of each atom's (first) on-site pair Phi(i, i, T = 0), -1 for an atom without one."""
        out = -np.ones(self.n_atoms, dtype=int)
        onsite = np.flatnonzero((self.i == self.j) & ~self.shift.any(axis=1))
        atoms, first = np.unique(self.i[onsite], return_index=True)
        out[atoms] = onsite[first]
        return out

    def sum_rule_violation(self) -> float:
        """max |sum_{j,T} Phi(i, j+T)| over atoms and Cartesian elements (eV/Å^2)."""
        total = np.zeros((self.n_atoms, 3, 3))
        np.add.at(total, self.i, self.phi)
        return float(np.abs(total).max())

    def inplane_supercell(self, n: int, m: int) -> "RealSpaceIFC":
        """The same crystal on the in-plane supercell (n a1, m a2, a3).

        New atom order is (c1, c2, atom) with c1 slowest, matching the slab's layers.
        """
        if (n, m) == (1, 1):
            return self
        na = self.n_atoms
        cells = [(c1, c2) for c1 in range(n) for c2 in range(m)]
        lattice = np.array([n * self.lattice[0], m * self.lattice[1], self.lattice[2]])
        positions = np.vstack([self.positions + c1 * self.lattice[0] + c2 * self.lattice[1] for c1, c2 in cells])
        masses = np.tile(self.masses, len(cells))
        ii, jj, ss, pp = [], [], [], []
        for k, (c1, c2) in enumerate(cells):
            t1 = c1 + self.shift[:, 0]
            t2 = c2 + self.shift[:, 1]
            target_cell = np.mod(t1, n) * m + np.mod(t2, m)
            ii.append(k * na + self.i)
            jj.append(target_cell * na + self.j)
            ss.append(np.column_stack([np.floor_divide(t1, n), np.floor_divide(t2, m), self.shift[:, 2]]))
            pp.append(self.phi)
        return RealSpaceIFC(lattice, positions, masses, np.concatenate(ii), np.concatenate(jj),
                            np.vstack(ss).astype(int), np.concatenate(pp))

    def subset(self, atoms: np.ndarray) -> "RealSpaceIFC":
        """Pairs among ``atoms`` only, renumbered in the given order."""
        atoms = np.asarray(atoms)
        new_index = -np.ones(self.n_atoms, dtype=int)
        new_index[atoms] = np.arange(len(atoms))
        keep = (new_index[self.i] >= 0) & (new_index[self.j] >= 0)
        return RealSpaceIFC(self.lattice, self.positions[atoms], self.masses[atoms], new_index[self.i[keep]],
                            new_index[self.j[keep]], self.shift[keep], self.phi[keep])

    # ---- Bloch sums ----------------------------------------------------------------
    @property
    def layer_offsets(self) -> np.ndarray:
        return np.unique(self.shift[:, 2])

    def _flat(self, n3: int | None):
        """Cached flat indices and mass-weighted values for pairs with shift3 == n3 (None: all)."""
        key = n3
        if key not in self._flat_cache:
            sel = np.ones(len(self.i), bool) if n3 is None else (self.shift[:, 2] == n3)
            i, j, phi = self.i[sel], self.j[sel], self.phi[sel]
            weight = 1.0 / np.sqrt(self.masses[i] * self.masses[j])
            a = np.arange(3)
            rows = (3 * i)[:, None, None] + a[None, :, None]
            cols = (3 * j)[:, None, None] + a[None, None, :]
            flat = (rows * self.n_dof + cols).reshape(-1)
            values = (phi * weight[:, None, None]).reshape(len(i), 9)
            self._flat_cache[key] = (flat, values, self.shift[sel])
        return self._flat_cache[key]

    def _bloch_sum(self, n3: int | None, phases3: np.ndarray) -> np.ndarray:
        flat, values, shift = self._flat(n3)
        ph = np.exp(1j * (shift @ phases3))
        w = (values * ph[:, None]).reshape(-1)
        size = self.n_dof * self.n_dof
        re = np.bincount(flat, weights=w.real, minlength=size)
        im = np.bincount(flat, weights=w.imag, minlength=size)
        return (re + 1j * im).reshape(self.n_dof, self.n_dof)

    def layer_block(self, theta: np.ndarray, n3: int) -> np.ndarray:
        """Mass-weighted coupling from a layer to the layer n3 further along a3, at in-plane phases theta."""
        return self._bloch_sum(n3, np.array([theta[0], theta[1], 0.0]))

    def dynamical_matrix(self, phases: np.ndarray) -> np.ndarray:
        """Mass-weighted D at phases (theta1, theta2, phi3) = (q.a1, q.a2, q.a3); Hermitian."""
        d = self._bloch_sum(None, np.asarray(phases, float))
        return 0.5 * (d + d.conj().T)

    def dynamical_matrix_derivative(self, phases: np.ndarray, axis: int) -> np.ndarray:
        """dD/d(phase_axis): sum of i * shift_axis * Phi * exp(i phases . shift)."""
        flat, values, shift = self._flat(None)
        ph = 1j * shift[:, axis] * np.exp(1j * (shift @ np.asarray(phases, float)))
        w = (values * ph[:, None]).reshape(-1)
        size = self.n_dof * self.n_dof
        re = np.bincount(flat, weights=w.real, minlength=size)
        im = np.bincount(flat, weights=w.imag, minlength=size)
        dd = (re + 1j * im).reshape(self.n_dof, self.n_dof)
        return 0.5 * (dd + dd.conj().T)


@dataclass
class PrincipalLayerLead:
    """A bulk lead regrouped in principal layers of ``p`` primitive layers.

    ``bulk`` is the lead's RealSpaceIFC on the device's in-plane cell; couplings
    reach at most ``p`` layers, so principal layers couple only to neighbours.
    """

    bulk: RealSpaceIFC
    p: int

    @classmethod
    def from_bulk(cls, bulk: RealSpaceIFC, min_layers: int = 1) -> "PrincipalLayerLead":
        reach = int(np.abs(bulk.layer_offsets).max()) if len(bulk.i) else 1
        return cls(bulk, max(reach, min_layers, 1))

    @property
    def n_dof(self) -> int:
        return self.p * self.bulk.n_dof

    def blocks(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(h00, h01) at in-plane phases theta; h01 couples a principal layer to the next along +z."""
        nd, p = self.bulk.n_dof, self.p
        layer = {n3: self.bulk.layer_block(theta, n3) for n3 in range(-p, p + 1)}
        zero = np.zeros((nd, nd), complex)
        h00 = np.block([[layer.get(l2 - l1, zero) for l2 in range(p)] for l1 in range(p)])
        h01 = np.block([[layer.get(l2 + p - l1, zero) for l2 in range(p)] for l1 in range(p)])
        return 0.5 * (h00 + h00.conj().T), h01

    def bloch_vector(self, mode: np.ndarray, phases_primitive: np.ndarray, repeat: tuple[int, int]) -> np.ndarray:
        """Lay a primitive-cell eigenvector on one principal layer of the in-plane supercell.

        Component (layer l, cell c1, c2, basis b) = e_b exp(i(theta1 c1 + theta2 c2 + phi3 l)).
        """
        n, m = repeat
        t1, t2, f3 = phases_primitive
        nb = len(mode) // 3
        e = mode.reshape(nb, 3)
        parts = []
        for l in range(self.p):
            for c1 in range(n):
                for c2 in range(m):
                    parts.append(e * np.exp(1j * (t1 * c1 + t2 * c2 + f3 * l)))
        return np.concatenate(parts, axis=0).reshape(-1)


def bulk_modes(bulk_primitive: RealSpaceIFC, phases: np.ndarray, degeneracy_tol: float = 1e-9):
    """Frequencies and z velocities of a bulk crystal at one q (given by its phases).

    Returns (omega, vz, vectors): omega in sqrt(eV/(Å^2 amu)) (negative for
    unstable modes), vz in Å x omega units (multiply by OMEGA_UNIT_RAD_S * 1e-10
    for m/s), eigenvectors as columns.  Velocities come from Hellmann-Feynman on
    dD/dq_z; inside a degenerate group the eigenvectors are rotated to diagonalise
    it, so each mode has a definite v_z (the basis the scattering channels use).
    The tolerance is tight on purpose: nearly degenerate modes (split by a
    slightly broken symmetry) must stay exact eigenvectors, or they would not
    match a single lead channel.
    """
    d = bulk_primitive.dynamical_matrix(phases)
    w2, vecs = np.linalg.eigh(d)
    a3z = bulk_primitive.lattice[2, 2]
    # q_z changes only phi3 = q.a3 (b3 is along z), d phi3 / d q_z = a3_z
    dd = bulk_primitive.dynamical_matrix_derivative(phases, axis=2) * a3z
    omega = np.sign(w2) * np.sqrt(np.abs(w2))
    vz = np.zeros(len(w2))
    start = 0
    scale = max(abs(w2).max(), 1e-30)
    while start < len(w2):
        stop = start + 1
        while stop < len(w2) and abs(w2[stop] - w2[start]) < degeneracy_tol * scale:
            stop += 1
        sub = vecs[:, start:stop]
        proj = sub.conj().T @ dd @ sub
        vals, rot = np.linalg.eigh(0.5 * (proj + proj.conj().T))
        vecs[:, start:stop] = sub @ rot
        with np.errstate(divide="ignore", invalid="ignore"):
            vz[start:stop] = np.where(omega[start:stop] > 0, vals / (2 * np.abs(omega[start:stop]) + 1e-300), 0.0)
        start = stop
    return omega, vz, vecs
