"""Transmittance of incident bulk modes at one k_par: the per-column work of the transport stage.

For the modes of one in-plane wavevector (a mesh column, or one point of a
band-structure path) the in-plane Fourier sums, the device blocks and their
block-tridiagonal partition are built once (:meth:`InterfaceSystem.junction`);
then, frequency by frequency:

1. *closed channel screen* -- if the lead the wave would be transmitted into has
   no propagating channel at (k_par, omega), then T = 0 and R = 1 exactly (the
   flux can only be reflected), and nothing is solved.  A rigorous outer bound of
   that lead's bands at this k_par (sampled band ranges widened by a Lipschitz
   margin, :class:`ChannelScreen`) settles most frequencies without any
   eigenproblem; the rest are decided by the eigenvalues of the lead pencil
   (:func:`.leads.count_propagating`, the classification the mode solver uses).
   For Cu/diamond most incident modes are settled here: Cu modes at large k_par
   find no diamond channel, and diamond modes above Cu's band find no Cu channel.
2. modes with the same frequency (degenerate bands) share one scattering solve;
3. the scattering matrix (mode matching, block-tridiagonal elimination with a
   residual check and a dense fallback) is projected on each incident bulk
   eigenvector laid on the principal layer with its Bloch phase.

Every T + R = 1 holds by construction (exactly 0 + 1 for closed channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpc_itc.core.harmonic import OMEGA_TO_THZ, OMEGA_UNIT_RAD_S, bulk_modes
from hpc_itc.core.transport import landauer
from hpc_itc.core.transport.leads import count_propagating
from hpc_itc.core.transport.qz_sampling import qz_end_weights
from hpc_itc.core.transport.scattering import caroli_transmission, richardson_eta
from hpc_itc.core.transport.symmetry import MeshReduction
from hpc_itc.core.transport.system import InterfaceSystem, incident_modes_at

OMEGA_MIN_THZ = 1e-3  # acoustic modes at Gamma are skipped (see incident_modes_at)
# lam_tol admits nearly degenerate partners (a symmetry broken at the 1e-9 level
# splits their Bloch factors by more than the solver's tolerance)
LAM_TOL = 1e-4
DIRECTION_SIDE = {"left_to_right": ("left", +1), "right_to_left": ("right", -1)}
OTHER = {"left": "right", "right": "left"}
# the maps evaluate zone-boundary and Gamma modes 1e-4 |b3| inside the zone, where v_z is ~1e-4 of
# the scale: a lower threshold than the mesh's (system.VZ_REL_MIN), which only drops band-edge modes
PATH_VZ_REL_MIN = 1e-7
SAME_OMEGA_REL = 1e-10  # modes whose frequencies differ by less share one scattering solve

# how each incident mode was settled (stored per mode as ``solve_code``)
CLOSED_BY_BOUND = 0  # transmitting lead's bands do not reach omega (band-range bound)
CLOSED_BY_COUNT = 1  # no unit-modulus Bloch factor in the transmitting lead's pencil
SOLVED_RGF = 2
SOLVED_DENSE = 3
SOLVED_RGF_FALLBACK = 4  # block elimination rejected by its residual check, dense used
SOLVED_SHIFTED = 5  # solved at omega (1 + SHIFT_REL): another band has an edge at exactly omega
_CODES = {"rgf": SOLVED_RGF, "dense": SOLVED_DENSE, "rgf->dense": SOLVED_RGF_FALLBACK}
# In-plane supercells fold the zone so that, at special mesh points (e.g. q_z = b3/4 with two layers
# per principal layer), an incident mode shares its Bloch factor lam = -1 with a folded band that
# has a band edge (zero velocity) at exactly its frequency.  The channel basis is then defective
# there (or the lead pencil singular); T(omega) is continuous, so the mode is solved at a frequency
# shifted by this much, where the incident bulk vector is still a solution to ~1e-7 (the expansion
# accepts 1e-6).  The error is of order SHIFT_REL in T.
SHIFT_REL = 1e-7


def at_or_near(attempt, omega: float):
    """(``attempt(omega)``, False), or (``attempt(omega (1 + SHIFT_REL))``, True) where the first
    raises ValueError (LeadModeError included): the retry policy of every per-mode solve."""
    try:
        return attempt(omega), False
    except ValueError:
        return attempt(omega * (1.0 + SHIFT_REL)), True


@dataclass
class ChannelScreen:
    """Outer bound of the frequencies at which a lead has propagating channels, at one k_par.

    The lead's Bloch Hamiltonian H(psi) = h00 + h01 e^{i psi} + h10 e^{-i psi}
    (psi the phase per principal layer) has eigenvalues omega^2 that vary with
    psi no faster than ||H'|| <= 2 ||h01||_2 (Weyl).  Sampling psi at ``n`` points
    and widening each band's sampled range by that slope times the largest
    distance to a sample (pi / n) gives intervals that contain every propagating
    omega^2; outside all of them the lead certainly has no open channel.
    """

    lo: np.ndarray  # (n_bands,) omega^2 lower ends
    hi: np.ndarray

    @classmethod
    def of_lead(cls, h00: np.ndarray, h01: np.ndarray, n_samples: int = 64) -> "ChannelScreen":
        psi = 2 * np.pi * np.arange(n_samples) / n_samples
        ph = np.exp(1j * psi)[:, None, None]
        h = h00[None] + h01[None] * ph + h01.conj().T[None] * ph.conj()
        e = np.linalg.eigvalsh(0.5 * (h + np.conj(np.swapaxes(h, 1, 2))))
        margin = 2 * np.linalg.norm(h01, 2) * np.pi / n_samples
        margin += 1e-12 * max(np.abs(e).max(), 1.0)
        return cls(e.min(axis=0) - margin, e.max(axis=0) + margin)

    def may_propagate(self, omega: float) -> bool:
        w2 = float(omega) ** 2
        return bool(np.any((self.lo <= w2) & (w2 <= self.hi)))


def solve_incident(system: InterfaceSystem, side: str, theta: np.ndarray, omegas, lams, vectors, *,
                   method: str = "rgf", screen: bool = True, group: bool = True):
    """T, R and solve code of incident waves at one k_par.

    ``theta``: in-plane phases of the primitive cell; ``omegas``: angular
    frequencies; ``lams``: Bloch factors per principal layer; ``vectors``: the
    waves on one principal layer of the incident lead (``side``).  ``screen``
    and ``group`` switch the closed-channel screen and the sharing of solves
    between equal frequencies (both on in production; off gives the plain
    one-solve-per-mode reference).
    """
    omegas = np.asarray(omegas, float)
    n = len(omegas)
    t_out, r_out = np.zeros(n), np.ones(n)
    code = np.full(n, -1, dtype=np.int8)
    if n == 0:
        return t_out, r_out, code
    other = OTHER[side]
    theta_sc = system.supercell_phases(theta)
    bound = None
    if screen:
        h00, h01 = system.lead(other).blocks(theta_sc)
        bound = ChannelScreen.of_lead(h00, h01)
    order = np.argsort(omegas, kind="stable")
    groups = []
    for idx in order:
        if group and groups and omegas[idx] - omegas[groups[-1][0]] <= SAME_OMEGA_REL * omegas[idx]:
            groups[-1].append(idx)
        else:
            groups.append([idx])
    junction = None
    for members in groups:
        omega = omegas[members[0]]
        if screen:
            if not bound.may_propagate(omega):
                code[members] = CLOSED_BY_BOUND
                continue
            if count_propagating(h00, h01, omega) == 0:
                code[members] = CLOSED_BY_COUNT
                continue
        if junction is None:
            junction = system.junction(theta)

        def scatter(w, members=members):
            sm = junction.solve(w, method=method)
            return sm.solver, [sm.incident(side, lams[m], vectors[m], lam_tol=LAM_TOL) for m in members]

        (solver, pairs), shifted = at_or_near(scatter, omega)  # a folded band edge at exactly omega: SHIFT_REL
        for m, (t, r) in zip(members, pairs):
            t_out[m], r_out[m] = t, r
        code[members] = SOLVED_SHIFTED if shifted else _CODES[solver]
    return t_out, r_out, code


def solve_column(system: InterfaceSystem, direction: str, mesh, i: int, j: int, *, method: str = "rgf",
                 screen: bool = True, group: bool = True) -> dict[str, np.ndarray]:
    """T and R of every incident mode in mesh column (i, j) for one direction."""
    side, towards = DIRECTION_SIDE[direction]
    primitive = system.primitive(side)
    lead = system.lead(side)
    modes = incident_modes_at(primitive, mesh, i, j, towards, OMEGA_MIN_THZ / OMEGA_TO_THZ)
    theta = 2 * np.pi * np.array([i / mesh[0], j / mesh[1]])
    phi3 = 2 * np.pi * modes.mesh_index[:, 2] / mesh[2]
    lams = np.exp(1j * lead.p * phi3)
    vectors = [lead.bloch_vector(vec, (theta[0], theta[1], f), system.repeat) for vec, f in zip(modes.vectors, phi3)]
    t, r, code = solve_incident(system, side, theta, modes.omega, lams, vectors, method=method, screen=screen,
                                group=group)
    return {"mesh_index": modes.mesh_index, "band": modes.band, "omega": modes.omega, "vz": modes.vz,
            "transmission": t, "reflection": r, "solve_code": code}


# ---- mode-resolved maps along a path ----------------------------------------------------------
def path_transmission(system: InterfaceSystem, direction: str, q_frac: np.ndarray, *, method: str = "rgf",
                      displacement: float = 1e-4) -> dict[str, np.ndarray]:
    """Frequency and transmittance of every band at each q of a path in the incident lead's zone.

    ``q_frac`` (n, 3): q on the incident lead's primitive reciprocal basis.  For
    each band the incident partner is used: the mode itself if its v_z points
    towards the interface, else the mode of the same band at the mirrored
    q_z (same k_par; by the leads' symmetry it has the same frequency and the
    opposite v_z).  Where v_z vanishes at both (Gamma, zone faces: a standing
    wave, no incident flux) the limit from inside the zone is used, evaluated at
    q_z displaced by ``displacement`` |b3| (and its mirror); a band still below
    the acoustic cut-off there, or with no inward partner, gives NaN.  Returns frequency (n, n_b) in omega units, transmission
    (n, n_b), vz (n, n_b) of the incident partner (signed, omega x Å units) and
    q_used (n, n_b, 3) fractional.
    """
    side, towards = DIRECTION_SIDE[direction]
    primitive = system.primitive(side)
    lead = system.lead(side)
    a = np.asarray(primitive.lattice, float)
    b = 2 * np.pi * np.linalg.inv(a).T
    omega_min = OMEGA_MIN_THZ / OMEGA_TO_THZ
    q_frac = np.atleast_2d(np.asarray(q_frac, float))
    nb = primitive.n_dof
    freq = np.full((len(q_frac), nb), np.nan)
    trans = np.full((len(q_frac), nb), np.nan)
    vz_used = np.full((len(q_frac), nb), np.nan)
    q_used = np.full((len(q_frac), nb, 3), np.nan)

    def to_frac(q_cart):
        return q_cart @ a.T / (2 * np.pi)

    def mirrored(qf):
        return to_frac((qf @ b) * np.array([1.0, 1.0, -1.0]))

    for n, qf in enumerate(q_frac):
        omega0, _, _ = bulk_modes(primitive, 2 * np.pi * qf)
        freq[n] = omega0
        vz_min = PATH_VZ_REL_MIN * max(omega0.max(), 0.0) * a[2, 2]
        shifted = to_frac(qf @ b + np.array([0.0, 0.0, displacement * np.linalg.norm(b[2])]))
        candidates = [qf, mirrored(qf), shifted, mirrored(shifted)]
        solved = [bulk_modes(primitive, 2 * np.pi * c) for c in candidates]
        chosen = []
        for band in range(nb):
            if omega0[band] < omega_min and not (solved[2][0][band] >= omega_min):
                continue
            for c, (om, vz, vecs) in zip(candidates, solved):
                if om[band] >= omega_min and towards * vz[band] > vz_min:
                    chosen.append((band, c, om[band], vz[band], vecs[:, band]))
                    break
        if not chosen:
            continue
        theta = 2 * np.pi * qf[:2]
        omegas = np.array([c[2] for c in chosen])
        lams = np.array([np.exp(1j * lead.p * 2 * np.pi * c[1][2]) for c in chosen])
        vectors = [lead.bloch_vector(c[4], 2 * np.pi * c[1], system.repeat) for c in chosen]
        t, _, _ = solve_incident(system, side, theta, omegas, lams, vectors, method=method)
        for (band, c, _, vz, _), tt in zip(chosen, t):
            trans[n, band] = tt
            vz_used[n, band] = vz
            q_used[n, band] = c
    return {"frequency": freq, "transmission": trans, "vz": vz_used, "q_used": q_used}


# ---- Caroli cross-check ------------------------------------------------------------------------
def caroli_samples(theta: np.ndarray, omega: np.ndarray, code: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` (k_par, omega) points to cross-check, evenly spread and deterministic.

    Points where a scattering problem was actually solved are preferred (the
    closed-channel ones are trivially T = 0); if there are fewer than ``count``
    of them the rest are taken evenly from the closed ones.
    """
    if count <= 0 or len(omega) == 0:
        return np.zeros(0, int)
    key = np.lexsort((omega, theta[:, 1], theta[:, 0]))
    solved = key[(code[key] >= SOLVED_RGF) & (code[key] != SOLVED_SHIFTED)]
    closed = key[code[key] < SOLVED_RGF]  # (shifted solves are not compared: the lead basis breaks at their omega)

    def spread(pool, k):
        if k <= 0 or len(pool) == 0:
            return pool[:0]
        k = min(k, len(pool))
        return pool[np.unique(np.linspace(0, len(pool) - 1, k).round().astype(int))]

    first = spread(solved, count)
    return np.concatenate([first, spread(closed, count - len(first))])


