"""How finely the incident modes sample q_z: refinement of the transmitting window.

Eq. 5 of the paper is a Riemann sum over a uniform q-mesh N1 x N2 x N3 of the
incident lead.  With b3 normal to the interface the mesh factorises into k_par
columns of N3 values of q_z (SPEC: lead layers and the primitive zone).  At a
fixed k_par all the heat that crosses the interface is carried by modes whose
frequency lies below the other lead's highest frequency -- above it the other
lead has no channel and T = 0 exactly.  For Cu/diamond that window is a few
per cent of the diamond zone: on the paper's 20 x 20 x 20 mesh only about five
q_z values per column of diamond fall in it, so the diamond -> Cu sum is a
two- or three-point quadrature and the two directions differ by tens of per
cent (measured on ``inputs/quick.toml``: 6.92 vs 4.29 MW/(m^2 K) at 300 K).

The cure that keeps Eq. 5 as it is: refine q_z.  Both directions use the mesh
N1 x N2 x (m N3) -- a uniform mesh, just denser across the interface -- and the
in-plane columns (the k_par the two directions share) stay the user's N1 x N2.
Most added modes are settled without a solve by the closed-channel screen
(:mod:`.solve`), so the cost grows far less than m.  ``auto_qz_refine`` picks
m so that the narrowest window, counted on the Gamma column of the coarse mesh,
holds about ``AUTO_WINDOW_POINTS`` q_z values.  m = 1 is the paper's mesh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hpc_itc.core.harmonic import RealSpaceIFC
from hpc_itc.core.transport.system import column_bulk_modes

# q_z values wanted in the narrowest transmitting window (Gamma column).  Measured rectification at
# 300 K on the shipped 20x20x20 examples with the default model, the junction sum rule and the Gamma
# end weights: 80 (m = 16) gives quick 1.07 %, bare 1.63 %, N-terminated 1.33 %; on the bare one m = 24
# gives 0.09 % and m = 32 1.2 % -- what is left is sampling noise of sharp features of T(omega).
AUTO_WINDOW_POINTS = 80
MAX_AUTO_REFINE = 32


def band_maximum(primitive: RealSpaceIFC, n_inplane: int = 6, n_qz: int = 12) -> float:
    """Highest frequency of a lead (omega units of :mod:`hpc_itc.core.harmonic`) on a coarse mesh.

    Only used to count window points, so a coarse mesh is enough: its error moves
    the count by at most a point.
    """
    top = 0.0
    phi3 = 2 * np.pi * np.arange(n_qz) / n_qz
    for i in range(n_inplane):
        for j in range(n_inplane):
            theta = 2 * np.pi * np.array([i / n_inplane, j / n_inplane])
            omega, _, _ = column_bulk_modes(primitive, theta, phi3)
            top = max(top, float(omega.max()))
    return top


def window_points(incident: RealSpaceIFC, omega_top_other: float, n3: int) -> int:
    """q_z values of the Gamma column (of N3) at which the incident lead's lowest band lies below ``omega_top_other``."""
    omega, _, _ = column_bulk_modes(incident, np.zeros(2), 2 * np.pi * np.arange(n3) / n3)
    return int(np.count_nonzero(omega.min(axis=1) < omega_top_other))


def auto_qz_refine(left: RealSpaceIFC, right: RealSpaceIFC, n3: int, tops: tuple[float, float] | None = None) -> int:
    """q_z refinement factor m for a mesh with N3 = ``n3`` (the same m for both directions).

    ``tops``: the leads' band maxima if already known (one computation for several meshes).
    """
    top_left, top_right = tops if tops is not None else (band_maximum(left), band_maximum(right))
    narrowest = min(window_points(left, top_right, n3), window_points(right, top_left, n3))
    return int(min(MAX_AUTO_REFINE, max(1, math.ceil(AUTO_WINDOW_POINTS / max(narrowest, 1)))))


def refined_mesh(mesh, m: int) -> tuple[int, int, int]:
    n1, n2, n3 = (int(x) for x in mesh)
    return (n1, n2, n3 * int(m))


