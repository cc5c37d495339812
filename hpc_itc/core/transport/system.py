"""The finalized interface system: two semi-infinite leads and a device, at any k_par.

Like a finalized kwant system: built once from real-space force constants, then
asked for the mass-weighted blocks at in-plane phases theta, which is all the
scattering solver needs.  Also enumerates the incident bulk modes of a lead on
the uniform q mesh of its primitive Brillouin zone.

Phases: for a lead primitive cell with a1, a2 in plane and a3 to the next layer,
q is given by (theta1, theta2, phi3) = (q.a1, q.a2, q.a3).  A mesh point
(i/N1) b1 + (j/N2) b2 + (k/N3) b3 has theta = 2 pi (i/N1, j/N2) and
phi3 = 2 pi k/N3; on a principal layer of p layers the Bloch factor is
lambda = exp(i p phi3).  The device's in-plane cell is n x m primitive cells, so
its phases are (n theta1, m theta2).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from hpc_itc.core.harmonic import OMEGA_UNIT_RAD_S, PrincipalLayerLead, RealSpaceIFC
from hpc_itc.core.transport.scattering import Junction, LeadBlocks, block_partition

SIDES = ("left", "right")


@dataclass
class InterfaceSystem:
    left_primitive: RealSpaceIFC  # bulk lead primitive layer cells (for incident modes)
    right_primitive: RealSpaceIFC
    left: PrincipalLayerLead  # leads on the device's in-plane cell
    right: PrincipalLayerLead
    device: RealSpaceIFC  # device atoms: left contact principal layer first, right contact last
    repeat: tuple[int, int]
    block_target: int = 24  # device blocks of the block-tridiagonal solve are merged up to this many dof
    # largest change (eV/Å^2) made to a device on-site block by :func:`enforce_junction_sum_rule`
    sum_rule_correction_eV_A2: float = 0.0
    _partition: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def n_device_dof(self) -> int:
        return self.device.n_dof

    def primitive(self, side: str) -> RealSpaceIFC:
        return self.left_primitive if side == "left" else self.right_primitive

    def lead(self, side: str) -> PrincipalLayerLead:
        return self.left if side == "left" else self.right

    def supercell_phases(self, theta_primitive) -> np.ndarray:
        return np.array([self.repeat[0] * theta_primitive[0], self.repeat[1] * theta_primitive[1]])

    def blocks(self, theta_primitive) -> tuple[LeadBlocks, LeadBlocks, np.ndarray, np.ndarray, np.ndarray]:
        """(left lead, right lead, H_D, V_LD, V_DR) at the given primitive in-plane phases."""
        theta = self.supercell_phases(theta_primitive)
        h00_l, h01_l = self.left.blocks(theta)
        h00_r, h01_r = self.right.blocks(theta)
        h_d = self.device.layer_block(theta, 0)
        h_d = 0.5 * (h_d + h_d.conj().T)
        nd, nl, nr = self.device.n_dof, self.left.n_dof, self.right.n_dof
        v_ld = np.zeros((nl, nd), complex)
        v_ld[:, :nl] = h01_l  # left lead's last principal layer -> device's left contact layer
        v_dr = np.zeros((nd, nr), complex)
        v_dr[nd - nr :, :] = h01_r  # device's right contact layer -> right lead's first principal layer
        return LeadBlocks(h00_l, h01_l), LeadBlocks(h00_r, h01_r), h_d, v_ld, v_dr

    @property
    def partition(self) -> np.ndarray:
        """Device block boundaries (dof) from the structural coupling pattern, valid at every k_par.

        Computed once at a generic in-plane phase (no accidental cancellations),
        so every k_par's device matrix is block tridiagonal on it.
        """
        if self._partition is None:
            _, _, h_d, v_ld, v_dr = self.blocks(np.array([0.6180339887, 0.4142135624]))
            atoms = np.zeros((self.device.n_atoms, self.device.n_atoms))
            atoms[self.device.i, self.device.j] = 1.0  # every pair present in the force constants, zero or not
            pattern = np.kron(atoms + atoms.T, np.ones((3, 3)))
            self._partition = block_partition(pattern + np.abs(h_d), np.abs(v_ld) + _contact(v_ld.shape, "left"),
                                              np.abs(v_dr) + _contact(v_dr.shape, "right"), target=self.block_target)
        return self._partition

    def junction(self, theta_primitive) -> Junction:
        """The junction at in-plane phases theta (primitive cell), ready to be solved at any omega."""
        left, right, h_d, v_ld, v_dr = self.blocks(theta_primitive)
        return Junction(left, right, h_d, v_ld, v_dr, partition=self.partition, check=False)


def _contact(shape, side: str) -> np.ndarray:
    """Structural pattern of a lead coupling: the contact principal layer of the device, whole."""
    out = np.zeros(shape)
    if side == "left":
        out[:, : shape[0]] = 1.0
    else:
        out[-shape[1] :, :] = 1.0
    return out


def build_system(left_primitive: RealSpaceIFC, right_primitive: RealSpaceIFC, device: RealSpaceIFC,
                 repeat: tuple[int, int], device_layers: tuple[int, int]) -> InterfaceSystem:
    """Check that the device is long enough for the principal layers and assemble the system.

    ``device_layers`` = (left, right) layers of primitive cells in the device.
    """
    left = PrincipalLayerLead.from_bulk(left_primitive.inplane_supercell(*repeat))
    right = PrincipalLayerLead.from_bulk(right_primitive.inplane_supercell(*repeat))
    for side, lead, layers in (("left", left, device_layers[0]), ("right", right, device_layers[1])):
        if layers < lead.p + 1:
            from hpc_itc.errors import InvalidInput

            raise InvalidInput(f"n_cells_{side}", f"{layers} device layers, but the force-constant cutoff needs principal layers of "
                                                  f"{lead.p} layers plus one interior layer; allowed: >= {lead.p + 1} (or a smaller cutoff)")
    return enforce_junction_sum_rule(InterfaceSystem(left_primitive, right_primitive, left, right, device, repeat))


def junction_sum_rule_residual(system: InterfaceSystem) -> np.ndarray:
    """sum_j Phi(i, j) of every device atom i over all its partners in the junction, (n_atoms, 3, 3) eV/Å^2.

    Partners are the device atoms and their in-plane images *and* the lead atoms
    that the junction couples the contact layers to (the leads' bulk couplings,
    :meth:`InterfaceSystem.blocks`).  Zero for a junction in which a rigid
    translation costs no energy.  Read off the blocks at k_par = 0: there the
    mass-weighted blocks times sqrt(m_i m_j) are the real-space sums.
    """
    left, right, h_d, v_ld, v_dr = system.blocks(np.zeros(2))
    root_m = np.sqrt(np.repeat(system.device.masses, 3))
    root_ml = np.sqrt(np.repeat(np.tile(system.left.bulk.masses, system.left.p), 3))
    root_mr = np.sqrt(np.repeat(np.tile(system.right.bulk.masses, system.right.p), 3))
    n = system.device.n_atoms
    total = (h_d * np.outer(root_m, root_m)).real.reshape(n, 3, n, 3).sum(axis=2)
    total += (v_ld.conj().T * np.outer(root_m, root_ml)).real.reshape(n, 3, -1, 3).sum(axis=2)
    total += (v_dr * np.outer(root_m, root_mr)).real.reshape(n, 3, -1, 3).sum(axis=2)
    return total


def enforce_junction_sum_rule(system: InterfaceSystem) -> InterfaceSystem:
    """The system with the acoustic sum rule restored across the device-lead contacts.

    The junction joins the slab's force constants (device) to the bulk leads'
    couplings at the two contact layers.  Where the two differ -- the slab's
    contact rows are symmetrised together with the rest of the slab by phonopy,
    cut at ``cutoff_A``, or come from a relaxed structure -- a rigid translation of
    the whole junction is no longer free: the contact atoms feel a spring to a
    fixed frame.  Such a pinning spring k reflects every wave below omega ~ k/Z
    (Z the lead impedance), so T(omega) falls to 0 as omega -> 0 instead of
    reaching the acoustic-mismatch limit, and the acoustic modes near Gamma --
    which carry a large part of h where the transmitting window is small -- are
    wrong (measured on the shipped bare Cu/diamond example: a residual of
    0.027 eV/Å^2 made the Gamma column's total T drop from 2.87 to 0.03 at
    0.001 THz).  As :meth:`hpc_itc.core.harmonic.RealSpaceIFC.truncated` does for a
    cut-off, the residual is taken off each device atom's on-site block (its
    symmetric part: the on-site block of a Hermitian matrix is symmetric).
    """
    dev = system.device
    residual = junction_sum_rule_residual(system)
    correction = 0.5 * (residual + residual.transpose(0, 2, 1))
    onsite = dev.onsite_pairs()
    if np.any(onsite < 0):  # force constants from phonopy or springs always carry them
        raise ValueError("the device's force constants lack an on-site pair for some atom")
    phi = dev.phi.copy()
    phi[onsite] -= correction
    device = RealSpaceIFC(dev.lattice, dev.positions, dev.masses, dev.i, dev.j, dev.shift, phi)
    return replace(system, device=device, sum_rule_correction_eV_A2=float(np.abs(correction).max()) if len(correction) else 0.0,
                   _partition=None)


def homogeneous_system(primitive: RealSpaceIFC, n_device_layers: int, repeat: tuple[int, int] = (1, 1)) -> InterfaceSystem:
    """A junction of one material with itself: the device is principal layers of the same bulk.

    Every incident mode must be transmitted with T = 1: the validation case.
    """
    lead = PrincipalLayerLead.from_bulk(primitive.inplane_supercell(*repeat))
    p = lead.p
    n_pl = max(2, -(-n_device_layers // p))
    bulk = lead.bulk
    # device = n_pl principal layers: a finite stack of layers with the bulk's couplings
    nl = n_pl * p
    layers = []
    for l in range(nl):
        layers.append(bulk.positions + l * bulk.lattice[2])
    positions = np.vstack(layers)
    masses = np.tile(bulk.masses, nl)
    na = bulk.n_atoms
    ii, jj, ss, pp = [], [], [], []
    for l in range(nl):
        target = l + bulk.shift[:, 2]
        keep = (target >= 0) & (target < nl)
        ii.append(l * na + bulk.i[keep])
        jj.append(target[keep] * na + bulk.j[keep])
        sh = bulk.shift[keep].copy()
        sh[:, 2] = 0
        ss.append(sh)
        pp.append(bulk.phi[keep])
    lattice = bulk.lattice.copy()
    device = RealSpaceIFC(lattice, positions, masses, np.concatenate(ii), np.concatenate(jj), np.vstack(ss), np.concatenate(pp))
    return enforce_junction_sum_rule(InterfaceSystem(primitive, primitive, lead, lead, device, repeat))


@dataclass
class IncidentModes:
    """Bulk modes of one lead moving towards the interface, on a uniform mesh."""

    mesh_index: np.ndarray  # (M, 3) int (i, j, k)
    band: np.ndarray  # (M,)
    omega: np.ndarray  # (M,) sqrt(eV/(Å^2 amu))
    vz: np.ndarray  # (M,) Å x omega unit, signed
    vectors: list  # eigenvectors (primitive cell, mass-weighted)

    @property
    def vz_m_s(self) -> np.ndarray:
        return self.vz * OMEGA_UNIT_RAD_S * 1e-10


# |v_z| below this fraction of omega_max * a3_z counts as zero (band edges).  Such a mode carries
# < 1e-5 of a typical mode's Landauer weight (hbar omega v_z df/dT), while its expansion in the lead
# channels loses accuracy like 1/v_z (measured: T + R - 1 = 1e-8 at v_z = 3e-6 of the scale, 0.15 m/s,
# in the paper's Cu/diamond geometry); leaving it out changes h by far less than the mesh does.
VZ_REL_MIN = 1e-5


def column_bulk_modes(primitive: RealSpaceIFC, theta: np.ndarray, phi3: np.ndarray, degeneracy_tol: float = 1e-9):
    """:func:`hpc_itc.core.harmonic.bulk_modes` at many phi3 of one k_par column, sharing the in-plane sums.

    D(theta, phi3) = sum_l K_l(theta) exp(i l phi3) with the layer blocks K_l
    computed once per column; the eigenproblems are solved as one batch.
    Same conventions and degenerate-subspace rotation as ``bulk_modes``.
    Returns omega (n_q, n_b), vz (n_q, n_b), vectors (n_q, n_dof, n_b).
    """
    phi3 = np.asarray(phi3, float)
    offsets = primitive.layer_offsets
    blocks = np.array([primitive.layer_block(np.asarray(theta, float), int(l)) for l in offsets])
    phase = np.exp(1j * np.outer(phi3, offsets))  # (n_q, n_l)
    d = np.einsum("ql,lab->qab", phase, blocks)
    d = 0.5 * (d + np.conj(np.swapaxes(d, 1, 2)))
    dd = np.einsum("ql,lab->qab", 1j * offsets[None, :] * phase, blocks)
    # q_z changes only phi3 = q.a3 (b3 is along z), d phi3 / d q_z = a3_z
    dd = 0.5 * (dd + np.conj(np.swapaxes(dd, 1, 2))) * primitive.lattice[2, 2]
    w2, vecs = np.linalg.eigh(d)
    omega = np.sign(w2) * np.sqrt(np.abs(w2))
    proj = np.einsum("qab,qbc,qcd->qad", np.conj(np.swapaxes(vecs, 1, 2)), dd, vecs)
    vals = np.real(np.einsum("qaa->qa", proj)).copy()
    for q in range(len(phi3)):
        scale = max(abs(w2[q]).max(), 1e-30)
        close = np.flatnonzero(np.diff(w2[q]) < degeneracy_tol * scale)
        if close.size == 0:
            continue
        start = 0
        nb = w2.shape[1]
        while start < nb:  # the same grouping as bulk_modes: relative to the group's first eigenvalue
            stop = start + 1
            while stop < nb and abs(w2[q, stop] - w2[q, start]) < degeneracy_tol * scale:
                stop += 1
            if stop - start > 1:
                sub = vecs[q, :, start:stop]
                p = sub.conj().T @ dd[q] @ sub
                ev, rot = np.linalg.eigh(0.5 * (p + p.conj().T))
                vecs[q, :, start:stop] = sub @ rot
                vals[q, start:stop] = ev
            start = stop
    with np.errstate(divide="ignore", invalid="ignore"):
        vz = np.where(omega > 0, vals / (2 * np.abs(omega) + 1e-300), 0.0)
    return omega, vz, vecs


def incident_modes_at(primitive: RealSpaceIFC, mesh: tuple[int, int, int], i: int, j: int, towards: int,
                      omega_min: float) -> IncidentModes:
    """Modes at mesh column (i, j) (all k) whose v_z has the sign ``towards`` (+1 or -1).

    Skipped, because their Landauer weight hbar omega v_z df/dT is zero or their
    direction undefined: modes with omega < omega_min (the acoustic modes at
    Gamma) and modes with v_z = 0 to rounding (e.g. at X, on the zone face).
    """
    n1, n2, n3 = mesh
    rows, bands, omegas, vzs, vecs = [], [], [], [], []
    theta = 2 * np.pi * np.array([i / n1, j / n2])
    omega_all, vz_all, vec_all = column_bulk_modes(primitive, theta, 2 * np.pi * np.arange(n3) / n3)
    for k in range(n3):
        omega, vz, vectors = omega_all[k], vz_all[k], vec_all[k]
        vz_min = VZ_REL_MIN * max(omega.max(), 0.0) * primitive.lattice[2, 2]
        for band in range(len(omega)):
            if omega[band] < omega_min or towards * vz[band] <= vz_min:
                continue
            rows.append((i, j, k))
            bands.append(band)
            omegas.append(omega[band])
            vzs.append(vz[band])
            vecs.append(vectors[:, band])
    return IncidentModes(np.array(rows, dtype=int).reshape(-1, 3), np.array(bands, dtype=int), np.array(omegas),
                         np.array(vzs), vecs)
