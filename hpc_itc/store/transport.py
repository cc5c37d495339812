"""``/transport``: per direction the mode-resolved T and R of every incident mode, h(T), the radiation limit,
the spectral transmittance and cumulative h, the mode maps along the lead's path; the q-mesh sweep.

Per-mode tables (``frequency``, ``q_frac``, ``band``, ``vz``, ``transmission``, ``reflection``,
``quadrature_weight``, ``symmetry_image``, ``solve_code``) are written as row tables straight from
the stage's checkpoints (:func:`hpc_itc.store.rows.write_rows`).  See docs/results.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import h5py
import numpy as np

from hpc_itc.core.harmonic import OMEGA_TO_THZ, OMEGA_UNIT_RAD_S
from hpc_itc.core.transport.landauer import LandauerSums
from hpc_itc.core.transport.qz_sampling import SampledMeshes
from hpc_itc.core.transport.solve import SOLVED_RGF, SOLVED_RGF_FALLBACK, SOLVED_SHIFTED
from hpc_itc.core.transport.symmetry import InplaneSymmetry
from hpc_itc.store.h5 import group_complete, write_array
from hpc_itc.store.rows import write_rows

GROUP = "transport"

SOLVE_CODE_DOC = ("0/1: no open channel in the transmitting lead (band bound / eigenvalues): T = 0, R = 1 exactly; "
                  "2: block-tridiagonal solve; 3: dense solve; 4: block solve rejected by its residual check, dense used; "
                  "5: solved at omega (1 + 1e-7), a folded band has an edge at exactly this frequency")
PATH_DOC = ("Gamma-X-U|K-Gamma-W-K-Gamma-L of the incident lead's fcc zone, X along [001] (transport direction z); "
            "frame x || [110], y || [-110], z || [001]. For each q and band: the band's frequency and the "
            "transmittance of that mode incident on the interface (for a mode moving away: its partner of the "
            "same band at the mirrored q_z; where v_z = 0 (Gamma, zone faces) the limit from inside the zone, "
            "evaluated 1e-4 |b3| away). NaN: no incident wave (acoustic mode at Gamma).")


def mesh_name(mesh) -> str:
    return "x".join(str(int(n)) for n in mesh)


# row transforms (module-level functions: under MPI-IO they travel to every rank, see rows.CheckpointRows)
def _scaled(arr: np.ndarray, factor: float) -> np.ndarray:
    return arr * factor


def _vz_m_s(arr: np.ndarray) -> np.ndarray:
    return arr * OMEGA_UNIT_RAD_S * 1e-10


def _as_dtype(arr: np.ndarray, dtype: str) -> np.ndarray:
    return arr.astype(dtype)


def _over_mesh(arr: np.ndarray, mesh: tuple) -> np.ndarray:
    return arr / np.array(mesh)


@dataclass(frozen=True)
class DirectionResult:
    """What rank 0 summed for one incidence direction of the main mesh."""

    modes: dict  # the direction's concatenated checkpoint arrays (internal units, as solve.solve_column returns them)
    rows: Callable  # rows(key, transform) -> row blocks of that checkpoint array (write_rows)
    incident_lead: str
    cell_volume_A3: float
    sums: LandauerSums
    n_irreducible_columns: int
    caroli: tuple[float, int] | None  # (largest difference, points compared)
    path: tuple | None  # (lead_path tables, gathered path arrays) of the mode map


@dataclass(frozen=True)
class SweepResult:
    mesh: tuple  # as sampled
    mesh_input: tuple
    qz_refine: int
    direction: str
    itc: np.ndarray
    radiation_limit: np.ndarray
    n_modes: int


def write_transport(g, per_direction: dict[str, DirectionResult], temperatures_K: np.ndarray, bin_edges_THz: np.ndarray,
                    meshes: SampledMeshes, symmetry: InplaneSymmetry, junction_correction_eV_A2: float, solver: str,
                    device_model: str, sweep: list[SweepResult], log: Callable[[str, DirectionResult, dict], None] | None = None) -> None:
    """Fill ``/transport``; ``log(direction, result, attrs)`` is called for each direction group written."""
    worst = 0.0
    mesh = meshes.main
    for direction, d in per_direction.items():
        modes = d.modes
        sub = g.create_group(direction)
        rows = d.rows
        write_rows(sub, "frequency", rows("omega", partial(_scaled, factor=OMEGA_TO_THZ)), "THz")
        write_rows(sub, "q_frac", rows("mesh_index", partial(_over_mesh, mesh=tuple(mesh))),
                   doc="q in units of the incident lead's primitive reciprocal vectors b1, b2, b3")
        write_rows(sub, "band", rows("band"))
        write_rows(sub, "vz", rows("vz", _vz_m_s), "m/s")
        write_rows(sub, "transmission", rows("transmission"))
        write_rows(sub, "reflection", rows("reflection"))
        write_rows(sub, "quadrature_weight", rows("quadrature_weight"),
                   doc="weight of the mode in the Landauer sums: 1, except the acoustic modes at the first two q_z "
                       "of the Gamma column (2 and 1/2: the trapezoid end correction at q_z = 0, qz_sampling.qz_end_weights)")
        write_rows(sub, "symmetry_image", rows("symmetry_image", partial(_as_dtype, dtype="bool")),
                   doc="true: T, R copied from the symmetry-equivalent mode of the irreducible column of its orbit")
        write_rows(sub, "solve_code", rows("solve_code", partial(_as_dtype, dtype="int8")), doc=SOLVE_CODE_DOC)
        write_array(sub, "itc", d.sums.itc, "MW/(m^2 K)")
        write_array(sub, "radiation_limit", d.sums.radiation_limit, "MW/(m^2 K)")
        write_array(sub, "spectral_transmission", d.sums.spectral_transmission, doc="rows: temperatures; columns: frequency bins")
        write_array(sub, "cumulative_itc", d.sums.cumulative_itc, "MW/(m^2 K)", doc="h restricted to f < frequency_grid")
        err = np.abs(modes["transmission"] + modes["reflection"] - 1.0)
        worst = max(worst, float(err.max()) if len(err) else 0.0)
        computed = ~modes["symmetry_image"].astype(bool)
        code = modes["solve_code"][computed]
        sub.attrs["incident_lead"] = d.incident_lead
        sub.attrs["cell_volume_A3"] = d.cell_volume_A3
        sub.attrs["max_abs_T_plus_R_minus_1"] = float(err.max()) if len(err) else 0.0
        sub.attrs["n_irreducible_columns"] = d.n_irreducible_columns
        sub.attrs["n_modes_computed"] = int(computed.sum())
        sub.attrs["n_modes_solved"] = int(np.count_nonzero(code >= SOLVED_RGF))
        sub.attrs["n_rgf_fallbacks"] = int(np.count_nonzero(code == SOLVED_RGF_FALLBACK))
        sub.attrs["n_shifted_solves"] = int(np.count_nonzero(code == SOLVED_SHIFTED))
        if d.caroli is not None:
            sub.attrs["caroli_max_abs_diff"] = d.caroli[0]
            sub.attrs["caroli_n_samples"] = d.caroli[1]
        if d.path is not None:
            write_path(sub, *d.path)
        if log is not None:
            log(direction, d, dict(sub.attrs))
    write_array(g, "temperatures", temperatures_K, "K")
    write_array(g, "frequency_bin_edges", bin_edges_THz, "THz")
    write_array(g, "frequency_grid", bin_edges_THz[1:], "THz")
    write_array(g, "q_mesh", np.array(mesh), doc="mesh of the incident modes: transport.q_mesh with N3 times qz_refine")
    write_array(g, "q_mesh_input", np.array(meshes.main_input), doc="transport.q_mesh as given")
    g.attrs["qz_refine"] = int(meshes.factor.get(mesh, 1))
    g.attrs["qz_refine_requested"] = int(meshes.requested)
    write_array(g, "symmetry_rotations", symmetry.rotations,
                doc="Cartesian in-plane point operations shared by device and leads, used to reduce the k_par mesh")
    g.attrs["symmetry_max_ifc_violation"] = symmetry.max_ifc_violation
    g.attrs["junction_sum_rule_correction_eV_A2"] = junction_correction_eV_A2
    g.attrs["symmetry_rejected_operations"] = symmetry.rejected
    g.attrs["solver"] = solver
    g.attrs["device_model"] = device_model
    g.attrs["max_abs_T_plus_R_minus_1"] = worst
    caroli = [d.caroli[0] for d in per_direction.values() if d.caroli is not None]
    if caroli:
        g.attrs["caroli_max_abs_diff"] = max(caroli)
    if len(per_direction) == 2:
        h_lr = per_direction["left_to_right"].sums.itc
        h_rl = per_direction["right_to_left"].sums.itc
        mean = 0.5 * (h_lr + h_rl)
        # no conductance in either direction (e.g. a mesh too coarse to sample the window): nothing to compare
        rect = np.divide(100 * np.abs(h_lr - h_rl), mean, out=np.zeros_like(mean), where=mean > 0)
        write_array(g, "rectification_percent", rect, "%")
    if sweep:
        sw = g.create_group("sweep")
        sw.attrs["doc"] = "h(T) of the same system on other q meshes (convergence check); temperatures as /transport/temperatures"
        for r in sweep:
            mg = sw.require_group(mesh_name(r.mesh_input))
            if "q_mesh" not in mg:
                write_array(mg, "q_mesh", np.array(r.mesh), doc="mesh of the incident modes (q_z refined)")
                mg.attrs["qz_refine"] = int(r.qz_refine)
            grp = mg.create_group(r.direction)
            write_array(grp, "itc", r.itc, "MW/(m^2 K)")
            write_array(grp, "radiation_limit", r.radiation_limit, "MW/(m^2 K)")
            grp.attrs["n_modes"] = r.n_modes


def write_path(sub, tables, d: dict) -> None:
    """``/transport/<direction>/path``: the mode map along the incident lead's path (``tables`` from bzpath.lead_path)."""
    q_frac, q_cart, distance, names, index = tables
    order = np.argsort(d["point"])
    p = sub.create_group("path")
    p.attrs["doc"] = PATH_DOC
    write_array(p, "q_cartesian", q_cart, "1/Å", doc="including the factor 2 pi")
    write_array(p, "q_frac", q_frac, doc="on the incident lead's primitive reciprocal vectors b1, b2, b3")
    write_array(p, "distance", distance, "1/Å", doc="path length; zero across the U|K jump")
    write_array(p, "labels", np.array(names, dtype="S8"), doc="special points; U|K: the jump between the equivalent U and K")
    write_array(p, "label_index", np.asarray(index, int), doc="row of each label")
    write_array(p, "label_positions", distance[np.asarray(index, int)], "1/Å", doc="distance of each label")
    write_array(p, "frequency", d["frequency"][order] * OMEGA_TO_THZ, "THz", doc="rows: path points; columns: bands")
    write_array(p, "transmission", d["transmission"][order], doc="rows: path points; columns: bands")
    write_array(p, "vz_incident", d["vz"][order] * OMEGA_UNIT_RAD_S * 1e-10, "m/s",
                doc="v_z of the incident partner actually scattered (sign: + towards +z)")


