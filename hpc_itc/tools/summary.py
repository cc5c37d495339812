"""Post-hoc inspection of a results file: a human summary, or the SPEC's JSON contract.

Works on files from unfinished or failed runs: what is missing is reported, and
checkpointed work not yet folded into the file is counted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import tomllib

from hpc_itc.config import STAGES, requested_stages
from hpc_itc.store import cohp as cohp_store
from hpc_itc.store import committee as committee_store
from hpc_itc.store import force_constants as fc_store
from hpc_itc.store import ldos as ldos_store
from hpc_itc.store import relax as relax_store
from hpc_itc.store import structure as structure_store
from hpc_itc.store import transport as transport_store
from hpc_itc.store.file import open_for_reading, reading, verify_file


def summary(path: str | Path) -> dict[str, Any]:
    """The JSON summary (SPEC keys plus a few more), assembled from each store module's summary."""
    path = Path(path)
    with reading(path) as f:
        complete = [s for s in STAGES if s in f and f[s].attrs.get("complete", False)]
        try:
            cfg = tomllib.loads(f.attrs.get("input_toml", ""))
        except tomllib.TOMLDecodeError:
            cfg = {}
        requested = requested_stages(cfg)
        out: dict[str, Any] = {
            "input_sha256": f.attrs.get("input_sha256"),
            "hpc_itc_version": f.attrs.get("hpc_itc_version"),
            "stages_complete": complete,
            "stages_missing": [s for s in requested if s not in complete],
            "wall_seconds": {s: float(f[s].attrs["wall_seconds"]) for s in complete if "wall_seconds" in f[s].attrs},
        }
        out["materials"] = structure_store.material_names(f)
        geometry = "relax" if "relax" in complete else ("structure" if "structure" in complete else None)
        if geometry is not None:
            out.update(structure_store.summary(f[geometry]))
        out.update(relax_store.summary(f))
        interface = relax_store.read_interface(f)
        if interface is not None:
            stability = fc_store.read_interface_stability(f)
            interface["warnings"] += stability.pop("warnings", [])
            out["interface"] = {**interface, **stability}
        out.update(fc_store.summary(f))
        out.update(transport_store.summary(f))
        out.update(ldos_store.summary(f))
        out.update(cohp_store.summary(f))
        out.update(committee_store.summary(f))
    pending = _checkpointed(path)
    if pending:
        out["checkpointed_tasks"] = pending
    return out


def _checkpointed(path: Path) -> dict[str, int]:
    root = path.with_name(path.name + ".ckpt")
    counts: dict[str, int] = {}
    if root.is_dir():
        for stage_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for part in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
                counts[f"{stage_dir.name}/{part.name}"] = len(list(part.glob("task_*.npz")))
    return counts


