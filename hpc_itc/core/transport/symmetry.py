"""In-plane point symmetry of the whole interface system, used to reduce the k_par mesh.

An operation (x, y, z) -> (R_xy (x, y), z) + t that maps the device *and* both
leads (geometry and force constants) onto themselves maps an incident bulk mode
(k_par, q_z, nu) onto a mode (R k_par, q_z', nu') of the same frequency, the
same v_z and the same transmittance.  So only one k_par column per orbit (star)
of the mesh has to be solved; the others are copies.

Candidates come from spglib on the device atoms (types from the masses), keeping
operations that fix z; each is then verified on the force constants of the
device and of both leads (their frames differ from the device's by a constant
offset, which is taken into account), and kept only if the largest mismatch
``|Phi(g i, g j) - R Phi(i, j) R^T|`` is below ``ifc_tol`` times the largest force
constant.  On a given q mesh only operations mapping the mesh onto itself are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpc_itc.core.harmonic import RealSpaceIFC

# Relative mismatch |Phi(g i, g j) - R Phi R^T| / max |Phi| below which an operation counts as a
# symmetry.  Force constants from finite differences of an MLIP are symmetric only to ~1e-4 of the
# largest one (seen: 9e-5 in phonopy's diamond lead, pairs near the cutoff); using the operation then
# changes T by about as much, far below the other errors.  Exact models pass at ~1e-14.
IFC_TOL = 1e-3


@dataclass
class InplaneSymmetry:
    """Cartesian rotations (3x3, z fixed) of the system's in-plane point group, identity first."""

    rotations: np.ndarray  # (n_ops, 3, 3)
    max_ifc_violation: float  # largest relative force-constant mismatch among the accepted operations
    rejected: int = 0  # geometric candidates whose force constants did not pass

    @classmethod
    def identity(cls) -> "InplaneSymmetry":
        return cls(np.eye(3)[None], 0.0, 0)

    @property
    def order(self) -> int:
        return len(self.rotations)