CAROLI_ETA_REL = 1e-10  # broadening of the mode-based surface Green's functions (Richardson, 3 points)
CAROLI_DECIMATION_ETA_REL = 1e-6  # Lopez-Sancho decimation (Richardson, 3 points)
CAROLI_SLOW_REL = 1e-3  # skip points where a channel is slower than this fraction of the fastest (band edges)
# a Green's-function estimate counts as converged in eta when its quadratic (three-point) and
# linear (two-point) extrapolations agree to this: true where T(eta) is smooth, false at the
# sqrt(eta) behaviour of a band edge or flat band and where rounding drifts
CAROLI_CONVERGED = 1e-9


def caroli_difference(system: InterfaceSystem, side: str, theta: np.ndarray, omega: float) -> tuple[float, float] | None:
    """(sum of modal transmissions from ``side``, Tr[Gamma_L G Gamma_R G^H]) at one (k_par, omega).

    The Green's-function side does not use the scattering solver's modes: the
    lead surface Green's functions come from the chain's Bloch factors at
    z = omega^2 (1 + i eta) (``surface="modes"`` of :func:`.scattering.caroli_transmission`,
    eta = 1e-10, 5e-11, 2.5e-11 extrapolated to eta -> 0) and from Lopez-Sancho
    decimation (eta = 1e-6 ... extrapolated); the one closer to the modal sum is
    returned (estimates whose broadenings disagree are dropped).  Returns None at a
    band edge (a channel of either lead slower than ``CAROLI_SLOW_REL`` of the
    fastest): there T(omega) has a square-root cusp, the Green's function
    converges like sqrt(eta) and the comparison would test the broadening, not
    the solver; and where neither estimate has converged in eta (a flat band of
    a lead at exactly omega, which the mode solver sees as no channel).
    """
    junction = system.junction(theta)
    sm = junction.solve(omega)
    speeds = np.abs(np.concatenate([sm.vel_in_L, sm.vel_out_L, sm.vel_in_R, sm.vel_out_R]))
    if speeds.size and speeds.min() < CAROLI_SLOW_REL * speeds.max():
        return None
    modal = sm.total_transmission(side)
    args = (junction.left, junction.right, junction.h_d, junction.v_ld, junction.v_dr, omega)
    # two Green's-function estimates with different weak spots: the mode-based surface Green's
    # function is exact to O(eta^3) but meets singular chain pencils at some high-symmetry k_par;
    # decimation has no pencil but rounding ~eps/eta.  A real error of the scattering solver
    # shows in both, so the closer one is the cross-check.  An estimate whose extrapolations
    # disagree (CAROLI_CONVERGED) has not reached its eta -> 0 limit: at a flat band or band edge
    # of a lead at exactly omega (a singular point of G, not a test of the solver).
    estimates = []
    for surface, eta in (("modes", CAROLI_ETA_REL), ("decimation", CAROLI_DECIMATION_ETA_REL)):
        try:
            t1, t2, t4 = (caroli_transmission(*args, eta_rel=eta / f, surface=surface) for f in (1, 2, 4))
        except (ArithmeticError, RuntimeError, ValueError, np.linalg.LinAlgError):
            # decimation that does not converge in its iteration limit, a pencil without n decaying
            # solutions: this estimate is unavailable here, not a verdict on the solver
            continue
        value = richardson_eta(t1, t2, t4)
        if abs(value - (2 * t4 - t2)) <= CAROLI_CONVERGED * max(1.0, abs(value)):
            estimates.append(value)
    if not estimates:
        return None
    return modal, min(estimates, key=lambda c: abs(c - modal))