def _human(s: dict[str, Any], path: str) -> str:
    names = s.get("materials", {"left": "left", "right": "right"})
    lead_name = {"left_lead": f"{names['left']} lead", "right_lead": f"{names['right']} lead"}
    lines = [f"results file: {path}", f"input sha256: {s['input_sha256']}",
             f"stages complete: {', '.join(s['stages_complete']) or 'none'}"]
    if s["stages_missing"]:
        lines.append(f"stages missing: {', '.join(s['stages_missing'])}")
    if s.get("checkpointed_tasks"):
        lines.append("checkpointed work of unfinished stages: " + ", ".join(f"{k} {v} tasks" for k, v in s["checkpointed_tasks"].items()))
    if "n_atoms" in s:
        lines.append(f"atoms: {s['n_atoms']} in the slab, {s['n_atoms_device']} in the device")
    if "relax" in s:
        r = s["relax"]
        lines.append(f"relax: {r['steps']} steps, final fmax {r['final_fmax_eV_A']:.4f} eV/Å, converged {r['converged']}, "
                     f"a({names['left']}) {r['lattice_constant_left_A']:.4f} Å, a({names['right']}) {r['lattice_constant_right_A']:.4f} Å")
    if "interface" in s:
        it = s["interface"]
        bonds = ", ".join(f"{k} {d:.3f} Å x {it['coordination'][k]:g}" for k, d in it["nearest_A"].items())
        adhesion = f"{it['adhesion_J_m2']:.3f} J/m²" if it["adhesion_J_m2"] is not None else "n/a"
        lines.append(f"interface: shift {it['shift_frac']}, plane gap {it['gap_A']:.3f} Å, nearest across {bonds}, adhesion {adhesion}, "
                     f"device layer spacings within {it['layer_spacing_max_deviation_A']:.4f} Å of the leads'")
        if "registry" in it:
            r = it["registry"]
            lines.append(f"  registry search: {r['chosen_shift_frac']} chosen, {r['gain_eV']:.3f} eV/cell ({r['gain_J_m2']:.3f} J/m²) "
                         f"below the start {r['start_shift_frac']}")
        if "stiffness_eV_A4" in it:
            k = it["stiffness_eV_A4"]
            lines.append(f"  stiffness (xx, yy, zz) = ({k['xx']:.3f}, {k['yy']:.3f}, {k['zz']:.3f}) eV/Å^4 (lead interplanar zz "
                         f"{', '.join(f'{v:.3f}' for v in it['lead_interplanar_stiffness_zz_eV_A4'])}), lowest device Gamma mode "
                         f"{it['lowest_gamma_frequency_THz']:.3f} THz")
        for w in it["warnings"]:
            lines.append(f"  WARNING: {w}")
    if "n_force_evaluations" in s:
        lines.append(f"force constants: {s['n_force_evaluations']} force calls (" +
                     ", ".join(f"{lead_name.get(k, k)} {v['n_force_evaluations']}" for k, v in s["force_constants"].items()) + ")")
    if "itc_MW_m2K" in s:
        caroli = f", Caroli check {s['caroli_max_abs_diff']:.1e}" if "caroli_max_abs_diff" in s else ""
        refine = f" (q_mesh {s['q_mesh_input']}, q_z refined x{s['qz_refine']})" if "qz_refine" in s else ""
        junction = (f", junction sum-rule correction {s['junction_sum_rule_correction_eV_A2']:.2e} eV/Å^2"
                    if "junction_sum_rule_correction_eV_A2" in s else "")
        lines.append(f"transport: incident modes on {'x'.join(map(str, s['q_mesh']))}{refine}, max |T+R-1| = {s['max_abs_T_plus_R_minus_1']:.2e}{caroli}{junction}")
        for direction, values in s["itc_MW_m2K"].items():
            lines.append(f"  h {structure_store.direction_name(names, direction):16s} " + "  ".join(f"{t} K: {h:8.3f}" for t, h in values.items()) + "  MW/(m^2 K)")
        for lead, values in s["radiation_limit_MW_m2K"].items():
            lines.append(f"  radiation limit {lead_name.get(lead, lead):12s} " + "  ".join(f"{t} K: {h:8.3f}" for t, h in values.items()) + "  MW/(m^2 K)")
        for mesh, per_dir in s.get("q_mesh_sweep_itc_MW_m2K", {}).items():
            lines.append(f"  sweep {mesh}: " + "; ".join(f"{structure_store.direction_name(names, d)} " + " ".join(f"{t} K {h:.3f}" for t, h in v.items())
                                                       for d, v in per_dir.items()))
        if "rectification_percent" in s:
            lines.append("  rectification " + "  ".join(f"{t} K: {v:.2f}%" for t, v in s["rectification_percent"].items()))
    if "committee_itc_MW_m2K" in s:
        lines.append(f"committee: {len(s['committee_members'])} members ({', '.join(s['committee_members'])}), h mean ± spread "
                     f"({s['committee_spread']}) on the interface relaxed by mlip.model")
        for direction, values in s["committee_itc_MW_m2K"].items():
            lines.append(f"  h {structure_store.direction_name(names, direction):16s} " + "  ".join(
                f"{t} K: {v['mean']:8.3f} ± {v['spread']:.3f} (members {', '.join(f'{x:.2f}' for x in v['members'])})"
                for t, v in values.items()) + "  MW/(m^2 K)")
    if "overlap_factor_per_THz" in s:
        ov = s["overlap_layers"]
        lines.append(f"ldos: overlap factor S = {s['overlap_factor_per_THz']:.5f} 1/THz between layer {ov['layers'][0]} ({ov['left_atoms']}) and layer {ov['layers'][1]} ({ov['right_atoms']})")
    if "cohp" in s:
        c = s["cohp"]
        what = {"interface": "interface bonds (" + " | ".join(c.get("sides", [])) + ")", "bulk": "bonds of a bulk crystal",
                "one-material slab": "bonds of a one-material slab"}.get(c.get("kind", "interface"), "bonds")
        lines.append(f"cohp: mean -ICOHP {c['mean_minus_icohp_eV']:.3f} eV over {c['n_bonds']} {what} (" +
                     _first(f"{k} {v['minus_icohp_eV']:.3f} eV x{v['count']}" for k, v in c["per_type"].items()) + f") from {c['folder']}")
    if s["wall_seconds"]:
        lines.append("wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in s["wall_seconds"].items()))
    return "\n".join(lines)


def verify_report(path: str | Path) -> dict[str, str]:
    """stage -> "ok", "unverified (...)" or what is wrong, for every stage group of the file."""
    with open_for_reading(path, verify=False) as f:
        return {stage: ("ok" if why is None else why) for stage, why in verify_file(f).items()}


def inspect_file(path: str, as_json: bool = False, verify: bool = False) -> int:
    if verify:
        report = verify_report(path)
        bad = [stage for stage, why in report.items() if why != "ok" and not why.startswith("unverified")]
        if as_json:
            json.dump({"verified": not bad, "stages": report}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            for stage, why in report.items():
                print(f"{stage:16s} {'ok (checksum matches)' if why == 'ok' else why}")
            checked = [stage for stage, why in report.items() if why == "ok"]
            print(f"{path}: " + ("CORRUPT: " + ", ".join(bad) if bad else
                                 f"verified ({len(checked)} of {len(report)} stages carry a checksum)" if checked else
                                 "no stage carries a checksum (written by an older hpc_itc): nothing to verify"))
        return 1 if bad else 0
    s = summary(path)
    if as_json:
        json.dump(s, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(_human(s, path))
    return 0


def _first(items, n: int = 6) -> str:
    """The first n items joined; the rest counted (a bulk crystal lists dozens of shells; --json has them all)."""
    items = list(items)
    more = f", +{len(items) - n} more types (--json)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
