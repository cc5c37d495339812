"""``python -m hpc_itc cohp-inputs RESULT.h5 OUTDIR``: VASP + LOBSTER inputs for a slab cut from ``/relax``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpc_itc.core.lobster_inputs import write_lobster_inputs
from hpc_itc.errors import InputError, keyed
from hpc_itc.store import relax as relax_store
from hpc_itc.store.file import reading
from hpc_itc.store.structure import read_atoms

_KEYS = {"relaxed structure": "result", "thickness": "--thickness", "vacuum": "--vacuum", "outdir": "outdir"}


def read_relaxed(result_path) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(atoms, side, layer_from_interface, source info) from the /relax group of a results file."""
    path = Path(result_path)
    with reading(path) as f:
        if not relax_store.is_complete(f):
            raise InputError("result", f"'{path}' has no finished relax stage; run the structure and relax stages first")
        g = f["relax"]
        atoms = read_atoms(g)
        source = {"results_file": str(path.resolve()), "group": "/relax",
                  "input_sha256": str(f.attrs.get("input_sha256", "")),
                  "relax_converged": bool(g.attrs.get("converged", False))}
    return atoms, atoms.arrays["side"], atoms.arrays["layer_from_interface"], source


def cohp_inputs_from_results(result_path, out_dir, thickness_A: float = 30.0, vacuum_A: float = 15.0, **kwargs) -> dict[str, Any]:
    """Inputs from /relax of ``result_path`` (see :func:`hpc_itc.core.lobster_inputs.write_lobster_inputs`)."""
    atoms, side, lfi, source = read_relaxed(result_path)
    del atoms.arrays["region"], atoms.arrays["side"], atoms.arrays["layer_from_interface"]
    with keyed(_KEYS):
        return write_lobster_inputs(atoms, side, lfi, out_dir, thickness_A, vacuum_A, source=source, **kwargs)


def cohp_inputs_main(result: str, out_dir: str, thickness_A: float = 30.0, vacuum_A: float = 15.0) -> int:
    """CLI body: write the inputs and print one summary line; returns the exit status."""
    s = cohp_inputs_from_results(result, out_dir, thickness_A, vacuum_A)
    note = " (structure thinner than requested: all layers used)" if s["truncated"] else ""
    print(f"wrote VASP + LOBSTER inputs for a {s['n_atoms']}-atom slab ({s['formula']}, {s['thickness_A']:.2f} Å, "
          f"{s['n_layers']['left']}+{s['n_layers']['right']} layers, k mesh {'x'.join(map(str, s['kpoints']))}) to {s['out_dir']}{note}; "
          "no POTCAR: see POTCAR.spec and README.txt")
    return 0