def direction_sums(system: InterfaceSystem, direction: str, modes: dict, mesh, temperatures_K,
                   bin_edges_THz=None) -> landauer.LandauerSums:
    """The Landauer sums (:func:`.landauer.landauer_sums`) of one direction's mode list on ``mesh``.

    ``modes``: the concatenated mode arrays of :func:`solve_column` over every column of the mesh
    (internal units: omega in phonopy's frequency unit, vz in that unit x Å).
    """
    side, towards = DIRECTION_SIDE[direction]
    volume = abs(np.linalg.det(system.primitive(side).lattice))
    omega_rad_s = modes["omega"] * OMEGA_UNIT_RAD_S
    speed = towards * modes["vz"] * OMEGA_UNIT_RAD_S * 1e-10  # |v_z| towards the interface, m/s
    freq = modes["omega"] * OMEGA_TO_THZ
    return landauer.landauer_sums(omega_rad_s, speed, modes["transmission"], modes["quadrature_weight"], temperatures_K,
                                  volume, int(np.prod(mesh)), freq, bin_edges_THz)


def caroli_check(system: InterfaceSystem, direction: str, modes: dict, mesh, count: int) -> tuple[float, int]:
    """Largest |sum of modal T - Tr[Gamma_L G Gamma_R G^H]| over ``count`` sampled (k_par, omega) of one direction's
    mode list, and how many points were compared (candidates at band edges are passed over, see
    :func:`caroli_difference`)."""
    side, _ = DIRECTION_SIDE[direction]
    computed = ~modes["symmetry_image"].astype(bool)
    theta = 2 * np.pi * modes["mesh_index"][computed][:, :2] / np.array(mesh[:2])
    omega = modes["omega"][computed]
    worst, used = 0.0, 0
    primary = caroli_samples(theta, omega, modes["solve_code"][computed], count)
    taken = set(primary.tolist())
    spare = [p for p in caroli_samples(theta, omega, modes["solve_code"][computed], 4 * count) if p not in taken]
    for p in list(primary) + spare:
        pair = caroli_difference(system, side, theta[p], omega[p])
        if pair is None:
            continue
        worst = max(worst, abs(pair[0] - pair[1]))
        used += 1
        if used == count:
            break
    return worst, used


def solve_orbits(system: InterfaceSystem, direction: str, mesh, reduction: MeshReduction, orbits, *,
                 method: str = "rgf") -> dict[str, np.ndarray]:
    """The modes of every column of the given orbits of ``reduction``: each representative column is solved
    (:func:`solve_column`) and its T, R copied to the other columns of its orbit (``symmetry_image`` true),
    with each mode's quadrature weight (:func:`.qz_sampling.qz_end_weights`)."""
    n3 = mesh[2]
    _, towards = DIRECTION_SIDE[direction]
    parts = []
    for r in orbits:
        i, j = reduction.representatives[r]
        res = solve_column(system, direction, mesh, i, j, method=method)
        for m, (ii, jj, dk) in enumerate(reduction.members[r]):
            idx = res["mesh_index"].copy()
            idx[:, 0], idx[:, 1] = ii, jj
            idx[:, 2] = (idx[:, 2] + dk) % n3
            copy = dict(res, mesh_index=idx)
            copy["symmetry_image"] = np.full(len(idx), m > 0)
            copy["quadrature_weight"] = qz_end_weights(idx, res["band"], n3, towards)
            parts.append(copy)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
