"""``/force_constants``: the three parts' force constants, their displacements and forces, lead phonons.

Per part (``left_lead``, ``right_lead``, ``device``): ``unitcell_*``, ``supercell_matrix``,
``displacements`` (Å), ``displaced_atoms``, ``forces`` (eV/Å, a per-row table), ``computed``,
``force_constants`` (eV/Å², phonopy's compact format), for the device ``interface_zone``; attrs
with the sum-rule and cutoff statistics, and on the device the interface stability
(``interface_stiffness_eV_A4`` ...).  Leads: subgroup ``phonons`` (dispersion, DOS, experiment).
See docs/results.md.
"""

from __future__ import annotations

from typing import Any, Callable

import h5py
import numpy as np
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from hpc_itc.core.force_constants import PARTS, PartPlan
from hpc_itc.core.harmonic import RealSpaceIFC
from hpc_itc.core.phonons import LeadPhonons
from hpc_itc.store.h5 import group_complete, read_str_array, read_str_list, write_array, write_str_list
from hpc_itc.store.rows import write_rows

GROUP = "force_constants"


def write_force_constants(g, records: list[tuple[PartPlan, np.ndarray, dict]], phonons: dict[str, LeadPhonons],
                          force_rows: Callable[[PartPlan, np.ndarray], list], cutoff_A: float, symprec: float,
                          device_route: str) -> None:
    """Fill ``/force_constants``: ``records`` (plan, all displacement forces, attrs) per part, leads' phonons;
    ``force_rows(plan, forces)`` gives the row blocks of each part's ``forces`` table (:func:`hpc_itc.store.rows.write_rows`)."""
    plans = [r[0] for r in records]
    for plan, forces, attrs in records:
        sub = g.create_group(plan.name)
        cell = plan.unitcell
        write_array(sub, "unitcell_positions", cell.positions, "Å")
        write_array(sub, "unitcell_cell", np.array(cell.cell), "Å")
        write_array(sub, "unitcell_symbols", np.array(cell.get_chemical_symbols(), dtype="S2"))
        write_array(sub, "unitcell_masses", cell.get_masses(), "amu")
        write_array(sub, "supercell_matrix", np.diag(plan.supercell))
        write_array(sub, "displacements", np.array([d[1:4] for d in plan.phonon.displacements], float), "Å")
        write_array(sub, "displaced_atoms", np.array([int(d[0]) for d in plan.phonon.displacements]))
        write_rows(sub, "forces", force_rows(plan, forces), "eV/Å",
                   doc="MLIP forces where 'computed' is true, bulk-lead forces elsewhere (interface route)")
        write_array(sub, "computed", np.isin(np.arange(plan.n_displacements), plan.task_ids), doc="displacement evaluated with the MLIP")
        write_array(sub, "force_constants", plan.phonon.force_constants, "eV/Å^2", doc="phonopy compact format (unit-cell atom, supercell atom, 3, 3)")
        if plan.name == "device" and plan.zone is not None:
            write_array(sub, "interface_zone", plan.zone, doc="unit-cell atoms whose rows come from MLIP forces")
        for k, v in attrs.items():
            if isinstance(v, list):  # lists of strings (warnings)
                write_str_list(sub, k, v)
            else:
                sub.attrs[k] = v
        if plan.name in phonons:
            write_phonons(sub.create_group("phonons"), phonons[plan.name])
    g.attrs["n_force_evaluations"] = sum(p.n_force_evaluations for p in plans)
    g.attrs["n_displacements_symmetry_reduced"] = sum(p.n_displacements for p in plans)
    g.attrs["n_displacements_naive"] = sum(p.n_displacements_naive for p in plans)
    g.attrs["cutoff_A"] = cutoff_A
    g.attrs["symprec"] = symprec
    g.attrs["device_route"] = device_route


