"""``/structure``: the built slab and its bulk leads, and the slab bookkeeping shared with ``/relax``.

Layout (datasets, units in ``unit`` attributes): ``symbols``, ``positions`` (Å), ``cell`` (Å),
``masses`` (amu), ``region`` (0 left buffer, 1 device, 2 right buffer), ``side``,
``layer_from_interface``, ``cell_index``, ``basis_index``, ``n_sites``; subgroups ``left_lead`` and
``right_lead`` (``lattice``, ``positions``, ``symbols``; attrs ``material``, ``inplane_A``,
``layer_step_A``, ``volume_A3``); attrs ``inplane_repeat`` and ``strain_*``.  ``/relax`` holds the
same slab datasets for the relaxed positions (:mod:`hpc_itc.store.relax`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from hpc_itc.core.structure import Heterostructure, InterfaceSpec, LayerCell, build
from hpc_itc.store.h5 import read_str_array, write_array

GROUP = "structure"


def write_heterostructure(group, het: Heterostructure, strain: dict) -> None:
    """The slab datasets (used by ``/structure`` and ``/relax``)."""
    write_array(group, "symbols", np.array(het.atoms.get_chemical_symbols(), dtype="S2"))
    write_array(group, "positions", het.atoms.positions, "Å")
    write_array(group, "cell", np.array(het.atoms.cell), "Å")
    write_array(group, "masses", het.atoms.get_masses(), "amu")
    write_array(group, "region", het.region, doc="0 left buffer, 1 device, 2 right buffer")
    write_array(group, "side", het.side, doc="0 left material, 1 right material")
    write_array(group, "layer_from_interface", het.layer_from_interface, doc="-1, -2, ... left of the interface; 1, 2, ... right")
    write_array(group, "cell_index", het.cell_index, doc="in-plane cell (c1, c2) of each atom")
    write_array(group, "basis_index", het.basis_index)
    write_array(group, "n_sites", het.n_sites, doc="indices of N atoms of the termination")
    group.attrs["inplane_repeat"] = list(het.inplane_repeat)
    for name, lead in (("left_lead", het.left_lead), ("right_lead", het.right_lead)):
        g = group.create_group(name)
        g.attrs["material"] = lead.material
        g.attrs["inplane_A"] = lead.inplane_A
        g.attrs["layer_step_A"] = lead.layer_step_A
        write_array(g, "lattice", lead.lattice, "Å", doc="rows a1, a2 (in plane), a3 (to the next layer)")
        write_array(g, "positions", lead.positions, "Å")
        write_array(g, "symbols", np.array(lead.symbols, dtype="S2"))
        g.attrs["volume_A3"] = lead.volume_A3
    for key, value in strain.items():
        group.attrs[f"strain_{key}" if not key.startswith("strain") else key] = value


def read_heterostructure(group, spec: InterfaceSpec) -> Heterostructure:
    """Rebuild the slab bookkeeping from ``spec`` and the stored leads, then load the stored atoms."""
    cells = []
    for name, material in (("left_lead", spec.left_material), ("right_lead", spec.right_material)):
        g = group[name]
        cells.append(LayerCell(material, float(g.attrs["inplane_A"]), float(g.attrs["layer_step_A"])))
    het = build(spec, *cells)
    het.atoms.set_chemical_symbols(read_str_array(group["symbols"]))
    het.atoms.positions = group["positions"][()]
    het.n_sites = group["n_sites"][()]
    return het


def read_atoms(group) -> Atoms:
    """The stored slab of ``/structure`` or ``/relax`` as ASE atoms, with arrays region, side, layer_from_interface."""
    atoms = Atoms(read_str_array(group["symbols"]), positions=group["positions"][()], cell=group["cell"][()], pbc=True)
    for name in ("region", "side", "layer_from_interface"):
        atoms.new_array(name, group[name][()])
    return atoms


def summary(group) -> dict[str, Any]:
    """Atom counts of a stored slab (``inspect``: n_atoms, n_atoms_device)."""
    region = group["region"][()]
    return {"n_atoms": int(len(region)), "n_atoms_device": int(np.count_nonzero(region == 1))}


def material_names(f) -> dict[str, str]:
    """{'left': 'Cu', 'right': 'diamond'} from /structure of an open file ('left'/'right' before the stage)."""
    from hpc_itc.core.structure import display_name

    out = {}
    for side in ("left", "right"):
        key = f"structure/{side}_lead"
        out[side] = display_name(str(f[key].attrs.get("material", side))) if key in f else side
    return out


def direction_name(names: dict[str, str], direction: str) -> str:
    """'Cu → diamond' for left_to_right (phonons incident from the left material)."""
    a, b = (names["left"], names["right"]) if direction == "left_to_right" else (names["right"], names["left"])
    return f"{a} → {b}"
