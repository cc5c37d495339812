"""``export`` (a stored slab in any ASE format) and ``export-phonopy`` (each part's force constants as
``phonopy_params.yaml``, loadable with ``phonopy.load``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from hpc_itc.core.force_constants import PARTS, on_standard_cell
from hpc_itc.errors import InputError
from hpc_itc.store import force_constants as fc_store
from hpc_itc.store.file import reading
from hpc_itc.store.h5 import read_str_array
from hpc_itc.store.structure import read_atoms


def export_structure(result: str, out: str, stage: str) -> int:
    """Write the slab of ``/structure`` or ``/relax`` to ``out`` (format from the extension), with region, side and layer arrays."""
    from ase.io import write

    with reading(result) as f:
        if stage not in f or not f[stage].attrs.get("complete", False):
            raise InputError("--stage", f"the file has no finished '{stage}' stage; stages present: {', '.join(k for k in f if f[k].attrs.get('complete', False)) or 'none'}")
        atoms = read_atoms(f[stage])
    write(out, atoms)
    print(f"wrote {len(atoms)} atoms to {out}")
    return 0


IMAGINARY_THz = -0.05  # a Gamma mode below this (phonopy's negative = imaginary) is reported; acoustic noise is ~1e-6


def export_phonopy(result_h5: str | Path, part: str | None, out_dir: str | Path, report=print) -> list[Path]:
    """Write ``OUT_DIR/<part>/phonopy_params.yaml`` (with force constants) for one part or all.

    Leads: on the crystal's own lattice (spglib's conventional cell, phonopy's primitive of it; see
    :func:`hpc_itc.core.force_constants.on_standard_cell`), so that ``phonopy.load(...)`` raises no
    point-group warning and ``auto_band_structure()`` follows the fcc (or, strained, body-centred
    tetragonal) path; ``hpc_itc_cells.json`` beside it records the transformation to the layer cell
    hpc_itc computes in, and ``layer_cell/phonopy_params.yaml`` holds that cell with the displacements
    and forces as evaluated.  Device: the layer cell, with the dataset when every displacement was
    evaluated with the MLIP (not for the interface route, whose far rows come from the leads); its
    Gamma modes are checked and an imaginary one is reported (``report``).
    """
    parts = PARTS if part in (None, "all") else (part,)
    if any(p not in PARTS for p in parts):
        raise InputError("--part", f"got {part!r}; allowed: one of {', '.join(PARTS)}, or all")
    written = []
    with reading(result_h5) as f:
        if not fc_store.is_complete(f):
            raise InputError("result", f"'{result_h5}' has no finished force_constants stage")
        symprec = float(f[fc_store.GROUP].attrs.get("symprec", 1e-5))
        for name in parts:
            g = f[fc_store.GROUP][name]
            target = Path(out_dir) / name
            layer_target = target / "layer_cell" if name != "device" else target
            layer_target.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():  # the layer cell's point groups differ: the reason for the standard cell
                warnings.filterwarnings("ignore", message=".*Point group symmetries of supercell and primitivecell.*")
                phonon = fc_store.read_phonopy(g)
                dataset = fc_store.read_displacement_dataset(g, len(phonon.supercell))
                if dataset is not None:
                    phonon.dataset = dataset
                    phonon.force_constants = g["force_constants"][()]
                complete = dataset is not None
                phonon.save(layer_target / "phonopy_params.yaml",
                            settings={"force_constants": True, "displacements": complete, "force_sets": complete})
            if name == "device":
                written.append(layer_target / "phonopy_params.yaml")
                _report_gamma(phonon, report)
                continue
            standard = on_standard_cell(fc_store.read_ifc(g, symprec, phonon), read_str_array(g["unitcell_symbols"]), symprec)
            standard.phonon.save(target / "phonopy_params.yaml", settings={"force_constants": True})
            (target / "hpc_itc_cells.json").write_text(json.dumps({
                "part": name,
                "material": str(f[f"structure/{name}"].attrs.get("material", "")) if f"structure/{name}" in f else "",
                "spacegroup": standard.spacegroup,
                "standard_cell_A": np.asarray(standard.phonon.unitcell.cell).tolist(),
                "primitive_matrix": np.asarray(standard.phonon.primitive_matrix).tolist(),
                "supercell_matrix": np.asarray(standard.phonon.supercell_matrix).tolist(),
                "layer_cell_A": np.asarray(g["unitcell_cell"][()]).tolist(),
                "layer_cell_from_standard_cell": np.round(standard.layer_from_standard, 12).tolist(),
                "note": ("rows are lattice vectors (Å), one Cartesian frame; layer_cell = layer_cell_from_standard_cell @ standard_cell. "
                         "Force constants: the layer supercell's pairs (longest %.3f Å) copied onto the %dx%dx%d standard supercell, "
                         "whose half width exceeds them, so phonopy's D(q) equals hpc_itc's at every q. "
                         "layer_cell/phonopy_params.yaml: the cell hpc_itc computes in, with its displacements and forces."
                         % (standard.longest_pair_A, *(standard.supercell_size,) * 3)),
            }, indent=2) + "\n")
            report(f"{name}: {standard.spacegroup}, standard cell with a {standard.supercell_size}^3 supercell "
                   f"({len(standard.phonon.supercell)} atoms); the layer cell in {name}/layer_cell/")
            written.append(target / "phonopy_params.yaml")
    return written


def _report_gamma(phonon, report) -> None:
    """Say whether the device has imaginary modes at Gamma (a relaxed interface at a saddle point, not a minimum)."""
    phonon.run_qpoints([[0.0, 0.0, 0.0]])
    freqs = np.asarray(phonon.qpoints.frequencies[0])
    imaginary = freqs[freqs < IMAGINARY_THz]
    if len(imaginary):
        report(f"device: WARNING: {len(imaginary)} imaginary mode(s) at Gamma (lowest {imaginary.min():.2f} THz; phonopy "
               "writes them negative): the relaxed interface is a saddle point, not a minimum (see relax.registry_search)")
    else:
        report(f"device: no imaginary modes at Gamma (lowest {freqs.min():.3f} THz, three acoustic ~0)")


def export_phonopy_main(result: str, part: str, out_dir: str) -> int:
    for path in export_phonopy(result, part, out_dir):
        print(f"wrote {path}")
    return 0