def write_phonons(group, ph: LeadPhonons) -> None:
    """Store under ``group`` (the lead's /force_constants/<lead>/phonons group)."""
    group.attrs["material"] = ph.material
    group.attrs["path"] = "G-X-U|K-G-L-W-X (fcc, cubic coordinates; X along [001], the transport direction)"
    group.attrs["mesh"] = list(ph.mesh)
    two_pi = 2.0 * np.pi  # distances as in /transport/<direction>/path: including 2 pi
    write_array(group, "q_frac", ph.path_qpoints, doc="reduced coordinates in the lead layer cell's b1, b2, b3")
    write_array(group, "distance", two_pi * ph.path_distances, "1/Å", doc="path length, including the factor 2 pi; zero across the U|K jump")
    write_array(group, "frequency", ph.path_frequencies, "THz", doc="(points, bands)")
    write_array(group, "segment", ph.path_segment, doc="straight segment of the path each point lies on")
    write_array(group, "labels", np.array(ph.label_names, dtype="S16"))
    write_array(group, "label_positions", two_pi * ph.label_distances, "1/Å", doc="distance of each label")
    write_array(group, "dos_frequencies", ph.dos_frequencies, "THz")
    write_array(group, "dos", ph.dos, "1/THz", doc="total DOS per primitive cell (tetrahedron method); integrates to 3 x atoms")
    pts = group.create_group("points")
    for name, p in ph.points.items():
        g = pts.create_group(name)
        write_array(g, "q_reduced", p["q"])
        write_array(g, "frequencies", p["frequencies"], "THz")
        write_array(g, "longitudinal_fraction", p["longitudinal"], doc="sum over atoms of |e . q_hat|^2 per mode (NaN at Gamma)")
    if ph.comparison:
        group.attrs["reference_source"] = "hpc_itc/data/reference_phonons.toml (experiment, unstrained crystal)"
        write_array(group, "reference_labels", np.array([c[0] for c in ph.comparison], dtype="S16"))
        write_array(group, "computed_THz", np.array([c[1] for c in ph.comparison]), "THz")
        write_array(group, "reference_THz", np.array([c[2] for c in ph.comparison]), "THz")


def read_lead_phonons(group) -> LeadPhonons:
    """The group written by :func:`write_phonons`, as the LeadPhonons it was made from (distances without 2 pi)."""
    two_pi = 2.0 * np.pi
    points = {name: {"q": g["q_reduced"][()], "frequencies": g["frequencies"][()], "longitudinal": g["longitudinal_fraction"][()]}
              for name, g in group["points"].items()}
    comparison = []
    if "reference_labels" in group:
        comparison = [(label, float(c), float(r)) for label, c, r in
                      zip(read_str_array(group["reference_labels"]), group["computed_THz"][()], group["reference_THz"][()])]
    return LeadPhonons(str(group.attrs["material"]), group["q_frac"][()], group["distance"][()] / two_pi, group["frequency"][()],
                       group["segment"][()], read_str_array(group["labels"]), group["label_positions"][()] / two_pi,
                       group["dos_frequencies"][()], group["dos"][()], tuple(int(x) for x in group.attrs["mesh"]), points, comparison)


def read_phonons(group) -> dict:
    """The stored comparison and high-symmetry frequencies, as plain Python (for inspect)."""
    out = {"points_THz": {name: [float(x) for x in group["points"][name]["frequencies"][()]] for name in group["points"]}}
    if "reference_labels" in group:
        labels = [x.decode() for x in group["reference_labels"][()]]
        out["vs_experiment_THz"] = {l: {"computed": float(c), "experiment": float(r)}
                                    for l, c, r in zip(labels, group["computed_THz"][()], group["reference_THz"][()])}
    return out


def is_complete(f) -> bool:
    return group_complete(f, GROUP)