# ---- the end of the q_z sum at Gamma --------------------------------------------------------------
N_ACOUSTIC = 3


def qz_end_weights(mesh_index: np.ndarray, band: np.ndarray, n3: int, towards: int) -> np.ndarray:
    """Quadrature weight of each incident mode in the Landauer sums: 1, except next to Gamma.

    On the Gamma column (k_par = 0) the q_z sum of an acoustic branch starts with a
    jump: the integrand hbar omega v_z T df/dT tends to k_B c T(0+) as q_z -> 0+
    (c the sound speed, T(0+) the acoustic-mismatch transmission), while the
    mode at q_z = 0 itself has omega = 0, no current, and is not in the list.  The
    plain Riemann sum then misses half a mesh cell of each branch, ~c dq/2 in
    frequency -- an error of first order in the q_z step, and larger for the
    stiffer lead (measured on the bare Cu/diamond example, 20 x 20 x 320, against
    the frequency integral of that column's total transmission: the diamond -> Cu
    sum 7.7 % low, Cu -> diamond 1.9 %; with these weights both within 0.2 %).  The trapezoid rule restores second order: add half the
    end value, taken by linear extrapolation of the three acoustic branches'
    summed contributions at the first two q_z points, 2 F(dq) - F(2 dq); that is
    weight 2 on the acoustic modes of the first point and 1/2 on the second.  With
    fewer than 5 points per column (no two points inside the incident half) the
    end value is F(dq) (weight 3/2).  ``mesh_index`` (n, 3) and ``band`` (n,) of the
    incident modes (bands in ascending frequency), ``towards`` = +1 for modes
    moving towards +z.
    """
    idx = np.asarray(mesh_index)
    weight = np.ones(len(idx))
    if n3 < 3 or len(idx) == 0:
        return weight
    gamma = (idx[:, 0] == 0) & (idx[:, 1] == 0) & (np.asarray(band) < N_ACOUSTIC)
    kz = np.mod(idx[:, 2], n3)
    first, second = np.mod(towards, n3), np.mod(2 * towards, n3)
    if n3 >= 5:
        weight[gamma & (kz == first)] = 2.0
        weight[gamma & (kz == second)] = 0.5
    else:
        weight[gamma & (kz == first)] = 1.5
    return weight


@dataclass(frozen=True)
class SampledMeshes:
    """The meshes the transport stage samples: the main mesh and the sweep meshes with q_z refined.

    ``main`` / ``sweep``: N1 x N2 x (m N3) as sampled (sweep: unique; it may hold the main mesh, which is then not solved twice);
    ``main_input``: ``transport.q_mesh`` as given; ``factor``: m of every sampled mesh;
    ``input_of``: the mesh as given of every sampled one; ``requested``: the ``qz_refine`` setting
    (0 = automatic).
    """

    main: tuple[int, int, int]
    main_input: tuple[int, int, int]
    sweep: tuple[tuple[int, int, int], ...]
    factor: dict
    input_of: dict
    requested: int

    @property
    def all(self) -> list[tuple[int, int, int]]:
        """The main mesh, then the sweep meshes."""
        return [self.main, *self.sweep]


def sample_meshes(left: RealSpaceIFC, right: RealSpaceIFC, q_mesh, q_mesh_sweep, qz_refine: int) -> SampledMeshes:
    """Refine q_z of ``q_mesh`` and each of ``q_mesh_sweep`` by ``qz_refine`` (0: :func:`auto_qz_refine` per mesh)."""
    tops = (band_maximum(left), band_maximum(right)) if qz_refine == 0 else None
    factor: dict = {}
    input_of: dict = {}
    refined = []
    for mesh in [tuple(q_mesh)] + [tuple(m) for m in q_mesh_sweep]:
        m = qz_refine if qz_refine > 0 else auto_qz_refine(left, right, mesh[2], tops)
        eff = refined_mesh(mesh, m)
        factor[eff] = m
        input_of.setdefault(eff, tuple(mesh))
        refined.append(eff)
    sweep = tuple(dict.fromkeys(refined[1:]))
    return SampledMeshes(refined[0], tuple(q_mesh), sweep, factor, input_of, int(qz_refine))
