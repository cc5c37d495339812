"""Hand-built LOBSTER outputs for the COHP tests (shared by tests/core, tests/stages, tests/tools).

The LOBSTER outputs are written by the tests themselves, in the formats that pymatgen's
Icohplist / Cohpcar parsers read (LOBSTER 5.1 with orbital lines, 3.1, 5.1 spin-polarised, 2.2
with bond multiplicities).  The slab is built by hand, each atom has a role (first Cu plane,
terminal diamond plane, ...), and the expected answers are written out from the numbers put into
the files, not computed by the code under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import write as ase_write

# ---------------------------------------------------------------------------------------
# a hand-built Cu/diamond slab: in-plane 5.0 x 2.5 Å (two sites per plane), c = 40 Å
# ---------------------------------------------------------------------------------------
CELL = np.diag([5.0, 2.5, 40.0])
ROLES = {  # role: (plane, position); Cu below diamond
    "cuA0": ("Cu", (0.00, 0.00, 8.0)), "cuA1": ("Cu", (2.50, 0.00, 8.0)),
    "cuB0": ("Cu", (1.25, 1.25, 9.8)), "cuB1": ("Cu", (3.75, 1.25, 9.8)),
    "cuC0": ("Cu", (0.00, 0.00, 11.6)), "cuC1": ("Cu", (2.50, 0.00, 11.6)),  # first Cu layer
    "d1_0": ("D1", (1.25, 1.25, 13.2)), "d1_1": ("D1", (3.75, 1.25, 13.3)),  # terminal plane, rumpled by 0.1 Å
    "d2_0": ("C", (1.25, 0.00, 14.1)), "d2_1": ("C", (3.75, 0.00, 14.1)),  # second diamond plane
    "d3_0": ("C", (0.00, 0.00, 15.0)), "d3_1": ("C", (2.50, 0.00, 15.0)),
    "d4_0": ("C", (0.00, 1.25, 15.9)), "d4_1": ("C", (2.50, 1.25, 15.9)),
}
TERMINATIONS = {"bare": ("C", "C"), "N": ("N", "N"), "half": ("N", "C")}  # symbols of d1_0, d1_1

# (role1, role2, in-plane translation of atom 2 in cells, ICOHP (eV), COHP scale); the comment says why it is kept or not
BONDS = [
    ("cuC0", "d1_0", (0, 0), -1.0, 1.0),  # 1 across the interface: kept
    ("cuC1", "d1_0", (0, 0), -1.2, 2.0),  # 2 kept
    ("cuC1", "d1_1", (0, 0), -1.4, 3.0),  # 3 kept
    ("cuC0", "d1_1", (-1, 0), -1.6, 4.0),  # 4 kept, periodic image
    ("d1_0", "d2_0", (0, 0), -5.0, 5.0),  # 5 inside the first diamond layer: kept
    ("d1_1", "d2_1", (0, 0), -5.4, 6.0),  # 6 kept
    ("d1_0", "d1_1", (0, 0), -3.0, 7.0),  # 7 same plane, dz = 0.1 Å < 0.3: excluded
    ("cuC0", "cuC1", (0, 0), -0.5, 8.0),  # 8 same plane: excluded
    ("cuB0", "cuC0", (0, 0), -0.7, 9.0),  # 9 second Cu layer: excluded
    ("d2_0", "d3_0", (0, 0), -6.0, 10.0),  # 10 third diamond plane: excluded
    ("cuC0", "d2_0", (0, 0), -0.3, 11.0),  # 11 Cu to the second diamond plane: kept, type C(2)-Cu
    ("cuB1", "d1_1", (0, 0), -0.2, 12.0),  # 12 second Cu layer: excluded
    ("d2_0", "d2_1", (0, 0), -0.1, 13.0),  # 13 same plane: excluded
    ("d2_1", "cuC1", (0, 0), -0.5, 14.0),  # 14 reversed order, kept, type C(2)-Cu
]
KEPT = {1, 2, 3, 4, 5, 6, 11, 14}
# expected types of the kept bonds, by termination (written out by hand)
EXPECTED_TYPES = {
    "bare": {1: "C(1)-Cu", 2: "C(1)-Cu", 3: "C(1)-Cu", 4: "C(1)-Cu", 5: "C(1)-C(2)", 6: "C(1)-C(2)", 11: "C(2)-Cu", 14: "C(2)-Cu"},
    "N": {1: "N-Cu", 2: "N-Cu", 3: "N-Cu", 4: "N-Cu", 5: "C-N", 6: "C-N", 11: "C(2)-Cu", 14: "C(2)-Cu"},
    "half": {1: "N-Cu", 2: "N-Cu", 3: "C(1)-Cu", 4: "C(1)-Cu", 5: "C-N", 6: "C(1)-C(2)", 11: "C(2)-Cu", 14: "C(2)-Cu"},
}
# -ICOHP means by type, by hand from the table above
EXPECTED_ICOHP = {
    "bare": {"C(1)-Cu": (4, 1.3), "C(1)-C(2)": (2, 5.2), "C(2)-Cu": (2, 0.4)},
    "N": {"N-Cu": (4, 1.3), "C-N": (2, 5.2), "C(2)-Cu": (2, 0.4)},
    "half": {"C(1)-Cu": (2, 1.5), "N-Cu": (2, 1.1), "C(1)-C(2)": (1, 5.4), "C-N": (1, 5.0), "C(2)-Cu": (2, 0.4)},
}
EXPECTED_MEAN = 16.4 / 8  # (1.0+1.2+1.4+1.6+5.0+5.4+0.3+0.5) / 8, all terminations
ENERGY = np.linspace(-10.0, 5.0, 16)
SHAPE = np.exp(-0.5 * ((ENERGY + 4.0) / 2.0) ** 2)  # COHP of bond k = -scale_k * SHAPE
EFERMI = 7.12345


def build_slab(termination="bare", cu_above=False, z_shift=0.0):
    """ASE atoms grouped Cu, C, N (POSCAR order) and {role: POSCAR name like 'C7'}; also unwrapped z per role."""
    d1 = dict(zip(("d1_0", "d1_1"), TERMINATIONS[termination]))
    rows = []
    for role, (plane, pos) in ROLES.items():
        sym = d1.get(role, "Cu" if plane == "Cu" else "C")
        x, y, z = pos
        if cu_above:
            z = CELL[2, 2] - z
        rows.append((role, sym, np.array([x, y, z])))
    order = {"Cu": 0, "C": 1, "N": 2}
    rows.sort(key=lambda r: order[r[1]])  # stable
    names, unwrapped = {}, {}
    counts = {}
    for k, (role, sym, pos) in enumerate(rows):
        names[role] = f"{sym}{k + 1}"
        unwrapped[role] = pos.copy()
        counts[sym] = counts.get(sym, 0) + 1
    positions = np.array([r[2] for r in rows])
    positions[:, 2] = positions[:, 2] + z_shift
    atoms = Atoms([r[1] for r in rows], positions=positions, cell=CELL, pbc=True)
    atoms.wrap()
    index = {role: k for k, (role, _, _) in enumerate(rows)}
    return atoms, names, unwrapped, index


def bond_geometry(atoms, index, unwrapped, r1, r2, t_inplane):
    """Length and the full LOBSTER translation of atom 2 for the wrapped atoms (test-side geometry)."""
    v = unwrapped[r2] + t_inplane[0] * CELL[0] + t_inplane[1] * CELL[1] - unwrapped[r1]
    length = float(np.linalg.norm(v))
    f = atoms.get_scaled_positions(wrap=True)
    i, j = index[r1], index[r2]
    frac_needed = np.linalg.solve(CELL.T, v)  # f[j] + t - f[i] must equal this
    t = np.rint(frac_needed - (f[j] - f[i])).astype(int)
    assert np.allclose(f[j] + t - f[i], frac_needed, atol=1e-9)
    return length, tuple(int(x) for x in t), float(v[2])


def write_icohplist(path, entries, fmt):
    """entries: (label, name1, name2, length, translation, icohp_up, icohp_down or None, num)."""
    lines = []
    if fmt in ("5.1", "3.1"):
        lines.append("  COHP#       atomMU       atomNU     distance     translation      ICOHP (at) eF   for spin  1")
    elif fmt == "5.1-spin":
        lines.append("  COHP#    atomMU    atomNU   distance   translation   ICOHP (at) eF    ICOHP (at) eF ")
        lines.append("                                                          for spin 1       for spin 2 ")
    elif fmt == "2.2":
        lines.append("  COHP#  atomMU  atomNU     distance          ICOHP(eF) avg. over # bonds  for spin  1")
    for label, a1, a2, length, t, up, down, num in entries:
        if fmt == "2.2":
            lines.append(f"{label:7d} {a1:>7s} {a2:>7s} {length:12.5f} {up:18.5f} {num:17d}")
            continue
        tr = f"{t[0]:7d}{t[1]:4d}{t[2]:4d}"
        if fmt == "5.1-spin":
            lines.append(f"{label:7d} {a1:>9s} {a2:>9s} {length:10.5f} {tr} {up:15.5f} {down:16.5f} ")
            for o1, o2 in (("2s", "2s"), ("2p_z", "2s")):  # orbital lines, which must not be counted
                lines.append(f"{label:7d} {a1 + '_' + _orb(a1, o1):>9s} {a2 + '_' + _orb(a2, o2):>9s} {length:10.5f} {tr} {9.9:15.5f} {9.9:16.5f} ")
        else:
            lines.append(f"{label:7d} {a1:>12s} {a2:>12s} {length:12.5f} {tr} {up:18.5f} ")
            if fmt == "5.1":
                for o1, o2 in (("2s", "2s"), ("2p_z", "2s")):
                    lines.append(f"{label:7d} {a1 + '_' + _orb(a1, o1):>12s} {a2 + '_' + _orb(a2, o2):>12s} {length:12.5f} {tr} {9.9:18.5f} ")
    Path(path).write_text("\n".join(lines) + "\n")


def _orb(name, orb):
    return {"2s": "4s", "2p_z": "3d_z^2"}[orb] if name.startswith("Cu") else orb


def write_cohpcar(path, entries, curves_up, curves_down=None):
    nb = len(entries)
    spin = curves_down is not None
    lines = ["COHPCAR file generated by LOBSTER. Energy is shifted such that the Fermi level lies at 0 eV.",
             f"{nb + 1:7d}{2 if spin else 1:8d}{len(ENERGY):8d}{ENERGY[0] + EFERMI:12.5f}{ENERGY[-1] + EFERMI:12.5f}{EFERMI:12.5f}",
             "Average"]
    for label, a1, a2, length, *_ in entries:
        lines.append(f"No.{label}:{a1}->{a2}({length:.5f})")
    blocks = [curves_up] + ([curves_down] if spin else [])
    for e_idx, e in enumerate(ENERGY):
        cols = [e]
        for curves in blocks:
            avg = np.mean([c[e_idx] for c in curves])
            cols += [avg, 0.0]
            for c in curves:
                cols += [c[e_idx], 0.0]
        lines.append(" ".join(f"{x:.6f}" for x in cols))
    Path(path).write_text("\n".join(lines) + "\n")


def make_folder(folder, termination="bare", cu_above=False, z_shift=0.0, fmt="5.1", lobsterout=True, num=None):
    """A fake finished LOBSTER folder; returns {bond number: (length, dz)} from the test-side geometry."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atoms, names, unwrapped, index = build_slab(termination, cu_above, z_shift)
    ase_write(folder / "POSCAR", atoms, format="vasp", direct=True)
    entries, geometry, up, down = [], {}, [], []
    for k, (r1, r2, t, icohp, scale) in enumerate(BONDS, start=1):
        length, trans, dz = bond_geometry(atoms, index, unwrapped, r1, r2, t)
        geometry[k] = (length, dz)
        n = (num or {}).get(k, 1)
        if fmt == "5.1-spin":
            entries.append((k, names[r1], names[r2], length, trans, icohp / 2 + 0.1, icohp / 2 - 0.1, n))
            up.append(-scale * SHAPE * 0.5 + 0.01 * ENERGY)
            down.append(-scale * SHAPE * 0.5 - 0.01 * ENERGY)
        else:
            entries.append((k, names[r1], names[r2], length, trans, icohp, None, n))
            up.append(-scale * SHAPE)
    write_icohplist(folder / "ICOHPLIST.lobster", entries, fmt)
    write_cohpcar(folder / "COHPCAR.lobster", entries, up, down if fmt == "5.1-spin" else None)
    if lobsterout:
        (folder / "lobsterout").write_text("LOBSTER v5.1.1\nabs. total spilling:   1.23 %\nfinished in 0 h 0 min 1 s 0 ms of wall time\n")
    return geometry, names


