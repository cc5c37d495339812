"""High-symmetry path of an fcc lead's Brillouin zone in the transport frame.

Special points come from seekpath (HPKOT conventions) for an ideal fcc crystal
given in its cubic frame.  seekpath puts X along a cubic axis of its choice; the
proper cubic rotation that brings that X onto [001] (the transport direction z)
and U onto (1/4, 1/4, 1) 2pi/a (so U lies in the plane spanned by [001] and our
x axis [110]) is applied to every point.  Then the cubic frame is turned into the
transport frame, x || [110], y || [-110], z || [001], and each point is written
on the lead's primitive reciprocal basis b1, b2, b3 (dual to a1 = (s,0,0),
a2 = (0,s,0), a3 = (s/2,s/2,d); b3 is normal to the interface).  These
fractional coordinates are used for the actual lead, so a tetragonally strained
lead gets the corresponding points of its own (body-centred tetragonal) zone.

Resulting points (fractions of b1, b2, b3; in brackets the cubic coordinates in 2 pi/a):
Gamma (0,0,0); X (0,0,1/2) [0,0,1]; U (1/4,0,5/8) [1/4,1/4,1]; K (3/8,3/8,3/4) [0,3/4,3/4];
W (1/4,1/4,3/4) [0,1/2,1]; L (1/2,0,1/2) [1/2,1/2,1/2] -- see :func:`special_points`.
X, U and W lie on the zone face normal to z, where every mode has v_z = 0.

The path is Gamma-X-U|K-Gamma-W-K-Gamma-L: U and K are equivalent points
(U = -K + G); as in standard fcc band structures the path jumps from U to K
with no distance in between ("U|K") and continues along K-Gamma.
"""

from __future__ import annotations

import itertools

import numpy as np

PATH = (("GAMMA", "X"), ("X", "U"), ("K", "GAMMA"), ("GAMMA", "W"), ("W", "K"), ("K", "GAMMA"), ("GAMMA", "L"))

# transport frame axes in the cubic frame (rows): x || [110], y || [-110], z || [001]
CUBIC_TO_TRANSPORT = np.array([[1.0, 1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, np.sqrt(2.0)]]) / np.sqrt(2.0)
# ideal fcc primitive layer cell (a = 1) in the transport frame: a1, a2 in plane, a3 to the next layer
_A_IDEAL = np.array([[1 / np.sqrt(2), 0.0, 0.0], [0.0, 1 / np.sqrt(2), 0.0],
                     [1 / (2 * np.sqrt(2)), 1 / (2 * np.sqrt(2)), 0.5]])


def _seekpath_points_cubic() -> dict[str, np.ndarray]:
    """seekpath's special points of fcc, Cartesian in the cubic frame, in units of 2 pi / a."""
    import seekpath

    cell = np.eye(3)
    positions = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    res = seekpath.get_path((cell, positions, [29] * 4), with_time_reversal=True)
    if res["bravais_lattice"] != "cF":
        raise RuntimeError(f"seekpath did not recognise fcc: {res['bravais_lattice']}")
    rec = np.asarray(res["reciprocal_primitive_lattice"], float)  # rows, includes 2 pi, possibly rotated frame
    rotation = np.asarray(res.get("rotation_matrix", np.eye(3)), float)
    out = {}
    for label, frac in res["point_coords"].items():
        q = np.asarray(frac, float) @ rec / (2 * np.pi)
        out[label] = rotation.T @ q  # back to the input (cubic) frame
    return out


def special_points() -> dict[str, np.ndarray]:
    """Gamma, X, U, K, W, L on the lead's primitive reciprocal basis (fractions of b1, b2, b3)."""
    pts = _seekpath_points_cubic()
    x, u = pts["X"], pts["U"]
    best = None
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            for row, (col, sg) in enumerate(zip(perm, signs)):
                m[row, col] = sg
            if np.linalg.det(m) < 0:
                continue
            if not np.allclose(m @ x, [0, 0, np.linalg.norm(x)], atol=1e-9):
                continue
            mu = m @ u
            if mu[0] > 0 and np.isclose(mu[0], mu[1], atol=1e-9):
                best = m
                break
        if best is not None:
            break
    if best is None:
        raise RuntimeError("no cubic rotation puts seekpath's X on [001] and U in the (1-10) plane")
    out = {}
    for label in ("GAMMA", "X", "U", "K", "W", "L"):
        q = CUBIC_TO_TRANSPORT @ (best @ pts[label])  # 2 pi / a units, transport frame
        frac = _A_IDEAL @ q  # q . a_i / (2 pi) with a in units of a
        frac[np.abs(frac) < 1e-12] = 0.0
        out[label] = frac
    return out


def lead_path(lattice: np.ndarray, n_points: int):
    """Points along Gamma-X-U|K-Gamma-W-K-Gamma-L for a lead with primitive ``lattice`` (rows, Å).

    About ``n_points`` points in all, spread over the segments in proportion to
    their length (at least 2 per segment, both ends included; a joint is listed
    once, except at the U|K jump).  Returns (q_frac (n, 3), q_cart (n, 3) in 1/Å
    including the 2 pi, distance (n,) in 1/Å, label_names, label_index).
    """
    pts = special_points()
    b = 2 * np.pi * np.linalg.inv(np.asarray(lattice, float)).T
    lengths = [np.linalg.norm((pts[e] - pts[s]) @ b) for s, e in PATH]
    total = sum(lengths)
    q_frac, names, index = [], [], []
    for seg, ((s, e), length) in enumerate(zip(PATH, lengths)):
        count = max(2, int(round(n_points * length / total)) + 1)
        ts = np.linspace(0.0, 1.0, count)
        joined = seg > 0 and PATH[seg - 1][1] == s
        if joined:
            ts = ts[1:]
        else:
            if seg > 0:  # a jump: relabel the previous end as "prev|this"
                names[-1] = f"{names[-1]}|{s}"
                names.append(None)
            else:
                names.append(s)
            index.append(len(q_frac))
        for t in ts:
            q_frac.append((1 - t) * pts[s] + t * pts[e])
        names.append(e)
        index.append(len(q_frac) - 1)
    # drop the placeholders of jumps (the start of the new segment shares the label of the jump)
    label_names, label_index = [], []
    for name, idx in zip(names, index):
        if name is None:
            continue
        label_names.append(name)
        label_index.append(idx)
    q_frac = np.array(q_frac)
    q_cart = q_frac @ b
    steps = np.linalg.norm(np.diff(q_cart, axis=0), axis=1)
    # no distance across a jump between equivalent points
    for k in range(1, len(q_frac)):
        if _is_jump(k, label_index, label_names):
            steps[k - 1] = 0.0
    distance = np.concatenate([[0.0], np.cumsum(steps)])
    return q_frac, q_cart, distance, label_names, np.array(label_index, dtype=int)


def _is_jump(k: int, label_index, label_names) -> bool:
    for idx, name in zip(label_index, label_names):
        if "|" in name and idx == k - 1:
            return True
    return False
