"""q_z refinement of the incident-mode mesh (hpc_itc.core.transport.qz_sampling): window counts, the automatic factor,
a folded band edge solved nearby.  Its effect on the two directions, through the stage: tests/stages/test_stage_transport_sampling.py.

Eq. 5 is a Riemann sum; on a Cu/diamond-like junction the diamond -> Cu sum sees only
the few diamond modes below Cu's highest frequency, so on a plain mesh the two
directions disagree by tens of per cent.  Refining q_z (same k_par columns) makes
both sums converge to the same value, as the harmonic limit demands.
"""

import numpy as np
import pytest
from springs import spring_interface

from hpc_itc.core.transport.qz_sampling import AUTO_WINDOW_POINTS, auto_qz_refine, band_maximum, refined_mesh, window_points
from hpc_itc.core.transport.solve import SOLVED_SHIFTED, solve_column
from hpc_itc.core.transport.system import build_system


@pytest.fixture(scope="module")
def cu_diamond_springs():
    """Default springs: bands up to ~7 THz (Cu-like) and ~39 THz (diamond-like)."""
    lp, rp, dev, _ = spring_interface(4, 4, 3.0)
    return build_system(lp, rp, dev, (1, 1), (4, 4))


def test_window_count_and_auto_factor(cu_diamond_springs):
    left, right = cu_diamond_springs.primitive("left"), cu_diamond_springs.primitive("right")
    top_left, top_right = band_maximum(left), band_maximum(right)
    assert top_right > 4 * top_left
    # every Cu-like q_z lies below the diamond-like top; of diamond's, only those near Gamma lie below Cu's
    assert window_points(left, top_right, 8) == 8
    assert 1 <= window_points(right, top_left, 8) <= 3
    m = auto_qz_refine(left, right, 8)
    assert m == min(32, int(np.ceil(AUTO_WINDOW_POINTS / window_points(right, top_left, 8))))
    # a junction of one material with itself: its window is the whole column
    assert auto_qz_refine(left, left, 8) == AUTO_WINDOW_POINTS // 8 and auto_qz_refine(left, left, 2 * AUTO_WINDOW_POINTS) == 1
    assert refined_mesh((4, 5, 6), 3) == (4, 5, 18)


def test_folded_band_edge_at_the_incident_frequency_is_solved_nearby():
    """2x2 in-plane supercell, Gamma column, q_z = b3/4: the incident mode shares lam = -1 with a
    folded band at its edge (zero velocity) at exactly its frequency; it is solved at omega (1 + 1e-7)
    and must give the transmittance of the unfolded 1x1 calculation of the same mode."""
    by_repeat = {}
    for repeat in ((1, 1), (2, 2)):
        lp, rp, dev, _ = spring_interface(3, 3, 4.0, inplane_repeat=repeat)
        system = build_system(lp, rp, dev, repeat, (3, 3))
        res = solve_column(system, "left_to_right", (4, 4, 8), 0, 0)
        assert np.abs(res["transmission"] + res["reflection"] - 1).max() < 1e-8
        by_repeat[repeat] = res
    folded, plain = by_repeat[(2, 2)], by_repeat[(1, 1)]
    assert np.any(folded["solve_code"] == SOLVED_SHIFTED) and not np.any(plain["solve_code"] == SOLVED_SHIFTED)
    key = {(tuple(m), b): t for m, b, t in zip(plain["mesh_index"], plain["band"], plain["transmission"])}
    diffs = [abs(key[(tuple(m), b)] - t) for m, b, t in zip(folded["mesh_index"], folded["band"], folded["transmission"])]
    assert len(diffs) == len(key) and max(diffs) < 1e-5
