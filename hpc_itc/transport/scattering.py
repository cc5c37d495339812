"""Phonon scattering matrix of a device between two semi-infinite leads (mode matching).

Geometry (PL = principal layer; all blocks mass-weighted, omega^2 units)::

    left lead PLs ..., -2, -1, 0 | device (N dof) | right lead PLs 1, 2, 3, ...

    left PL 0:   omega^2 psi_0  = h10_L psi_{-1} + h00_L psi_0 + V_LD psi_D
    device:      omega^2 psi_D  = V_LD^H psi_0 + H_D psi_D + V_DR psi_R1
    right PL 1:  omega^2 psi_R1 = V_DR^H psi_D + h00_R psi_R1 + h01_R psi_R2

and the bulk lead equation holds inside each lead (see :mod:`.leads`). Both
leads are described by ``LeadBlocks(h00, h01)`` with ``h01`` the coupling from
PL j to PL j+1, i.e. towards the device for the left lead and away from it for
the right lead.

Method
------
In the left lead the solution is (incoming right-going channel) + (any
combination of left-going solutions); the latter subspace is spanned by the
flux-normalised left-going propagating channels and an orthonormal basis of
the evanescent left-going deflating subspace, written in pair form on PLs
(-1, 0). Likewise the right lead carries right-going solutions on PLs (1, 2).
Unknowns: the n_L left coefficients, psi_D (N), the n_R right coefficients;
equations: left PL 0, device, right PL 1. That square system is solved once
with all incoming channels of both leads as right-hand sides. The
coefficients of the propagating columns are directly the flux amplitudes
``r``, ``t`` because those columns are flux-normalised and current-orthogonal,
so ``T + R = 1`` is exact up to rounding.

Reference points: left-lead channel vectors are given on PL 0, right-lead
channel vectors on PL 1; ``t``/``r`` phases refer to these PLs.

:func:`caroli_transmission` is an independent cross-check (surface Green's
functions by Lopez-Sancho decimation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from .leads import (
    LeadBlocks,
    LeadModes,
    _check_hermitian,
    lead_modes,
    surface_green_function,
)

__all__ = [
    "LeadBlocks",
    "ScatteringMatrix",
    "solve_scattering",
    "caroli_transmission",
]


@dataclass(frozen=True)
class ScatteringMatrix:
    """Flux-normalised scattering amplitudes at one frequency.

    Channel naming: "in_L" = right-going propagating channels of the left lead
    (incident from the left), "out_L" = left-going channels of the left lead,
    "in_R" = left-going channels of the right lead (incident from the right),
    "out_R" = right-going channels of the right lead.

    Attributes
    ----------
    omega : angular frequency (sqrt of omega^2 units).
    t_LR : (n_out_R, n_in_L) transmission amplitudes, left -> right.
    r_LL : (n_out_L, n_in_L) reflection amplitudes for incidence from the left.
    t_RL : (n_out_L, n_in_R) transmission amplitudes, right -> left.
    r_RR : (n_out_R, n_in_R) reflection amplitudes for incidence from the right.
    lam_in_L, vel_in_L, vec_in_L : Bloch factors, signed velocities
        (PL length x omega units; > 0 = towards +z) and flux-normalised vectors
        on left PL 0, shape (n_L, n_in_L). Same for ``out_L``.
    lam_in_R, vel_in_R, vec_in_R : same for the right lead, vectors on right
        PL 1, shape (n_R, n_in_R). Same for ``out_R``.
    edge_in_L, edge_out_L, edge_in_R, edge_out_R : near-band-edge flags (see :mod:`.leads`).
    psi_D_from_left : (N, n_in_L) device part of the scattering state for unit
        flux incident in each left channel; ``psi_D_from_right`` (N, n_in_R) likewise.
    tol : Bloch-factor tolerance used by the lead mode solver.
    """

    omega: float
    t_LR: np.ndarray
    r_LL: np.ndarray
    t_RL: np.ndarray
    r_RR: np.ndarray
    lam_in_L: np.ndarray
    vel_in_L: np.ndarray
    vec_in_L: np.ndarray
    edge_in_L: np.ndarray
    lam_out_L: np.ndarray
    vel_out_L: np.ndarray
    vec_out_L: np.ndarray
    edge_out_L: np.ndarray
    lam_in_R: np.ndarray
    vel_in_R: np.ndarray
    vec_in_R: np.ndarray
    edge_in_R: np.ndarray
    lam_out_R: np.ndarray
    vel_out_R: np.ndarray
    vec_out_R: np.ndarray
    edge_out_R: np.ndarray
    psi_D_from_left: np.ndarray
    psi_D_from_right: np.ndarray
    tol: float

    def transmission_from_left(self) -> tuple[np.ndarray, np.ndarray]:
        """Per incident left channel: (T, R), each shape (n_in_L,)."""
        return _col_norm2(self.t_LR), _col_norm2(self.r_LL)

    def transmission_from_right(self) -> tuple[np.ndarray, np.ndarray]:
        """Per incident right channel: (T, R), each shape (n_in_R,)."""
        return _col_norm2(self.t_RL), _col_norm2(self.r_RR)

    def total_transmission(self, side: str = "left") -> float:
        """Sum of channel transmissions for incidence from ``side``."""
        t = self.t_LR if _side(side) == "left" else self.t_RL
        return float(np.sum(np.abs(t) ** 2))

    def incident(
        self,
        side: str,
        lam: complex,
        vector,
        *,
        lam_tol: float | None = None,
        residual_tol: float = 1e-6,
    ) -> tuple[float, float]:
        """Transmission and reflection probability of an arbitrary incident wave.

        ``vector`` (length n of that lead) is the incident propagating solution
        on the reference PL of the lead (PL 0 left, PL 1 right; a constant
        phase is irrelevant), ``lam`` its Bloch factor, e.g. a bulk phonon
        eigenvector laid out on the PL with ``lam = exp(i q_z L_z)``. The vector
        is expanded by least squares in the incoming channels whose Bloch
        factor lies within ``lam_tol`` (default: 2*tol of the lead solver) of
        ``lam``: ``vector ~= sum_i c_i vec_in_i``. Because the channels are
        flux-normalised and current-orthogonal, the incident flux is
        ``||c||^2``; returns ``T = ||t c||^2 / ||c||^2`` and
        ``R = ||r c||^2 / ||c||^2``.

        Raises ValueError if no channel matches ``lam`` or the relative
        residual of the expansion exceeds ``residual_tol`` (the vector is not
        an incoming propagating solution at this frequency, e.g. it is
        outgoing or belongs to another frequency).
        """
        side = _side(side)
        if side == "left":
            lams, vecs, t, r = self.lam_in_L, self.vec_in_L, self.t_LR, self.r_LL
        else:
            lams, vecs, t, r = self.lam_in_R, self.vec_in_R, self.t_RL, self.r_RR
        vector = np.asarray(vector, dtype=complex).reshape(-1)
        if vector.size != vecs.shape[0]:
            raise ValueError(f"vector has length {vector.size}, the {side} lead has {vecs.shape[0]} dof per PL")
        norm_v = np.linalg.norm(vector)
        if norm_v == 0:
            raise ValueError("incident vector is zero")
        tol = 2.0 * self.tol if lam_tol is None else lam_tol
        sel = np.nonzero(np.abs(lams - lam) <= tol)[0]
        if sel.size == 0:
            raise ValueError(
                f"no incoming {side} channel with Bloch factor {lam:.6g} at omega={self.omega:g} "
                f"(available: {np.array2string(lams, precision=6)})"
            )
        c, *_ = np.linalg.lstsq(vecs[:, sel], vector, rcond=None)
        resid = np.linalg.norm(vecs[:, sel] @ c - vector) / norm_v
        if resid > residual_tol:
            raise ValueError(
                f"incident vector is not a combination of the incoming {side} channels with "
                f"lam={lam:.6g} (relative residual {resid:.3g})"
            )
        flux = float(np.vdot(c, c).real)
        tt = float(np.linalg.norm(t[:, sel] @ c) ** 2 / flux)
        rr = float(np.linalg.norm(r[:, sel] @ c) ** 2 / flux)
        return tt, rr


def _side(side: str) -> str:
    s = str(side).lower()
    if s in ("left", "l"):
        return "left"
    if s in ("right", "r"):
        return "right"
    raise ValueError(f"side must be 'left' or 'right', got {side!r}")


def _col_norm2(a: np.ndarray) -> np.ndarray:
    return np.sum(np.abs(a) ** 2, axis=0)


def _as_blocks(lead) -> LeadBlocks:
    if isinstance(lead, LeadBlocks):
        return lead
    h00, h01 = lead
    return LeadBlocks(np.asarray(h00), np.asarray(h01))


def _check_device(left: LeadBlocks, right: LeadBlocks, h_device, v_left_device, v_device_right):
    h_device = np.asarray(h_device)
    v_ld = np.asarray(v_left_device)
    v_dr = np.asarray(v_device_right)
    if h_device.ndim != 2 or h_device.shape[0] != h_device.shape[1] or h_device.shape[0] == 0:
        raise ValueError(f"h_device must be a non-empty square matrix, got shape {h_device.shape}")
    nd = h_device.shape[0]
    if v_ld.shape != (left.n, nd):
        raise ValueError(f"v_left_device must have shape {(left.n, nd)}, got {v_ld.shape}")
    if v_dr.shape != (nd, right.n):
        raise ValueError(f"v_device_right must have shape {(nd, right.n)}, got {v_dr.shape}")
    _check_hermitian(h_device, "h_device")
    return h_device, v_ld, v_dr


def solve_scattering(
    left: LeadBlocks,
    right: LeadBlocks,
    h_device,
    v_left_device,
    v_device_right,
    omega: float,
    *,
    tol: float = 1e-6,
    edge_rel: float = 1e-4,
    left_modes: LeadModes | None = None,
    right_modes: LeadModes | None = None,
) -> ScatteringMatrix:
    """Scattering matrix of the junction at angular frequency ``omega`` by mode matching.

    Parameters
    ----------
    left, right : LeadBlocks (or (h00, h01) tuples) of the two leads.
    h_device : (N, N) Hermitian device block.
    v_left_device : (n_L, N) coupling left PL 0 -> device.
    v_device_right : (N, n_R) coupling device -> right PL 1.
    omega : angular frequency > 0 (sqrt of omega^2 units).
    tol, edge_rel : passed to :func:`.leads.lead_modes`.
    left_modes, right_modes : precomputed ``lead_modes`` of the leads at this
        omega (optional; saves the eigenproblem when many devices share leads).
    """
    left = _as_blocks(left)
    right = _as_blocks(right)
    h_d, v_ld, v_dr = _check_device(left, right, h_device, v_left_device, v_device_right)
    if not (np.isfinite(omega) and omega > 0):
        raise ValueError(f"omega must be a positive finite number, got {omega!r}")
    w2 = float(omega) ** 2
    if left_modes is None:
        left_modes = lead_modes(left.h00, left.h01, omega, tol=tol, edge_rel=edge_rel)
    if right_modes is None:
        right_modes = lead_modes(right.h00, right.h01, omega, tol=tol, edge_rel=edge_rel)
    for lm, name in ((left_modes, "left"), (right_modes, "right")):
        if abs(lm.omega - omega) > 1e-12 * omega:
            raise ValueError(f"{name}_modes were computed at omega={lm.omega}, not {omega}")
    nl, nr, nd = left.n, right.n, h_d.shape[0]

    # Left lead, pair form anchored on PLs (-1, 0): x = [psi_{-1}; psi_0].
    out_l = left_modes.outgoing_basis("left")  # left-going: prop (flux-norm.) + evanescent
    in_l = left_modes.pair_right  # right-going propagating = incident from the left
    # Right lead, pair form anchored on PLs (1, 2): x = [psi_1; psi_2].
    out_r = right_modes.outgoing_basis("right")
    in_r = right_modes.pair_left  # left-going propagating = incident from the right

    h00l = left.h00.astype(complex)
    h10l = left.h10.astype(complex)
    h00r = right.h00.astype(complex)
    h01r = right.h01.astype(complex)
    dl = w2 * np.eye(nl) - h00l
    dr = w2 * np.eye(nr) - h00r

    def left_pl0(x):  # residual of left PL 0 equation, lead part: (w2 - h00) psi_0 - h10 psi_{-1}
        return dl @ x[nl:] - h10l @ x[:nl]

    def right_pl1(x):  # (w2 - h00_R) psi_1 - h01_R psi_2
        return dr @ x[:nr] - h01r @ x[nr:]

    size = nl + nd + nr
    sl, sd, sr = slice(0, nl), slice(nl, nl + nd), slice(nl + nd, size)
    M = np.zeros((size, size), dtype=complex)
    # Row block: left PL 0.   (w2 - h00) psi_0 - h10 psi_{-1} - V_LD psi_D = 0
    M[sl, sl] = left_pl0(out_l)
    M[sl, sd] = -v_ld
    # Row block: device.      (w2 - H_D) psi_D - V_LD^H psi_0 - V_DR psi_R1 = 0
    M[sd, sl] = -v_ld.conj().T @ out_l[nl:]
    M[sd, sd] = w2 * np.eye(nd) - h_d
    M[sd, sr] = -v_dr @ out_r[:nr]
    # Row block: right PL 1.  (w2 - h00_R) psi_1 - h01_R psi_2 - V_DR^H psi_D = 0
    M[sr, sd] = -v_dr.conj().T
    M[sr, sr] = right_pl1(out_r)

    m_in_l, m_in_r = in_l.shape[1], in_r.shape[1]
    rhs = np.zeros((size, m_in_l + m_in_r), dtype=complex)
    # Known incident parts moved to the right-hand side.
    rhs[sl, :m_in_l] = -left_pl0(in_l)
    rhs[sd, :m_in_l] = v_ld.conj().T @ in_l[nl:]
    rhs[sd, m_in_l:] = v_dr @ in_r[:nr]
    rhs[sr, m_in_l:] = -right_pl1(in_r)

    sol = _solve(M, rhs)

    m_out_l = left_modes.n_prop_left
    m_out_r = right_modes.n_prop_right
    coef_l = sol[sl]
    psi_d = sol[sd]
    coef_r = sol[sr]
    return ScatteringMatrix(
        omega=float(omega),
        t_LR=coef_r[:m_out_r, :m_in_l],
        r_LL=coef_l[:m_out_l, :m_in_l],
        t_RL=coef_l[:m_out_l, m_in_l:],
        r_RR=coef_r[:m_out_r, m_in_l:],
        lam_in_L=left_modes.lam_right,
        vel_in_L=left_modes.vel_right,
        vec_in_L=left_modes.pair_right[nl:],  # on PL 0 (second PL of the (-1, 0) pair)
        edge_in_L=left_modes.near_edge_right,
        lam_out_L=left_modes.lam_left,
        vel_out_L=left_modes.vel_left,
        vec_out_L=left_modes.pair_left[nl:],
        edge_out_L=left_modes.near_edge_left,
        lam_in_R=right_modes.lam_left,
        vel_in_R=right_modes.vel_left,
        vec_in_R=right_modes.pair_left[:nr],  # on PL 1 (first PL of the (1, 2) pair)
        edge_in_R=right_modes.near_edge_left,
        lam_out_R=right_modes.lam_right,
        vel_out_R=right_modes.vel_right,
        vec_out_R=right_modes.pair_right[:nr],
        edge_out_R=right_modes.near_edge_right,
        psi_D_from_left=psi_d[:, :m_in_l],
        psi_D_from_right=psi_d[:, m_in_l:],
        tol=left_modes.tol,
    )


def _solve(M: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve M X = rhs; least-squares fallback if M is singular.

    M is singular only when the device hosts a bound state in the continuum
    (a device mode at omega that does not couple to either lead). The
    minimum-norm solution then contains no bound-state admixture; the lead
    coefficients (r, t) are unaffected because a bound state has none.
    """
    if rhs.shape[1] == 0:
        return np.zeros_like(rhs)
    try:
        lu, piv = sla.lu_factor(M, check_finite=False)
        if np.all(np.abs(np.diag(lu)) > np.finfo(float).eps * np.abs(lu).max()):
            return sla.lu_solve((lu, piv), rhs, check_finite=False)
    except (np.linalg.LinAlgError, ValueError):
        pass
    sol, *_ = sla.lstsq(M, rhs, cond=None)
    return sol


