"""``/ldos``: the LDOS of every device atom from the scattering states (Eq. 7), per layer, and the overlap factor (Eq. 11)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpc_itc.core.ldos import LayerOverlap
from hpc_itc.store.h5 import group_complete, write_array

GROUP = "ldos"


def write_ldos(g, grid_THz: np.ndarray, ldos: np.ndarray, device_atoms: np.ndarray, atom_layers: np.ndarray,
               overlap: LayerOverlap, symbols_left: str, symbols_right: str, broadening_THz: float, q_mesh) -> None:
    """Fill ``/ldos``: ``ldos`` (grid, atoms) of ``device_atoms`` (slab indices) in layers ``atom_layers``."""
    write_array(g, "frequency", grid_THz, "THz")
    write_array(g, "ldos", ldos.T, "1/THz", doc="per device atom (rows, device order), Gaussian broadened; integrates to the atom's share of 3 modes")
    write_array(g, "device_atoms", device_atoms, doc="slab indices of the device atoms (rows of ldos)")
    write_array(g, "layer_from_interface", atom_layers)
    write_array(g, "layers", overlap.layers)
    write_array(g, "layer_ldos", overlap.layer_ldos.T, "1/THz", doc="summed over the atoms of each layer (rows follow 'layers')")
    g.attrs["overlap_factor"] = overlap.overlap_factor
    g.attrs["overlap_layers"] = [overlap.left_layer, overlap.right_layer]
    g.attrs["overlap_atoms_left"] = symbols_left
    g.attrs["overlap_atoms_right"] = symbols_right
    g.attrs["broadening_THz"] = broadening_THz
    g.attrs["q_mesh"] = list(q_mesh)


def summary(f) -> dict[str, Any]:
    """The overlap-factor entries of ``inspect`` (empty before the stage)."""
    if not group_complete(f, GROUP):
        return {}
    g = f[GROUP]
    return {"overlap_factor_per_THz": float(g.attrs["overlap_factor"]),
            "overlap_layers": {"layers": [int(x) for x in g.attrs["overlap_layers"]],
                               "left_atoms": str(g.attrs["overlap_atoms_left"]), "right_atoms": str(g.attrs["overlap_atoms_right"])}}
