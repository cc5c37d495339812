"""Landauer sums for the interfacial thermal conductance (SI units in argument names).

The conductance per unit area of an interface between two half-crystals is

    h(T) = 1/(N_q V) * sum_{q, s with v_z > 0} hbar omega_qs v_z,qs T_qs df(omega_qs, T)/dT

where the sum runs over the N_q q-points (uniform sampling of the Brillouin
zone of the side the phonons come from) and branches s of that bulk crystal
with unit-cell volume V, ``v_z`` is the group velocity component along the
interface normal (towards the interface) and ``T_qs`` the transmission
probability. ``f`` is the Bose-Einstein occupation. With ``T_qs = 1`` this is
the phonon radiation limit of that side.

``hbar omega df/dT = k_B x^2 e^x / (e^x - 1)^2`` with ``x = hbar omega / (k_B T)``
(the heat capacity of one mode) is evaluated in a form that neither overflows
for large ``x`` nor loses its finite limit ``k_B`` as ``x -> 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import constants as _c

__all__ = [
    "LandauerSums",
    "landauer_sums",
    "mode_weight",
    "bose_einstein_dfdT",
    "mode_heat_capacity_J_K",
    "conductance_contributions_MW_m2K",
    "conductance_MW_m2K",
    "radiation_limit_MW_m2K",
    "spectral_transmission",
    "cumulative_conductance",
]

HBAR_J_S = _c.hbar
KB_J_K = _c.k
_A3_TO_M3 = 1e-30
_W_TO_MW = 1e-6
_X_MAX = 700.0  # exp(-700) ~ 1e-304: larger reduced energies contribute exactly 0


def _x(omega_rad_s, temperature_K):
    """Reduced energy x = hbar omega / (k_B T), broadcast over the inputs."""
    omega = np.asarray(omega_rad_s, dtype=float)
    temp = np.asarray(temperature_K, dtype=float)
    if np.any(temp <= 0):
        raise ValueError("temperatures must be > 0 K")
    if np.any(omega < 0):
        raise ValueError("angular frequencies must be >= 0 rad/s")
    return HBAR_J_S * omega / (KB_J_K * temp), temp


def _x2_ex_over_expm1_sq(x):
    """x^2 e^x / (e^x - 1)^2 = x^2 e^-x / (1 - e^-x)^2, equal to 1 at x = 0.

    Written with e^-x so that large x cannot overflow e^x; -expm1(-x) keeps
    precision for small x. Beyond x = 700 the value (< 1e-298) is set to 0
    rather than computed through an underflowing exponential.
    """
    x = np.asarray(x, dtype=float)
    out = np.ones_like(x)
    out[x >= _X_MAX] = 0.0
    mid = (x > 0) & (x < _X_MAX)
    xs = x[mid]
    out[mid] = xs * xs * np.exp(-xs) / np.expm1(-xs) ** 2
    return out


def bose_einstein_dfdT(omega_rad_s, temperature_K):
    """Temperature derivative of the Bose-Einstein occupation, df/dT in 1/K.

    ``df/dT = (x / T) e^x / (e^x - 1)^2``, ``x = hbar omega / (k_B T)``;
    broadcasts ``omega_rad_s`` (rad/s, >= 0) against ``temperature_K`` (K, > 0).
    Large ``x`` gives 0 without overflow; ``omega = 0`` gives ``inf``
    (use :func:`mode_heat_capacity_J_K` for the finite product hbar omega df/dT).
    """
    x, temp = _x(omega_rad_s, temperature_K)
    x, temp = np.broadcast_arrays(x, temp)
    with np.errstate(divide="ignore"):
        out = np.where(x > 0, _x2_ex_over_expm1_sq(x) / np.where(x > 0, x, 1.0) / temp, np.inf)
    return out if out.ndim else float(out)


def mode_heat_capacity_J_K(omega_rad_s, temperature_K):
    """hbar omega df/dT in J/K (heat capacity of one harmonic mode); -> k_B as omega -> 0."""
    x, _ = _x(omega_rad_s, temperature_K)
    out = KB_J_K * _x2_ex_over_expm1_sq(x)
    return out if np.ndim(out) else float(out)


def conductance_contributions_MW_m2K(
    omega_rad_s, vz_m_s, transmission, temperatures_K, cell_volume_A3, n_qpoints, weights=None
):
    """Per-mode contributions to h(T), shape (n_modes, n_temperatures), MW/(m^2 K).

    Modes with ``vz_m_s <= 0`` (travelling away from the interface) contribute 0.
    Inputs ``omega_rad_s``, ``vz_m_s``, ``transmission`` are flattened and must
    have the same size; ``temperatures_K`` is a scalar or 1-D array.
    ``weights``: quadrature weight of each mode (default 1, the plain mesh sum;
    see :func:`hpc_itc.core.transport.qz_sampling.qz_end_weights`).
    """
    omega = np.asarray(omega_rad_s, dtype=float).reshape(-1)
    vz = np.asarray(vz_m_s, dtype=float).reshape(-1)
    trans = np.broadcast_to(np.asarray(transmission, dtype=float), np.shape(omega_rad_s)).reshape(-1)
    if not (omega.size == vz.size == trans.size):
        raise ValueError("omega_rad_s, vz_m_s and transmission must have the same size")
    temps = np.atleast_1d(np.asarray(temperatures_K, dtype=float))
    if temps.ndim != 1:
        raise ValueError("temperatures_K must be a scalar or a 1-D array")
    if not (cell_volume_A3 > 0 and n_qpoints > 0):
        raise ValueError("cell_volume_A3 and n_qpoints must be > 0")
    weight = np.where(vz > 0, vz * trans, 0.0)  # m/s
    if weights is not None:
        quad = np.broadcast_to(np.asarray(weights, dtype=float), np.shape(omega_rad_s)).reshape(-1)
        weight = weight * quad
    cap = mode_heat_capacity_J_K(omega[:, None], temps[None, :])  # J/K, (n_modes, n_T)
    norm = 1.0 / (n_qpoints * cell_volume_A3 * _A3_TO_M3)  # 1/m^3
    return np.atleast_2d(cap) * weight[:, None] * norm * _W_TO_MW


def conductance_MW_m2K(omega_rad_s, vz_m_s, transmission, temperatures_K, cell_volume_A3, n_qpoints, weights=None):
    """Landauer conductance h(T) in MW/(m^2 K), one value per temperature.

    ``h(T) = 1/(N_q V) sum_{v_z > 0} hbar omega v_z T df/dT`` with
    ``omega_rad_s`` (rad/s), ``vz_m_s`` (m/s, + = towards the interface),
    ``transmission`` (probabilities), ``cell_volume_A3`` (Å^3) the volume of the
    cell whose Brillouin zone is sampled by ``n_qpoints`` points, ``weights``
    the modes' quadrature weights (default 1).
    """
    contrib = conductance_contributions_MW_m2K(
        omega_rad_s, vz_m_s, transmission, temperatures_K, cell_volume_A3, n_qpoints, weights
    )
    return contrib.sum(axis=0)


def radiation_limit_MW_m2K(omega_rad_s, vz_m_s, temperatures_K, cell_volume_A3, n_qpoints, weights=None):
    """Phonon radiation limit (all transmissions = 1) in MW/(m^2 K), one value per temperature."""
    return conductance_MW_m2K(
        omega_rad_s, vz_m_s, np.ones(np.shape(omega_rad_s)), temperatures_K, cell_volume_A3, n_qpoints, weights
    )


def spectral_transmission(freq_THz, weights, transmission, bin_edges_THz):
    """Weighted mean transmission per frequency bin.

    ``freq_THz``: ordinary frequency nu = omega / (2 pi) of each mode (THz);
    ``weights``: typically hbar omega v_z df/dT (>= 0; zero for v_z <= 0);
    bins follow :func:`numpy.histogram` (half-open, last bin closed).
    Returns ``sum(w T) / sum(w)`` per bin, NaN where a bin has no mode or zero weight.
    """
    freq = np.asarray(freq_THz, dtype=float).reshape(-1)
    w = np.asarray(weights, dtype=float).reshape(-1)
    t = np.asarray(transmission, dtype=float).reshape(-1)
    if not (freq.size == w.size == t.size):
        raise ValueError("freq_THz, weights and transmission must have the same size")
    edges = np.asarray(bin_edges_THz, dtype=float)
    num, _ = np.histogram(freq, bins=edges, weights=w * t)
    den, _ = np.histogram(freq, bins=edges, weights=w)
    out = np.full(num.shape, np.nan)
    ok = den != 0
    out[ok] = num[ok] / den[ok]
    return out


def cumulative_conductance(freq_THz, contributions, grid_THz):
    """Conductance accumulated over modes with frequency strictly below each grid value.

    ``contributions`` has shape (n_modes,) or (n_modes, ...) (e.g. the output of
    :func:`conductance_contributions_MW_m2K`); the result has shape
    (len(grid_THz), ...) in the units of ``contributions``.
    """
    freq = np.asarray(freq_THz, dtype=float).reshape(-1)
    contrib = np.asarray(contributions, dtype=float)
    if contrib.shape[0] != freq.size:
        raise ValueError("contributions must have one row per mode")
    grid = np.atleast_1d(np.asarray(grid_THz, dtype=float))
    order = np.argsort(freq, kind="stable")
    csum = np.concatenate(
        [np.zeros((1,) + contrib.shape[1:]), np.cumsum(contrib[order], axis=0)], axis=0
    )
    # Number of modes with freq < g (strict), then the partial sum up to there.
    count = np.searchsorted(freq[order], grid, side="left")
    return csum[count]


def mode_weight(omega_rad_s, speed_m_s, temperature_K):
    """hbar omega v_z df/dT per mode (J m / (s K)): the Landauer weight of Eq. 5 (``speed_m_s`` towards the interface)."""
    return _c.hbar * np.asarray(omega_rad_s, float) * np.asarray(speed_m_s, float) * bose_einstein_dfdT(omega_rad_s, temperature_K)


@dataclass(frozen=True)
class LandauerSums:
    """The sums over one direction's incident modes (paper Eqs. 5 and 6), per temperature.

    ``itc`` and ``radiation_limit`` (MW/(m^2 K)), shape (n_T,); ``spectral_transmission`` (n_T, n_bins):
    the Landauer-weighted mean T per frequency bin (NaN in empty bins); ``cumulative_itc`` (n_T, n_bins):
    h restricted to modes with f below each bin's upper edge.  The two spectra are None when no bins
    were asked for.
    """

    itc: np.ndarray
    radiation_limit: np.ndarray
    spectral_transmission: np.ndarray | None
    cumulative_itc: np.ndarray | None


def landauer_sums(omega_rad_s, speed_m_s, transmission, quadrature_weight, temperatures_K, cell_volume_A3: float,
                  n_qpoints: int, frequency_THz=None, bin_edges_THz=None) -> LandauerSums:
    """h(T), the radiation limit and (with ``bin_edges_THz``) the spectral transmittance and cumulative h of one direction.

    ``omega_rad_s`` (rad/s), ``speed_m_s`` (v_z towards the interface, m/s), ``transmission`` and
    ``quadrature_weight`` per incident mode of a mesh of ``n_qpoints`` points of the incident lead's
    zone (primitive cell volume ``cell_volume_A3``); ``frequency_THz`` (omega / 2 pi of the same modes,
    as stored) places the modes in the bins.
    """
    temps = np.atleast_1d(np.asarray(temperatures_K, float))
    h = conductance_MW_m2K(omega_rad_s, speed_m_s, transmission, temps, cell_volume_A3, n_qpoints, quadrature_weight)
    h_rad = radiation_limit_MW_m2K(omega_rad_s, speed_m_s, temps, cell_volume_A3, n_qpoints, quadrature_weight)
    if bin_edges_THz is None:
        return LandauerSums(h, h_rad, None, None)
    edges = np.asarray(bin_edges_THz, float)
    freq_THz = np.asarray(frequency_THz, float)
    spectral, cumulative = [], []
    for temp in temps:
        weight = mode_weight(omega_rad_s, speed_m_s, temp) * quadrature_weight
        spectral.append(spectral_transmission(freq_THz, weight, transmission, edges))
        contrib = weight * transmission / (n_qpoints * cell_volume_A3 * _A3_TO_M3) / 1e6  # MW/(m^2 K)
        cumulative.append(cumulative_conductance(freq_THz, contrib, edges[1:]))
    return LandauerSums(h, h_rad, np.array(spectral), np.array(cumulative))
