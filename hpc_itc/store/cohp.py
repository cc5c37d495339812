"""``/cohp``: -COHP(E) and -ICOHP of the interface bonds from a finished LOBSTER folder (see docs/results.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hpc_itc.core.cohp import CohpResult
from hpc_itc.store.h5 import group_complete, read_str_array, write_array

GROUP = "cohp"


def _utf8(strings) -> np.ndarray:
    """Fixed-length byte strings, UTF-8 encoded (bulk shell types carry 'Å')."""
    return np.array([str(x).encode("utf-8") for x in strings])


def write_cohp_group(g, result: CohpResult) -> None:
    """Fill group /cohp (see docs/results.md)."""
    lay = result.layers
    names = list(result.per_type)
    write_array(g, "energy", result.energy_eV, "eV", doc="E - E_F (LOBSTER's shifted energy axis)")
    write_array(g, "minus_cohp_mean", result.minus_cohp_mean, "eV",
                doc="-COHP(E) averaged over the kept interface bonds (spins summed)")
    write_array(g, "types", _utf8(names),
                doc="bond types: at an interface the labels of the two ends (C(1)-Cu, N-Cu, C(1)-C(2), C-N for Cu/diamond); "
                    "in a bulk crystal or one-material slab element pair and shell ('C-C 1.55 Å')")
    write_array(g, "type_count", np.array([result.per_type[t].count for t in names], dtype=int), doc="bonds of each type")
    write_array(g, "type_minus_icohp_mean", np.array([result.per_type[t].minus_icohp_mean_eV for t in names]), "eV",
                doc="-ICOHP per bond, mean over the bonds of each type")
    write_array(g, "type_length_mean", np.array([result.per_type[t].length_mean_A for t in names]), "Å")
    write_array(g, "type_minus_cohp_mean", np.array([result.per_type[t].minus_cohp_mean for t in names]), "eV",
                doc="-COHP(E) averaged over the bonds of each type (rows follow 'types')")
    b = g.create_group("bonds")
    write_array(b, "label", np.array([x.label for x in result.bonds], dtype="S"), doc="COHP# in ICOHPLIST.lobster / COHPCAR.lobster")
    write_array(b, "atom1", np.array([x.atom1 for x in result.bonds], dtype="S"))
    write_array(b, "atom2", np.array([x.atom2 for x in result.bonds], dtype="S"))
    write_array(b, "type", _utf8([x.type for x in result.bonds]))
    write_array(b, "length", np.array([x.length_A for x in result.bonds]), "Å")
    write_array(b, "dz", np.array([x.dz_A for x in result.bonds]), "Å", doc="atom2 - atom1 along the stacking axis (NaN in a bulk crystal)")
    write_array(b, "weight", np.array([x.weight for x in result.bonds], dtype=int), doc="equivalent bonds per entry (LOBSTER < 3 lists)")
    write_array(b, "minus_icohp", np.array([x.minus_icohp_eV for x in result.bonds]), "eV")
    g.attrs["mean_minus_icohp_eV"] = result.minus_icohp_mean_eV
    g.attrs["n_bonds"] = result.n_bonds
    g.attrs["counts"] = json.dumps(result.counts())
    g.attrs["folder"] = result.folder
    g.attrs["structure_file"] = result.structure_file
    g.attrs["efermi_eV"] = result.efermi_eV
    g.attrs["spin_polarized"] = result.spin_polarized
    g.attrs["min_dz_A"] = result.min_dz_A
    g.attrs["plane_tol_A"] = result.plane_tol_A
    g.attrs["layer_thickness_A"] = result.layer_thickness_A
    g.attrs["kind"] = lay.kind
    g.attrs["stacking_axis"] = lay.stacking_axis
    g.attrs["sides"] = json.dumps([{"name": side.name, "elements": list(side.elements), "position": side.position,
                                    "first_layer_sites": [i + 1 for i in side.first_layer],
                                    "first_layer_planes": len(side.first_layer_planes)} for side in lay.sides])
    g.attrs["n_icohp_entries"] = result.n_icohp_entries
    g.attrs["charge_spilling_percent"] = result.charge_spilling_percent


def summary_from_group(g) -> dict[str, Any]:
    """The ``cohp`` entry of ``inspect --json`` from group /cohp."""
    names = read_str_array(g["types"])
    return {
        "mean_minus_icohp_eV": float(g.attrs["mean_minus_icohp_eV"]),
        "n_bonds": int(g.attrs["n_bonds"]),
        "per_type": {name: {"count": int(c), "minus_icohp_eV": float(v), "length_A": float(length)}
                     for name, c, v, length in zip(names, g["type_count"][()], g["type_minus_icohp_mean"][()], g["type_length_mean"][()])},
        "folder": str(g.attrs["folder"]),
        "kind": str(g.attrs.get("kind", "interface")),
        "sides": [side["name"] for side in json.loads(g.attrs.get("sides", "[]"))],
    }


def made_from(f, folder: Path, settings) -> bool:
    """True when ``/cohp`` of an open file is complete and was made from ``folder`` with these ``[cohp]`` thresholds."""
    if not group_complete(f, GROUP):
        return False
    a = f[GROUP].attrs
    return (str(a.get("folder", "")) == str(Path(folder).resolve())
            and all(float(a.get(key, -1)) == float(getattr(settings, key)) for key in ("min_dz_A", "plane_tol_A", "layer_thickness_A")))


def summary(f) -> dict[str, Any]:
    """The ``cohp`` entry of ``inspect`` (empty before the stage)."""
    if not group_complete(f, GROUP):
        return {}
    return {"cohp": summary_from_group(f[GROUP])}