def caroli_transmission(
    left: LeadBlocks,
    right: LeadBlocks,
    h_device,
    v_left_device,
    v_device_right,
    omega: float,
    *,
    eta_rel: float = 1e-12,
    max_iter: int = 300,
) -> float:
    """Total transmission Tr[Gamma_L G Gamma_R G^H] from Green's functions (cross-check).

    Same arguments as :func:`solve_scattering`. The retarded lead surface
    Green's functions are computed by Lopez-Sancho decimation at
    ``z = omega^2 + i eta`` with ``eta = eta_rel * omega^2`` (omega^2 units);
    ``Sigma_L = V_LD^H g_L V_LD``, ``Sigma_R = V_DR g_R V_DR^H``,
    ``Gamma = i (Sigma - Sigma^H)``, ``G = [z - H_D - Sigma_L - Sigma_R]^{-1}``.
    The result approaches the sum of modal transmissions linearly in ``eta``
    (observed deviation ~10-100 x eta_rel, i.e. ~1e-11 at the default; the
    decimation needs ~log2(1/eta_rel) iterations, so smaller eta is cheap).
    """
    left = _as_blocks(left)
    right = _as_blocks(right)
    h_d, v_ld, v_dr = _check_device(left, right, h_device, v_left_device, v_device_right)
    if not (np.isfinite(omega) and omega > 0):
        raise ValueError(f"omega must be a positive finite number, got {omega!r}")
    w2 = float(omega) ** 2
    z = w2 + 1j * eta_rel * w2
    # Left lead: semi-infinite towards -inf, surface PL 0; next PL inwards (-1) via h10.
    g_l = surface_green_function(left.h00, left.h10, z, max_iter=max_iter)
    # Right lead: surface PL 1, next PL (2) via h01.
    g_r = surface_green_function(right.h00, right.h01, z, max_iter=max_iter)
    v_ld = v_ld.astype(complex)
    v_dr = v_dr.astype(complex)
    sigma_l = v_ld.conj().T @ g_l @ v_ld
    sigma_r = v_dr @ g_r @ v_dr.conj().T
    gamma_l = 1j * (sigma_l - sigma_l.conj().T)
    gamma_r = 1j * (sigma_r - sigma_r.conj().T)
    nd = h_d.shape[0]
    g_d = np.linalg.inv(z * np.eye(nd) - h_d - sigma_l - sigma_r)
    t = np.trace(gamma_l @ g_d @ gamma_r @ g_d.conj().T)
    return float(t.real)
