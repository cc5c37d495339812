"""Local density of states of the device from scattering states (paper Eq. 7) and the overlap factor (Eq. 11).

LDOS_i(f) = 1/N_q sum over incident bulk modes of both leads |u_i|^2 g(f - f_mode),
u_i the mass-weighted displacement of device atom i in the scattering state of
an incident mode whose bulk eigenvector is normalised over the primitive cell
(phonopy's convention), g a normalised Gaussian in THz.  In a perfect crystal the
scattering state *is* the Bloch wave, so the LDOS of every atom equals
phonopy's projected DOS on the same modes: the validation of this stage.

The overlap factor between two layers with summed LDOS D1, D2 is
S = int D1 D2 df / (int D1 df int D2 df), f in THz, S in 1/THz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpc_itc.core.harmonic import OMEGA_TO_THZ
from hpc_itc.core.transport.solve import DIRECTION_SIDE, LAM_TOL, OMEGA_MIN_THZ, at_or_near
from hpc_itc.core.transport.system import incident_modes_at

# Eq. 7 sums the incident modes of *both* leads, whatever directions the transport stage solves
INCIDENT_DIRECTIONS = ("left_to_right", "right_to_left")


def scattering_amplitudes(system, direction: str, mesh, i: int, j: int) -> dict[str, np.ndarray]:
    """|u_i|^2 on every device atom for each incident mode of mesh column (i, j).

    Returns frequency (THz) and weight (n_modes, n_device_atoms).
    """
    side, towards = DIRECTION_SIDE[direction]
    lead = system.lead(side)
    modes = incident_modes_at(system.primitive(side), mesh, i, j, towards, OMEGA_MIN_THZ / OMEGA_TO_THZ)
    theta = 2 * np.pi * np.array([i / mesh[0], j / mesh[1]])
    junction = system.junction(theta)  # in-plane sums and device partition shared by the column's modes
    n_atoms = system.device.n_atoms
    weight = np.zeros((len(modes.omega), n_atoms))

    def device_displacement(omega, lam, incoming):
        sm = junction.solve(omega)
        # the scattering state is linear in the incident wave: expand it in the channels
        sel, c = sm.expand_incident(side, lam, incoming, lam_tol=LAM_TOL)
        return (sm.psi_D_from_left if side == "left" else sm.psi_D_from_right)[:, sel] @ c

    for n, (omega, row, vec) in enumerate(zip(modes.omega, modes.mesh_index, modes.vectors)):
        phases = 2 * np.pi * np.array([i / mesh[0], j / mesh[1], row[2] / mesh[2]])
        lam = np.exp(1j * lead.p * phases[2])
        incoming = lead.bloch_vector(vec, phases, system.repeat)
        # a folded band edge at exactly omega (in-plane supercells): solved nearby, as in the transport stage
        u, _ = at_or_near(lambda w: device_displacement(w, lam, incoming), omega)
        weight[n] = (np.abs(u.reshape(n_atoms, 3)) ** 2).sum(axis=1)
    return {"frequency": modes.omega * OMEGA_TO_THZ, "weight": weight}


def broadened(frequency_THz: np.ndarray, weight: np.ndarray, grid_THz: np.ndarray, sigma_THz: float) -> np.ndarray:
    """sum_modes weight * Gaussian(f - f_mode); weight (n_modes, k) -> (len(grid), k)."""
    out = np.zeros((len(grid_THz), weight.shape[1]))
    norm = 1.0 / (np.sqrt(2 * np.pi) * sigma_THz)
    for start in range(0, len(frequency_THz), 512):  # chunks keep the Gaussian table small
        f = frequency_THz[start : start + 512]
        g = norm * np.exp(-0.5 * ((grid_THz[:, None] - f[None, :]) / sigma_THz) ** 2)
        out += g @ weight[start : start + 512]
    return out


def overlap_factor(grid_THz: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> float:
    """S = int D1 D2 df / (int D1 df * int D2 df), in 1/THz (Eq. 11)."""
    denominator = np.trapezoid(d1, grid_THz) * np.trapezoid(d2, grid_THz)
    return float(np.trapezoid(d1 * d2, grid_THz) / denominator) if denominator > 0 else float("nan")


def device_ldos(frequency_THz: np.ndarray, weight: np.ndarray, n_qpoints: int, sigma_THz: float,
                step_THz: float) -> tuple[np.ndarray, np.ndarray]:
    """(frequency grid THz, LDOS (grid, atoms) in states/THz per atom) from the incident modes of a mesh of ``n_qpoints``."""
    grid = np.arange(0.0, frequency_THz.max() + 5 * sigma_THz, step_THz)
    return grid, broadened(frequency_THz, weight, grid, sigma_THz) / n_qpoints


@dataclass(frozen=True)
class LayerOverlap:
    """Layer-resolved LDOS and the overlap factor S (Eq. 11) of layers ``left_layer`` (D1) and ``right_layer`` (D2)."""

    layers: np.ndarray  # layer_from_interface of each column of layer_ldos
    layer_ldos: np.ndarray  # (grid, layers), 1/THz
    left_layer: int
    right_layer: int
    overlap_factor: float  # 1/THz


def layer_overlap(grid_THz: np.ndarray, ldos: np.ndarray, atom_layers: np.ndarray, left_layer: int, right_layer: int) -> LayerOverlap:
    """Sum the per-atom LDOS (grid, atoms) over the atoms of each layer (``atom_layers``) and form S."""
    layer_ids = np.unique(atom_layers)
    layer_ldos = np.stack([ldos[:, atom_layers == lid].sum(axis=1) for lid in layer_ids], axis=1)
    d1 = ldos[:, atom_layers == left_layer].sum(axis=1)
    d2 = ldos[:, atom_layers == right_layer].sum(axis=1)
    return LayerOverlap(layer_ids, layer_ldos, left_layer, right_layer, overlap_factor(grid_THz, d1, d2))
