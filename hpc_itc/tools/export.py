"""``export`` (a stored slab in any ASE format) and ``export-phonopy`` (each part's force constants as
``phonopy_params.yaml``, loadable with ``phonopy.load``)."""

from __future__ import annotations

from pathlib import Path

from hpc_itc.core.force_constants import PARTS
from hpc_itc.errors import InputError
from hpc_itc.store import force_constants as fc_store
from hpc_itc.store.file import reading
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


def export_phonopy(result_h5: str | Path, part: str | None, out_dir: str | Path) -> list[Path]:
    """Write ``OUT_DIR/<part>/phonopy_params.yaml`` (with force constants) for one part or all.

    ``phonopy.load(".../phonopy_params.yaml")`` then gives the same frequencies as hpc_itc.  The
    displacement dataset and forces are included when every displacement was evaluated with the
    MLIP (not for a device from the interface route, whose far rows come from the leads).
    """
    parts = PARTS if part in (None, "all") else (part,)
    if any(p not in PARTS for p in parts):
        raise InputError("--part", f"got {part!r}; allowed: one of {', '.join(PARTS)}, or all")
    written = []
    with reading(result_h5) as f:
        if not fc_store.is_complete(f):
            raise InputError("result", f"'{result_h5}' has no finished force_constants stage")
        for name in parts:
            g = f[fc_store.GROUP][name]
            phonon = fc_store.read_phonopy(g)
            dataset = fc_store.read_displacement_dataset(g, len(phonon.supercell))
            if dataset is not None:
                phonon.dataset = dataset
                phonon.force_constants = g["force_constants"][()]
            complete = dataset is not None
            target = Path(out_dir) / name
            target.mkdir(parents=True, exist_ok=True)
            phonon.save(target / "phonopy_params.yaml", settings={"force_constants": True, "displacements": complete, "force_sets": complete})
            written.append(target / "phonopy_params.yaml")
    return written


def export_phonopy_main(result: str, part: str, out_dir: str) -> int:
    for path in export_phonopy(result, part, out_dir):
        print(f"wrote {path}")
    return 0
