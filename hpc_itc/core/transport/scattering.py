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

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from hpc_itc.core.transport.leads import LeadBlocks, LeadModes, _check_hermitian, lead_modes, surface_green_function

__all__ = [
    "LeadBlocks",
    "Junction",
    "ScatteringMatrix",
    "block_partition",
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
    solver : linear solver used: ``"dense"``, ``"rgf"`` or ``"rgf->dense"``
        (block elimination rejected by its residual check).
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
    solver: str = "dense"

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
        sel, c = self.expand_incident(side, lam, vector, lam_tol=lam_tol, residual_tol=residual_tol)
        t, r = (self.t_LR, self.r_LL) if _side(side) == "left" else (self.t_RL, self.r_RR)
        flux = float(np.vdot(c, c).real)
        tt = float(np.linalg.norm(t[:, sel] @ c) ** 2 / flux)
        rr = float(np.linalg.norm(r[:, sel] @ c) ** 2 / flux)
        return tt, rr

    def expand_incident(self, side: str, lam: complex, vector, *, lam_tol: float | None = None,
                        residual_tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
        """(channel indices, coefficients) of an incident wave in the incoming channels of ``side``.

        ``vector ~= vec_in[:, sel] @ c`` by least squares over the channels whose
        Bloch factor lies within ``lam_tol`` of ``lam``; the arguments and the
        ValueError are those of :meth:`incident`.  The scattering state of the wave
        is then ``psi_D_from_<side>[:, sel] @ c`` on the device.
        """
        side = _side(side)
        lams, vecs = (self.lam_in_L, self.vec_in_L) if side == "left" else (self.lam_in_R, self.vec_in_R)
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
        return sel, c


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


def block_partition(h_device, v_left_device, v_device_right, *, target: int = 0) -> np.ndarray:
    """Cut the device into contiguous blocks that couple only to neighbouring blocks.

    Returns boundaries ``[0, b1, ..., N]`` (device degrees of freedom) such that
    ``h_device`` is block tridiagonal, every device dof coupled to the left lead
    lies in the first block and every dof coupled to the right lead in the last
    one. Greedy on the sparsity pattern in the given dof order (a device listed
    layer by layer gives blocks of about one principal layer). Consecutive blocks
    are then merged while the merged block has at most ``target`` dofs (fewer,
    larger blocks: less Python overhead per block; 0 keeps the finest cut).
    """
    h = np.asarray(h_device)
    n = h.shape[0]
    nz = np.abs(h) > 0
    cols = np.arange(n)
    last = np.where(nz, cols[None, :], -1).max(axis=1)
    last = np.maximum(last, cols)
    left_cols = np.flatnonzero(np.abs(np.asarray(v_left_device)).max(axis=0) > 0)
    right_rows = np.flatnonzero(np.abs(np.asarray(v_device_right)).max(axis=1) > 0)
    left_end = int(left_cols.max()) + 1 if left_cols.size else 1
    right_start = int(right_rows.min()) if right_rows.size else n - 1
    bounds = [0, min(max(left_end, 1), n)]
    while bounds[-1] < n:
        reach = int(last[bounds[-2] : bounds[-1]].max()) + 1
        bounds.append(min(max(reach, bounds[-1] + 1), n))
    while len(bounds) > 2 and bounds[-2] > right_start:
        del bounds[-2]
    if target > 0:
        merged = [0]
        for k in range(1, len(bounds)):
            if k < len(bounds) - 1 and bounds[k + 1] - merged[-1] <= target:
                continue  # the next block still fits: extend the current one
            merged.append(bounds[k])
        bounds = merged
    return np.array(bounds, dtype=int)


def _check_partition(bounds, h_d, v_ld, v_dr) -> np.ndarray:
    b = np.asarray(bounds, dtype=int)
    n = h_d.shape[0]
    if b.ndim != 1 or b.size < 2 or b[0] != 0 or b[-1] != n or np.any(np.diff(b) <= 0):
        raise ValueError(f"partition must be increasing boundaries from 0 to {n}, got {b.tolist()}")
    if b.size > 2:
        if np.abs(v_ld[:, b[1] :]).max(initial=0.0) > 0 or np.abs(v_dr[: b[-2]]).max(initial=0.0) > 0:
            raise ValueError("partition: the lead couplings must fall in the first and last device blocks")
        for k in range(b.size - 3):
            if np.abs(h_d[b[k] : b[k + 1], b[k + 2] :]).max(initial=0.0) > 0:
                raise ValueError(f"partition: block {k} couples beyond its neighbour; h_device is not block tridiagonal")
    return b


# Relative residual ||M x - rhs|| / (||M|| ||x|| + ||rhs||) above which the block
# solve is refined once, and above which (after refinement) the dense solve is used.
_RGF_REFINE = 1e-13
_RGF_ACCEPT = 1e-11


class Junction:
    """Two leads and a device at one in-plane wavevector, checked once, solvable at any omega.

    ``left``, ``right``: LeadBlocks (or (h00, h01) tuples); ``h_device`` (N, N)
    Hermitian; ``v_left_device`` (n_L, N) couples left PL 0 to the device;
    ``v_device_right`` (N, n_R) couples the device to right PL 1. ``partition``:
    device block boundaries (default :func:`block_partition` with ``target``).
    Build one per k_par and call :meth:`solve` for every omega of that column.
    """

    def __init__(self, left, right, h_device, v_left_device, v_device_right, *, partition=None,
                 target: int = 48, check: bool = True):
        self.left = _as_blocks(left)
        self.right = _as_blocks(right)
        if check:
            h_d, v_ld, v_dr = _check_device(self.left, self.right, h_device, v_left_device, v_device_right)
        else:
            h_d, v_ld, v_dr = (np.asarray(x) for x in (h_device, v_left_device, v_device_right))
        self.h_d = h_d.astype(complex)
        self.v_ld = v_ld.astype(complex)
        self.v_dr = v_dr.astype(complex)
        if partition is None:
            self.bounds = block_partition(self.h_d, self.v_ld, self.v_dr, target=target)
        else:
            self.bounds = _check_partition(partition, self.h_d, self.v_ld, self.v_dr)
        self.h01_norm = {"left": float(np.linalg.norm(self.left.h01, 2)),
                         "right": float(np.linalg.norm(self.right.h01, 2))}

    @property
    def n_device(self) -> int:
        return self.h_d.shape[0]

    def lead(self, side: str) -> LeadBlocks:
        return self.left if _side(side) == "left" else self.right

    def lead_modes(self, side: str, omega: float, *, tol: float = 1e-6, edge_rel: float = 1e-4) -> LeadModes:
        """Modes of one lead with the evanescent subspace a junction needs (its outgoing one)."""
        side = _side(side)
        lead = self.lead(side)
        return lead_modes(lead.h00, lead.h01, omega, tol=tol, edge_rel=edge_rel, sides=(side,), check=False,
                          h01_norm=self.h01_norm[side])

    def solve(self, omega: float, *, method: str = "rgf", tol: float = 1e-6, edge_rel: float = 1e-4,
              left_modes: LeadModes | None = None, right_modes: LeadModes | None = None) -> ScatteringMatrix:
        """Scattering matrix at ``omega`` (see :func:`solve_scattering`)."""
        if not (np.isfinite(omega) and omega > 0):
            raise ValueError(f"omega must be a positive finite number, got {omega!r}")
        if method not in ("rgf", "dense"):
            raise ValueError(f"method must be 'rgf' or 'dense', got {method!r}")
        if left_modes is None:
            left_modes = self.lead_modes("left", omega, tol=tol, edge_rel=edge_rel)
        if right_modes is None:
            right_modes = self.lead_modes("right", omega, tol=tol, edge_rel=edge_rel)
        for lm, name in ((left_modes, "left"), (right_modes, "right")):
            if abs(lm.omega - omega) > 1e-12 * omega:
                raise ValueError(f"{name}_modes were computed at omega={lm.omega}, not {omega}")
        w2 = float(omega) ** 2
        nl, nr, nd = self.left.n, self.right.n, self.n_device
        v_ld, v_dr = self.v_ld, self.v_dr

        # Left lead, pair form anchored on PLs (-1, 0): x = [psi_{-1}; psi_0].
        out_l = left_modes.outgoing_basis("left")  # left-going: prop (flux-norm.) + evanescent
        in_l = left_modes.pair_right  # right-going propagating = incident from the left
        # Right lead, pair form anchored on PLs (1, 2): x = [psi_1; psi_2].
        out_r = right_modes.outgoing_basis("right")
        in_r = right_modes.pair_left  # left-going propagating = incident from the right
        h10l = self.left.h10.astype(complex)
        h01r = self.right.h01.astype(complex)
        dl = w2 * np.eye(nl) - self.left.h00
        dr = w2 * np.eye(nr) - self.right.h00

        def left_pl0(x):  # residual of left PL 0 equation, lead part: (w2 - h00) psi_0 - h10 psi_{-1}
            return dl @ x[nl:] - h10l @ x[:nl]

        def right_pl1(x):  # (w2 - h00_R) psi_1 - h01_R psi_2
            return dr @ x[:nr] - h01r @ x[nr:]

        # The linear system, in three row blocks (left PL 0, device, right PL 1):
        #   (w2 - h00) psi_0 - h10 psi_{-1} - V_LD psi_D = 0
        #   (w2 - H_D) psi_D - V_LD^H psi_0 - V_DR psi_R1 = 0
        #   (w2 - h00_R) psi_1 - h01_R psi_2 - V_DR^H psi_D = 0
        # unknowns: left outgoing coefficients, psi_D, right outgoing coefficients;
        # the known incident parts go to the right-hand side.
        a_l = left_pl0(out_l)
        c_ld = -(v_ld.conj().T @ out_l[nl:])
        c_dr = -(v_dr @ out_r[:nr])
        a_r = right_pl1(out_r)
        m_in_l, m_in_r = in_l.shape[1], in_r.shape[1]
        rhs_l = np.zeros((nl, m_in_l + m_in_r), complex)
        rhs_d = np.zeros((nd, m_in_l + m_in_r), complex)
        rhs_r = np.zeros((nr, m_in_l + m_in_r), complex)
        rhs_l[:, :m_in_l] = -left_pl0(in_l)
        rhs_d[:, :m_in_l] = v_ld.conj().T @ in_l[nl:]
        rhs_d[:, m_in_l:] = v_dr @ in_r[:nr]
        rhs_r[:, m_in_l:] = -right_pl1(in_r)
        parts = (a_l, c_ld, c_dr, a_r, rhs_l, rhs_d, rhs_r)

        solver = method
        sol = None
        if method == "rgf" and self.bounds.size > 2 and m_in_l + m_in_r > 0:
            sol = self._solve_rgf(w2, *parts)
            if sol is None:
                solver = "rgf->dense"
        if sol is None:
            sol = self._solve_dense(w2, *parts)
            solver = solver if solver != "rgf" else "dense"
        coef_l, psi_d, coef_r = sol[:nl], sol[nl : nl + nd], sol[nl + nd :]
        m_out_l = left_modes.n_prop_left
        m_out_r = right_modes.n_prop_right
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
            solver=solver,
        )

    # ---- the two linear solvers -------------------------------------------------------------
    def _solve_dense(self, w2, a_l, c_ld, c_dr, a_r, rhs_l, rhs_d, rhs_r) -> np.ndarray:
        """One LU of the whole (n_L + N + n_R) system: the reference (and fallback) path."""
        nl, nr, nd = self.left.n, self.right.n, self.n_device
        size = nl + nd + nr
        sl, sd, sr = slice(0, nl), slice(nl, nl + nd), slice(nl + nd, size)
        M = np.zeros((size, size), dtype=complex)
        M[sl, sl] = a_l
        M[sl, sd] = -self.v_ld
        M[sd, sl] = c_ld
        M[sd, sd] = w2 * np.eye(nd) - self.h_d
        M[sd, sr] = c_dr
        M[sr, sd] = -self.v_dr.conj().T
        M[sr, sr] = a_r
        return _solve(M, np.vstack([rhs_l, rhs_d, rhs_r]))

    def _blocks(self, w2, a_l, c_ld, c_dr, a_r, rhs_l, rhs_d, rhs_r):
        """Diagonal, upper, lower and right-hand-side blocks of the system in device-block order.

        Block 0 holds the left outgoing coefficients and the first device block,
        the last block the last device block and the right outgoing coefficients.
        """
        b = self.bounds
        K = b.size - 1
        nl, nr = self.left.n, self.right.n
        h = self.h_d
        diag, upper, lower, rhs = [], [], [], []
        for k in range(K):
            s = slice(b[k], b[k + 1])
            blk = w2 * np.eye(b[k + 1] - b[k]) - h[s, s]
            r = rhs_d[s]
            if k == 0:
                blk = np.block([[a_l, -self.v_ld[:, s]], [c_ld[s], blk]])
                r = np.vstack([rhs_l, r])
            if k == K - 1:
                m = blk.shape[0]
                blk = np.block([[blk, np.vstack([np.zeros((m - (b[k + 1] - b[k]), nr)), c_dr[s]])],
                                [np.hstack([np.zeros((nr, m - (b[k + 1] - b[k]))), -self.v_dr[s].conj().T]), a_r]])
                r = np.vstack([r, rhs_r])
            diag.append(blk)
            rhs.append(r)
            if k < K - 1:
                t = slice(b[k + 1], b[k + 2])
                up = -h[s, t]
                lo = -h[t, s]
                if k == 0:  # rows / columns of the left coefficients: no coupling beyond block 0
                    up = np.vstack([np.zeros((nl, up.shape[1])), up])
                    lo = np.hstack([np.zeros((lo.shape[0], nl)), lo])
                if k + 1 == K - 1:
                    up = np.hstack([up, np.zeros((up.shape[0], nr))])
                    lo = np.vstack([lo, np.zeros((nr, lo.shape[1]))])
                upper.append(up)
                lower.append(lo)
        return diag, upper, lower, rhs

    def _solve_rgf(self, w2, *parts) -> np.ndarray | None:
        """Block-tridiagonal elimination (recursive Green's function order), or None if unreliable.

        Forward sweep ``S_k = D_k - L_{k-1} S_{k-1}^{-1} U_{k-1}`` (S_k^{-1} is the
        left-connected Green's function of blocks 0..k, with the left lead's
        outgoing waves built in), back substitution, then the residual of the
        full system is checked; one step of iterative refinement is taken if it
        is above 1e-13 and the dense solve is used if it stays above 1e-11 (or a
        pivot block is singular: a state of the left-connected part that does not
        reach the lead). Cost ~ sum of block sizes cubed instead of N^3.
        """
        diag, upper, lower, rhs = self._blocks(w2, *parts)
        K = len(diag)
        inv = []
        try:
            s_k = diag[0]
            for k in range(K):
                s_inv = np.linalg.inv(s_k)
                if not np.all(np.isfinite(s_inv)):
                    return None
                inv.append(s_inv)
                if k < K - 1:
                    s_k = diag[k + 1] - lower[k] @ (s_inv @ upper[k])
        except np.linalg.LinAlgError:
            return None
        gu = [inv[k] @ upper[k] for k in range(K - 1)]

        def sweep(r):
            y = []
            acc = r[0]
            for k in range(K):
                y.append(inv[k] @ acc)
                if k < K - 1:
                    acc = r[k + 1] - lower[k] @ y[k]
            x = [None] * K
            x[K - 1] = y[K - 1]
            for k in range(K - 2, -1, -1):
                x[k] = y[k] - gu[k] @ x[k + 1]
            return x

        def residual(x):
            res = []
            for k in range(K):
                v = diag[k] @ x[k] - rhs[k]
                if k > 0:
                    v = v + lower[k - 1] @ x[k - 1]
                if k < K - 1:
                    v = v + upper[k] @ x[k + 1]
                res.append(v)
            return res

        scale_m = max(np.abs(d).max() for d in diag)
        scale_r = max(np.abs(r).max() for r in rhs)

        def rel(res, x):
            num = max(np.abs(v).max() for v in res)
            den = scale_m * max(np.abs(v).max() for v in x) + scale_r
            return num / den if den > 0 else 0.0

        x = sweep(rhs)
        res = residual(x)
        err = rel(res, x)
        if err > _RGF_REFINE:
            dx = sweep(res)
            x = [a - c for a, c in zip(x, dx)]
            err = rel(residual(x), x)
        if not np.isfinite(err) or err > _RGF_ACCEPT:
            return None
        return np.vstack(x)


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
    method: str = "rgf",
    partition=None,
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
        The left lead's needs its left-going evanescent subspace, the right
        lead's its right-going one.
    method : ``"rgf"`` (default) eliminates the device block by block
        (:func:`block_partition`), ``"dense"`` factorises the whole system at
        once. Both solve the same equations and give the same amplitudes to
        rounding; ``"rgf"`` falls back to ``"dense"`` when its residual check
        fails (``ScatteringMatrix.solver`` records what was used).
    partition : device block boundaries for ``"rgf"`` (default: from the sparsity of ``h_device``).

    For many frequencies at one k_par build a :class:`Junction` once and call its
    ``solve``: the checks and the partition are then done once.
    """
    junction = Junction(left, right, h_device, v_left_device, v_device_right, partition=partition)
    return junction.solve(omega, method=method, tol=tol, edge_rel=edge_rel, left_modes=left_modes,
                          right_modes=right_modes)


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
        with warnings.catch_warnings():  # a singular M is handled below
            warnings.simplefilter("ignore", sla.LinAlgWarning)
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
    surface: str = "decimation",
) -> float:
    """Total transmission Tr[Gamma_L G Gamma_R G^H] from Green's functions (cross-check).

    ``surface = "modes"`` takes the lead surface Green's functions from the
    chain's Bloch factors instead of decimation (:func:`modes_surface_green_function`,
    no iteration, error O(eta) without the eps / eta rounding), see there.

    Same arguments as :func:`solve_scattering`. The retarded lead surface
    Green's functions are computed by Lopez-Sancho decimation at
    ``z = omega^2 + i eta`` with ``eta = eta_rel * omega^2`` (omega^2 units);
    ``Sigma_L = V_LD^H g_L V_LD``, ``Sigma_R = V_DR g_R V_DR^H``,
    ``Gamma = i (Sigma - Sigma^H)``, ``G = [z - H_D - Sigma_L - Sigma_R]^{-1}``.
    The result approaches the sum of modal transmissions linearly in ``eta``
    (observed deviation ~10-100 x eta_rel), but the decimation's rounding error
    grows like eps / eta_rel at some frequencies (seen up to 1e-4 at
    eta_rel = 1e-12 in a 378-dof Cu/diamond device).  Values at eta_rel,
    eta_rel/2, eta_rel/4 extrapolated by :func:`richardson_eta` (error O(eta^3))
    are what the transport stage's Caroli check compares.
    """
    left = _as_blocks(left)
    right = _as_blocks(right)
    h_d, v_ld, v_dr = _check_device(left, right, h_device, v_left_device, v_device_right)
    if not (np.isfinite(omega) and omega > 0):
        raise ValueError(f"omega must be a positive finite number, got {omega!r}")
    if surface not in ("decimation", "modes"):
        raise ValueError(f"surface must be 'decimation' or 'modes', got {surface!r}")
    w2 = float(omega) ** 2
    z = w2 + 1j * eta_rel * w2
    # Left lead: semi-infinite towards -inf, surface PL 0; next PL inwards (-1) via h10.
    if surface == "modes":
        g_l = modes_surface_green_function(left.h00, left.h10, z)
        g_r = modes_surface_green_function(right.h00, right.h01, z)
    else:
        g_l = surface_green_function(left.h00, left.h10, z, max_iter=max_iter)
        # Right lead: surface PL 1, next PL (2) via h01.
        g_r = surface_green_function(right.h00, right.h01, z, max_iter=max_iter)
    v_ld = v_ld.astype(complex)
    v_dr = v_dr.astype(complex)
    # only the device dofs touching a lead enter Gamma: work on those rows/columns
    cl = np.flatnonzero(np.abs(v_ld).max(axis=0) > 0)
    cr = np.flatnonzero(np.abs(v_dr).max(axis=1) > 0)
    sigma_l = v_ld[:, cl].conj().T @ g_l @ v_ld[:, cl]
    sigma_r = v_dr[cr] @ g_r @ v_dr[cr].conj().T
    gamma_l = 1j * (sigma_l - sigma_l.conj().T)
    gamma_r = 1j * (sigma_r - sigma_r.conj().T)
    nd = h_d.shape[0]
    a = z * np.eye(nd) - h_d
    a[np.ix_(cl, cl)] -= sigma_l
    a[np.ix_(cr, cr)] -= sigma_r
    unit = np.zeros((nd, cr.size), complex)
    unit[cr, np.arange(cr.size)] = 1.0
    g_lr = np.linalg.solve(a, unit)[cl]  # G restricted to (left contact, right contact)
    t = np.trace(gamma_l @ g_lr @ gamma_r @ g_lr.conj().T)
    return float(t.real)


def modes_surface_green_function(h00, h_out, z: complex) -> np.ndarray:
    """Retarded surface Green's function of the chain ``PL 0, 1, 2, ...`` from its Bloch factors (Ando).

    Same chain and arguments as :func:`.leads.surface_green_function`, ``Im z > 0``.
    The chain equation h_out^H psi_{j-1} + (h00 - z) psi_j + h_out psi_{j+1} = 0 with
    psi_{j+1} = lam psi_j is a generalized eigenproblem; at Im z > 0 exactly n solutions
    decay into the chain (|lam| < 1: the evanescent ones and the propagating ones pushed
    inside the unit circle by the retarded broadening, which also separates in- and
    outgoing waves that share a Bloch factor).  Their deflating subspace (ordered QZ)
    gives the map F from PL j to j+1 and ``g = [z - h00 - h_out F]^{-1}``.
    Independent of the scattering solver's mode machinery (no velocities, no Schur
    reordering); its error is O(Im z / (omega v)) for the slowest open channel.
    """
    h00 = np.asarray(h00, dtype=complex)
    h_out = np.asarray(h_out, dtype=complex)
    n = h00.shape[0]
    eye, zero = np.eye(n), np.zeros((n, n))
    a = np.block([[zero, eye], [-h_out.conj().T, z * eye - h00]])
    b = np.block([[eye, zero], [zero, h_out]])
    # ordered QZ: the deflating subspace of the n decaying solutions, [psi_{j-1}; psi_j] = [Z1; Z2],
    # so F = Z2 Z1^{-1} without eigenvectors (which are ill-conditioned at degenerate Bloch factors)
    _, _, alpha, beta, _, zmat = sla.ordqz(a, b, sort="iuc", output="complex")
    inside = np.abs(alpha) < np.abs(beta)
    if int(np.count_nonzero(inside)) != n:
        raise ValueError(f"modes_surface_green_function: {int(np.count_nonzero(inside))} decaying solutions "
                         f"at z = {z}, expected {n}")
    z1, z2 = zmat[:n, :n], zmat[n:, :n]
    f = np.linalg.solve(z1.T, z2.T).T  # Z2 Z1^{-1}
    return np.linalg.inv(z * eye - h00 - h_out @ f)


def richardson_eta(t1: float, t2: float, t4: float) -> float:
    """Extrapolation to eta -> 0 of values at eta, eta/2, eta/4 (linear and quadratic terms removed)."""
    r1, r2 = 2 * t2 - t1, 2 * t4 - t2
    return float((4 * r2 - r1) / 3)