def _inplane_frac(vec: np.ndarray, a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    """Coefficients of the in-plane part of ``vec`` (..., 3) on (a1, a2)."""
    m = np.array([a1[:2], a2[:2]]).T  # columns a1, a2
    return np.linalg.solve(m, vec[..., :2].reshape(-1, 2).T).T.reshape(vec.shape[:-1] + (2,))


def _atom_map(positions, masses, rot, trans, lattice, periodic_z: bool, tol: float):
    """sigma(i) and the lattice vector L_i with R r_i + t = r_sigma(i) + L_i, or None if no map."""
    moved = positions @ rot.T + trans
    n = len(positions)
    sigma = np.empty(n, int)
    shift = np.empty((n, 3))
    basis = lattice if periodic_z else lattice[:2]
    for i in range(n):
        d = moved[i][None, :] - positions  # candidates j
        if periodic_z:
            f = np.linalg.solve(lattice.T, d.T).T
            ok = np.all(np.abs(f - np.rint(f)) < tol, axis=1)
        else:
            f = _inplane_frac(d, lattice[0], lattice[1])
            ok = np.all(np.abs(f - np.rint(f)) < tol, axis=1) & (np.abs(d[:, 2]) < tol)
        ok &= np.abs(masses - masses[i]) < 1e-6 * masses[i]
        hits = np.flatnonzero(ok)
        if hits.size != 1:
            return None
        j = hits[0]
        sigma[i] = j
        shift[i] = np.rint(f[j]) @ basis
    return sigma, shift


def _snap_translation(positions, masses, rot, trans, lattice, periodic_z: bool) -> np.ndarray:
    """Adjust t so that atom 0 lands exactly on the nearest lattice image of an atom of its kind."""
    target = rot @ positions[0] + trans
    d = target[None, :] - positions
    if periodic_z:
        f = np.linalg.solve(lattice.T, d.T).T
        frac_err = f - np.rint(f)
        err = frac_err @ lattice
    else:
        f = _inplane_frac(d, lattice[0], lattice[1])
        frac_err = f - np.rint(f)
        err = np.column_stack([frac_err @ lattice[:2, :2], d[:, 2]])
    err[np.abs(masses - masses[0]) > 1e-6 * masses[0]] = np.inf
    best = int(np.argmin(np.linalg.norm(err, axis=1)))
    if not np.isfinite(err[best]).all() or np.linalg.norm(err[best]) > 0.2:
        return trans
    return trans - err[best]


def ifc_violation(ifc: RealSpaceIFC, rot: np.ndarray, trans: np.ndarray, periodic_z: bool,
                  tol: float = 1e-3) -> float:
    """max |Phi'(g i, g j, S') - R Phi(i, j, S) R^T| / max |Phi| for the operation (R, t); inf if atoms do not map.

    ``periodic_z``: the crystal is periodic along a3 (a bulk lead); otherwise only
    along a1, a2 (the device), and z must be preserved atom by atom.
    """
    lattice = np.asarray(ifc.lattice, float)
    trans = _snap_translation(ifc.positions, ifc.masses, rot, trans, lattice, periodic_z)
    mapped = _atom_map(ifc.positions, ifc.masses, rot, trans, lattice, periodic_z, tol)
    if mapped is None:
        return float("inf")
    sigma, lshift = mapped
    basis = lattice if periodic_z else lattice[:2]
    shift = ifc.shift if periodic_z else ifc.shift[:, :2]
    # aggregate duplicate (i, j, S) entries
    table: dict[tuple, np.ndarray] = {}
    for i, j, s, phi in zip(ifc.i, ifc.j, map(tuple, shift), ifc.phi):
        key = (int(i), int(j)) + s
        table[key] = table.get(key, 0.0) + phi
    tvec = np.array([k[2:] for k in table]) @ basis  # S . A for every key
    keys = list(table)
    ii = np.array([k[0] for k in keys])
    jj = np.array([k[1] for k in keys])
    new_vec = lshift[jj] - lshift[ii] + tvec @ rot.T
    new_shift = np.rint(np.linalg.lstsq(basis.T, new_vec.T, rcond=None)[0].T).astype(int)
    scale = max(max(np.abs(v).max() for v in table.values()), np.finfo(float).tiny)
    worst = 0.0
    for n, key in enumerate(keys):
        target = (int(sigma[ii[n]]), int(sigma[jj[n]])) + tuple(int(x) for x in new_shift[n])
        expect = rot @ table[key] @ rot.T
        got = table.get(target)
        diff = np.abs(expect).max() if got is None else np.abs(got - expect).max()
        worst = max(worst, float(diff))
    return worst / scale


_EXACT = np.array([0.0, 0.5, 1.0, np.sqrt(0.5), np.sqrt(0.75)])


def _snap(rot: np.ndarray) -> np.ndarray:
    """Remove rounding from a rotation's entries (0, 1/2, 1, 1/sqrt2, sqrt3/2 up to sign)."""
    mag = np.abs(rot)
    nearest = _EXACT[np.argmin(np.abs(mag[..., None] - _EXACT), axis=-1)]
    return np.where(np.abs(mag - nearest) < 1e-9, np.sign(rot) * nearest, rot)


def _pl_positions(lead) -> np.ndarray:
    """Positions of one principal layer of a PrincipalLayerLead, in the device's atom order."""
    b = lead.bulk
    return np.vstack([b.positions + l * b.lattice[2] for l in range(lead.p)])


def find_inplane_symmetry(system, *, symprec: float = 1e-4, ifc_tol: float = IFC_TOL) -> InplaneSymmetry:
    """The in-plane point group of the interface system (device and both leads), verified on the IFCs."""
    import spglib

    device = system.device
    a1, a2 = np.asarray(device.lattice[0], float), np.asarray(device.lattice[1], float)
    if abs(a1[2]) > 1e-9 or abs(a2[2]) > 1e-9:
        return InplaneSymmetry.identity()
    z = device.positions[:, 2]
    height = (z.max() - z.min()) + 30.0
    lattice = np.array([a1, a2, [0.0, 0.0, height]])
    pos = device.positions - np.array([0.0, 0.0, z.min() - 15.0])
    frac = np.linalg.solve(lattice.T, pos.T).T
    frac[:, :2] -= np.floor(frac[:, :2])
    _, types = np.unique(np.round(device.masses, 3), return_inverse=True)
    sym = spglib.get_symmetry((lattice, frac, types), symprec=symprec)
    if sym is None:
        return InplaneSymmetry.identity()
    # the device's contact principal layers are the leads' principal layers shifted by a constant
    n_left = system.left.p * system.left.bulk.n_atoms
    n_right = system.right.p * system.right.bulk.n_atoms
    off_left = device.positions[:n_left] - _pl_positions(system.left)
    off_right = device.positions[-n_right:] - _pl_positions(system.right)
    # (relaxed device atoms sit up to a few 0.01 Å away from the ideal lead sites; the offset
    # only has to locate the leads' frame, the lead's own translation is snapped to its atoms)
    if np.ptp(off_left, axis=0).max() > 0.2 or np.ptp(off_right, axis=0).max() > 0.2:
        return InplaneSymmetry.identity()
    off_left, off_right = off_left.mean(axis=0), off_right.mean(axis=0)
    origin = np.array([0.0, 0.0, z.min() - 15.0])
    accepted, worst, rejected = [], 0.0, 0
    seen = []
    for w, t in zip(sym["rotations"], sym["translations"]):
        if not (w[2, 2] == 1 and w[2, 0] == 0 and w[2, 1] == 0 and w[0, 2] == 0 and w[1, 2] == 0):
            continue
        tz = t[2] - np.rint(t[2])
        if abs(tz) > symprec / height * 10:
            continue
        rot = _snap(lattice.T @ w @ np.linalg.inv(lattice.T))
        if any(np.allclose(rot, r, atol=1e-8) for r in seen):
            continue
        trans = lattice.T @ np.array([t[0], t[1], 0.0])
        trans = trans + origin - rot @ origin  # (R, t) in the device's own frame
        v_dev = ifc_violation(device, rot, trans, periodic_z=False)
        v_left = ifc_violation(system.left.bulk, rot, trans + rot @ off_left - off_left, periodic_z=True)
        v_right = ifc_violation(system.right.bulk, rot, trans + rot @ off_right - off_right, periodic_z=True)
        v = max(v_dev, v_left, v_right)
        if v <= ifc_tol:
            seen.append(rot)
            accepted.append(rot)
            worst = max(worst, v)
        else:
            rejected += 1
    if not any(np.allclose(r, np.eye(3)) for r in accepted):
        return InplaneSymmetry.identity()
    # a group: closed under products (tolerances could in principle break closure)
    for r1 in accepted:
        for r2 in accepted:
            if not any(np.allclose(r1 @ r2, r, atol=1e-8) for r in accepted):
                return InplaneSymmetry(np.eye(3)[None], 0.0, rejected + len(accepted) - 1)
    accepted.sort(key=lambda r: (not np.allclose(r, np.eye(3)), tuple(np.round(r, 6).ravel())))
    return InplaneSymmetry(np.array(accepted), worst, rejected)


@dataclass
class MeshReduction:
    """Orbits of the k_par columns of a q mesh of one lead's primitive zone under the in-plane group.

    ``representatives``: columns (i, j) to solve; ``members[r]``: list of
    (i', j', dk) for every column of the orbit of representative r (itself first,
    dk = 0), where mode (k, band) of the representative maps onto (k + dk mod N3, band).
    """

    mesh: tuple[int, int, int]
    representatives: list[tuple[int, int]]
    members: list[list[tuple[int, int, int]]]
    n_ops_used: int

    @property
    def n_columns(self) -> int:
        return self.mesh[0] * self.mesh[1]


def reduce_mesh(symmetry: InplaneSymmetry, primitive_lattice: np.ndarray, mesh) -> MeshReduction:
    """Group the mesh columns into orbits; only operations that map this mesh onto itself are used."""
    n1, n2, n3 = (int(x) for x in mesh)
    a = np.asarray(primitive_lattice, float)
    b = 2 * np.pi * np.linalg.inv(a).T
    ops = []
    for rot in symmetry.rotations:
        w = b @ rot.T @ a.T / (2 * np.pi)  # q_frac' = q_frac @ w
        wi = np.rint(w)
        if np.abs(w - wi).max() > 1e-6:
            continue
        wi = wi.astype(int)
        if wi[2, 0] != 0 or wi[2, 1] != 0 or wi[2, 2] != 1:
            continue
        n = np.array([n1, n2, n3])
        scaled = wi * n[None, :] / n[:, None]  # n'_b = sum_a n_a w_ab N_b / N_a
        if np.abs(scaled - np.rint(scaled)).max() > 1e-9:
            continue
        ops.append(np.rint(scaled).astype(int))
    index = lambda i, j: i * n2 + j  # noqa: E731
    owner = -np.ones(n1 * n2, int)
    reps, members = [], []
    for i in range(n1):
        for j in range(n2):
            if owner[index(i, j)] >= 0:
                continue
            r = len(reps)
            reps.append((i, j))
            orbit = []
            for m in ops:
                ii = (i * m[0, 0] + j * m[1, 0]) % n1
                jj = (i * m[0, 1] + j * m[1, 1]) % n2
                if owner[index(ii, jj)] >= 0:
                    continue
                owner[index(ii, jj)] = r
                orbit.append((ii, jj, int((i * m[0, 2] + j * m[1, 2]) % n3)))
            members.append(orbit)
    return MeshReduction((n1, n2, n3), reps, members, len(ops))