def is_complete(f) -> bool:
    return group_complete(f, GROUP)


def read_itc(f) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(temperatures K, direction -> h(T) MW/(m^2 K)) of a finished /transport."""
    g = f[GROUP]
    return g["temperatures"][()], {d: g[d]["itc"][()] for d in ("left_to_right", "right_to_left") if d in g}


def summary(f) -> dict[str, Any]:
    """The conductance entries of ``inspect`` (SPEC: itc_MW_m2K, radiation_limit_MW_m2K, ...); empty before the stage."""
    if not is_complete(f):
        return {}
    g = f[GROUP]
    out: dict[str, Any] = {}
    temps = [f"{t:.1f}" for t in g["temperatures"][()]]
    itc, rad = {}, {}
    for direction in ("left_to_right", "right_to_left"):
        if direction in g:
            itc[direction] = dict(zip(temps, map(float, g[direction]["itc"][()])))
            rad[g[direction].attrs["incident_lead"] + "_lead"] = dict(zip(temps, map(float, g[direction]["radiation_limit"][()])))
    out["itc_MW_m2K"] = itc
    out["radiation_limit_MW_m2K"] = rad
    out["max_abs_T_plus_R_minus_1"] = float(g.attrs["max_abs_T_plus_R_minus_1"])
    if "junction_sum_rule_correction_eV_A2" in g.attrs:
        out["junction_sum_rule_correction_eV_A2"] = float(g.attrs["junction_sum_rule_correction_eV_A2"])
    if "caroli_max_abs_diff" in g.attrs:
        out["caroli_max_abs_diff"] = float(g.attrs["caroli_max_abs_diff"])
    if "sweep" in g:
        out["q_mesh_sweep_itc_MW_m2K"] = {
            mesh: {d: dict(zip(temps, map(float, g["sweep"][mesh][d]["itc"][()]))) for d in g["sweep"][mesh]
                   if isinstance(g["sweep"][mesh][d], h5py.Group)}  # beside the direction groups: q_mesh
            for mesh in g["sweep"]}
    if "rectification_percent" in g:
        out["rectification_percent"] = dict(zip(temps, map(float, g["rectification_percent"][()])))
    out["q_mesh"] = [int(x) for x in g["q_mesh"][()]]
    if "q_mesh_input" in g:  # files before qz_refine: q_mesh was sampled as given
        out["q_mesh_input"] = [int(x) for x in g["q_mesh_input"][()]]
        out["qz_refine"] = int(g.attrs["qz_refine"])
    return out
