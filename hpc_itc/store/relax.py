"""``/relax``: the relaxed slab, its traces, the registry scan (``/relax/registry``) and the bonding report
(``/relax/interface``).

The slab datasets are those of ``/structure`` (:mod:`hpc_itc.store.structure`) at the relaxed
positions; attrs record the relaxation (``converged``, ``fmax_target_eV_A``, lattice constants,
registry, ``right_buffer_dz_A``, rattle).  See docs/results.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpc_itc.config import RelaxSettings
from hpc_itc.core.interface import EV_PER_A2_TO_J_PER_M2, RegistryScan
from hpc_itc.core.relax import RelaxResult
from hpc_itc.core.structure import Heterostructure, InterfaceSpec
from hpc_itc.store.h5 import group_complete, read_str_list, write_array, write_str_list
from hpc_itc.store.structure import read_heterostructure, write_heterostructure

GROUP = "relax"


def write_relax(g, res: RelaxResult, report: dict, settings: RelaxSettings, area_A2: float) -> None:
    """Fill ``/relax`` from a relaxation and its bonding report (:func:`hpc_itc.core.interface.relaxed_report`)."""
    write_heterostructure(g, res.heterostructure, res.strain)
    write_array(g, "energy_trace", np.array(res.energy_trace_eV), "eV")
    write_array(g, "fmax_trace", np.array(res.fmax_trace_eV_A), "eV/Å")
    g.attrs["converged"] = res.converged
    g.attrs["fmax_target_eV_A"] = settings.fmax_eV_A
    g.attrs["lattice_constant_left_A"] = res.lattice_constants_A["left"]
    g.attrs["lattice_constant_right_A"] = res.lattice_constants_A["right"]
    g.attrs["interface_shift_frac"] = list(res.spec.interface_shift_frac)
    g.attrs["interface_spacing_start_A"] = res.spec.interface_spacing_A
    g.attrs["relax_gap"] = settings.relax_gap
    g.attrs["right_buffer_dz_A"] = res.right_buffer_dz_A
    g.attrs["right_buffer_force_z_eV_A"] = res.right_buffer_force_z_eV_A
    g.attrs["rattle_A"] = settings.rattle_A
    g.attrs["rattle_seed"] = settings.rattle_seed
    g.attrs["rattle_max_displacement_A"] = res.rattle_max_A
    if res.registry is not None:
        write_registry(g.create_group("registry"), res.registry, settings.registry_layers, area_A2)
    write_interface_report(g.create_group("interface"), report)


def write_registry(g, scan: RegistryScan, layers: int, area_A2: float) -> None:
    """/relax/registry: the rigid shift x gap scan (relax.registry_search)."""
    write_array(g, "shifts_frac", scan.shifts_frac, doc="irreducible in-plane shifts of the right half, fractions of a1, a2")
    write_array(g, "gap_grid_A", scan.gap_grid_A, "Å")
    write_array(g, "energy_eV", scan.energy_eV, "eV", doc="thin-slab energy, (shift, gap on gap_grid_A)")
    write_array(g, "best_gap_A", scan.best_gap_A, "Å", doc="gap of lowest energy at each shift (refined)")
    write_array(g, "best_energy_eV", scan.best_energy_eV, "eV")
    write_array(g, "surface_eV", scan.surface(), "eV", doc="lowest rigid energy on the full n x n shift grid (row i: shift i/n along a1), minus the minimum")
    k = scan.chosen
    g.attrs.update(chosen_shift_frac=scan.shifts_frac[k], chosen_gap_A=float(scan.best_gap_A[k]),
                   corrugation_eV=float(scan.surface().max()),
                   start_shift_frac=scan.shifts_frac[scan.start_index], start_gap_A=float(scan.best_gap_A[scan.start_index]),
                   gain_eV=scan.gain_eV, gain_J_m2=scan.gain_eV / area_A2 * EV_PER_A2_TO_J_PER_M2,
                   n_energy_calls=scan.n_energy_calls, layers_per_side=layers, grid=scan.owner.shape[0])


def write_interface_report(g, report: dict) -> None:
    """/relax/interface: bonding diagnostics of the relaxed slab (hpc_itc.core.interface.relaxed_report)."""
    g.attrs["plane_gap_A"] = report["plane_gap_A"]
    g.attrs["layer_spacing_max_deviation_A"] = report["layer_spacing_max_deviation_A"]
    write_str_list(g, "warnings", report["warnings"])
    write_array(g, "terminal_atoms", np.asarray(report["terminal_atoms"], int), doc="atoms from which bonds across the interface are counted")
    for name, values in report["spacings"].items():
        write_array(g, name, np.asarray(values), "Å" if not name.startswith("device") else "",
                    doc="consecutive layer spacings from the interface outwards" if name.startswith("spacing") else "")
    if report["adhesion"]:
        for k, v in report["adhesion"].items():
            g.attrs[k] = v
    b = g.create_group("bonds")
    for pair, rec in report["bonds"].items():
        sub = b.create_group(pair)
        for k, v in rec.items():
            sub.attrs[k] = v


def is_complete(f) -> bool:
    return group_complete(f, GROUP)


def read_relaxed(f, spec: InterfaceSpec) -> Heterostructure:
    """The relaxed slab with its bookkeeping, from an open results file."""
    return read_heterostructure(f[GROUP], spec)


def read_interface(f) -> dict | None:
    """The SPEC's ``interface`` summary as far as ``/relax/interface`` holds it; None before the relaxation.

    (The stiffness and the lowest device Gamma frequency come from ``/force_constants/device``:
    :func:`hpc_itc.store.force_constants.read_interface_stability`.)
    """
    if not is_complete(f) or "interface" not in f[GROUP]:
        return None
    g = f[GROUP]["interface"]
    bonds = {k: dict(g["bonds"][k].attrs) for k in g["bonds"]}
    out = {
        "gap_A": float(g.attrs["plane_gap_A"]),
        "nearest_A": {k: float(v["nearest_A"]) for k, v in bonds.items()},
        "coordination": {k: float(v["coordination"]) for k, v in bonds.items()},
        "adhesion_J_m2": float(g.attrs["adhesion_J_m2"]) if "adhesion_J_m2" in g.attrs else None,
        "layer_spacing_max_deviation_A": float(g.attrs["layer_spacing_max_deviation_A"]),
        "shift_frac": [float(x) for x in f[GROUP].attrs.get("interface_shift_frac", [])],
        "warnings": read_str_list(g, "warnings"),
    }
    if "registry" in f[GROUP]:
        r = f[GROUP]["registry"].attrs
        out["registry"] = {"chosen_shift_frac": [float(x) for x in r["chosen_shift_frac"]], "gain_eV": float(r["gain_eV"]),
                           "gain_J_m2": float(r["gain_J_m2"]), "start_shift_frac": [float(x) for x in r["start_shift_frac"]]}
    return out


def summary(f) -> dict[str, Any]:
    """The ``relax`` entry of ``inspect`` (empty before the stage)."""
    if not is_complete(f):
        return {}
    g = f[GROUP]
    return {"relax": {"converged": bool(g.attrs["converged"]), "steps": int(len(g["fmax_trace"])),
                      "final_fmax_eV_A": float(g["fmax_trace"][-1]) if len(g["fmax_trace"]) else None,
                      "lattice_constant_left_A": float(g.attrs["lattice_constant_left_A"]),
                      "lattice_constant_right_A": float(g.attrs["lattice_constant_right_A"])}}
