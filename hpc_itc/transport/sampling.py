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

import numpy as np

from ..harmonic import RealSpaceIFC
from .system import column_bulk_modes

# q_z values wanted in the narrowest transmitting window (Gamma column).  Measured rectification at
# 300 K on the shipped 20x20x20 examples (default model): 40 (m = 8) gives quick 0.7 %, bare 1.3 %,
# N-terminated 2.1 %; 80 (m = 16) gives quick 1.1 %, bare 1.0 %, N-terminated 0.7 %.
AUTO_WINDOW_POINTS = 80
MAX_AUTO_REFINE = 32


def band_maximum(primitive: RealSpaceIFC, n_inplane: int = 6, n_qz: int = 12) -> float:
    """Highest frequency of a lead (omega units of :mod:`hpc_itc.harmonic`) on a coarse mesh.

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