def read_phonopy(group, symprec: float | None = None) -> Phonopy:
    """A phonopy object (no displacements generated) with the stored force constants of one part."""
    cell = group["unitcell_cell"][()]
    positions = group["unitcell_positions"][()]
    unit = PhonopyAtoms(symbols=read_str_array(group["unitcell_symbols"]), cell=cell,
                        scaled_positions=np.linalg.solve(cell.T, positions.T).T, masses=group["unitcell_masses"][()])
    if symprec is None:
        symprec = float(group.parent.attrs.get("symprec", 1e-5))
    phonon = Phonopy(unit, supercell_matrix=group["supercell_matrix"][()], primitive_matrix="P", symprec=symprec, log_level=0)
    phonon.force_constants = group["force_constants"][()]
    return phonon


def read_ifc(group, symprec: float | None = None, phonon: Phonopy | None = None) -> RealSpaceIFC:
    """One part's pair force constants in the unwrapped frame of its stored unit cell (``phonon``: the part's
    :func:`read_phonopy` object when the caller has it already)."""
    phonon = read_phonopy(group, symprec) if phonon is None else phonon
    cell = group["unitcell_cell"][()]
    frac = np.linalg.solve(cell.T, group["unitcell_positions"][()].T).T
    return RealSpaceIFC.from_phonopy(phonon, frac, group["unitcell_masses"][()])


def read_ifcs(f, symprec: float) -> dict[str, RealSpaceIFC]:
    """RealSpaceIFC of every part, from an open results file."""
    return {name: read_ifc(f[GROUP][name], symprec) for name in PARTS}


def read_displacement_dataset(group, natom: int) -> dict | None:
    """phonopy's displacement dataset (with forces) of one part; None when some rows came from the leads."""
    if "computed" in group and not bool(np.all(group["computed"][()])):
        return None
    return {"natom": natom, "first_atoms": [
        {"number": int(a), "displacement": np.array(d, float), "forces": np.array(fs, float)}
        for a, d, fs in zip(group["displaced_atoms"][()], group["displacements"][()], group["forces"][()])]}


def read_interface_stability(f) -> dict:
    """The stiffness part of the SPEC's ``interface`` summary ({} before the stage or in older files)."""
    if not is_complete(f) or "interface_stiffness_eV_A4" not in f[GROUP]["device"].attrs:
        return {}
    fc = f[GROUP]["device"]
    k = fc.attrs["interface_stiffness_eV_A4"]
    return {"stiffness_eV_A4": {"xx": float(k[0, 0]), "yy": float(k[1, 1]), "zz": float(k[2, 2])},
            "lead_interplanar_stiffness_zz_eV_A4": [float(x) for x in fc.attrs["lead_interplanar_stiffness_zz_eV_A4"]],
            "lowest_gamma_frequency_THz": float(fc.attrs["lowest_gamma_frequency_THz"]),
            "warnings": read_str_list(fc, "interface_warnings")}


_PART_KEYS = ("n_displacements_symmetry_reduced", "n_displacements_naive", "asr_violation_before_eV_A2",
              "asr_violation_after_eV_A2", "cutoff_correction_max_eV_A2", "cutoff_correction_relative",
              "device_route", "interface_radius_A", "max_bulk_site_deviation_outside_zone_A")


def summary(f) -> dict[str, Any]:
    """The ``n_force_evaluations`` and ``force_constants`` entries of ``inspect`` (empty before the stage)."""
    if not is_complete(f):
        return {}
    g = f[GROUP]
    parts = {}
    for p in g:
        if not isinstance(g[p], h5py.Group):
            continue
        a = g[p].attrs
        entry: dict[str, Any] = {"n_force_evaluations": int(a["n_force_evaluations"])}
        for key in _PART_KEYS:
            if key in a:
                value = a[key]
                entry[key] = value if isinstance(value, str) else (int(value) if key.startswith("n_") else float(value))
        if "phonons" in g[p]:
            entry["phonons_THz"] = read_phonons(g[p]["phonons"])
        parts[p] = entry
    return {"n_force_evaluations": int(g.attrs["n_force_evaluations"]), "force_constants": parts}
