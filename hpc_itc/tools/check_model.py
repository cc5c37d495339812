"""``python -m hpc_itc check-model MODEL [--lattice relaxed|experimental] [--json] [--plot FILE.png]``: phonon validation of a model.

Relaxes bulk Cu and diamond with the model (cubic, zero pressure), computes their
force constants by finite displacements (phonopy, on the same (001) layer cells
the leads use) and reports the lattice constants and the frequencies of all
branches at Gamma, X and L next to the measured values shipped in
``hpc_itc/data/reference_phonons.toml``.

``--lattice experimental`` computes the phonons at the measured lattice constants
instead: a model trained on PBEsol data inherits PBEsol's 1 % too small Cu
lattice, and the phonons of a compressed crystal are stiffer by about
gamma * 3 * da/a (Grüneisen gamma ~ 2 for Cu).  Comparing the two separates the
error the model owes to its lattice from the error in its force constants.
"""

from __future__ import annotations

import contextlib
import json
import sys

import numpy as np

from hpc_itc.core.structure import EXPERIMENTAL_LATTICE_A, cubic_layer_cell
from hpc_itc.errors import keyed

SUPERCELL_RADIUS_A = 5.0  # supercells whose half-width exceeds this (typical MACE cutoff)
POINT_NAMES = {"G": "Gamma", "X": "X", "L": "L"}


LATTICES = ("relaxed", "experimental")


def bulk_phonons(material: str, calculator, displacement_A: float = 0.01, lattice: str = "relaxed"):
    """(lattice constant Å, LeadPhonons) of the unstrained crystal with this calculator, at the model's
    zero-pressure lattice constant (``lattice="relaxed"``) or at the measured one (``"experimental"``)."""
    from hpc_itc.core.force_constants import displaced_atoms, inplane_supercell_for, make_phonopy, produce, z_supercell_for
    from hpc_itc.core.phonons import lead_phonons
    from hpc_itc.core.relax import relax_cubic_lattice

    if lattice not in LATTICES:
        raise ValueError(f"lattice must be one of {LATTICES}, got {lattice!r}")
    a = EXPERIMENTAL_LATTICE_A[material]
    if lattice == "relaxed":
        a = relax_cubic_lattice(material, a, calculator)
    cell = cubic_layer_cell(material, a)
    supercell = (inplane_supercell_for(SUPERCELL_RADIUS_A, cell.inplane_A, 0),) * 2 + (z_supercell_for(SUPERCELL_RADIUS_A, cell.layer_step_A),)
    phonon = make_phonopy(cell.atoms(), supercell, displacement_A, 1e-5)
    forces = []
    for k in range(len(phonon.supercells_with_displacements)):
        atoms = displaced_atoms(phonon, k)
        atoms.calc = calculator
        forces.append(atoms.get_forces())
    produce(phonon, np.array(forces))
    return a, lead_phonons(phonon, cell.lattice, material)


def check(model: str, device: str = "cpu", dtype: str = "float64", lattice: str = "relaxed") -> tuple[dict, dict]:
    from hpc_itc.core import mlip

    with keyed({"model": "MODEL", "device": "--device", "dtype": "--dtype"}):
        mlip.check_elements(model, {"Cu", "C"})
        calc = mlip.load_calculator(model, device=device, dtype=dtype)
    summary, phonons = {}, {}
    for material, points in (("cu", ("X", "L")), ("diamond", ("G", "X", "L"))):
        a, ph = bulk_phonons(material, calc, lattice=lattice)
        phonons[material] = ph
        entry = {"a_A": a, "a_reference_A": EXPERIMENTAL_LATTICE_A[material], "lattice": lattice}
        for p in points:
            entry[POINT_NAMES[p]] = sorted(float(f) for f in ph.frequencies_at(p))
        entry["reference_THz"] = {label: {"model": model_f, "experiment": ref, "error_percent": 100 * (model_f / ref - 1)}
                                  for label, model_f, ref in ph.comparison}
        summary[material] = entry
    return summary, phonons


def format_report(summary: dict) -> str:
    lines = []
    for material, e in summary.items():
        if e["lattice"] == "experimental":
            lines.append(f"{material}: a = {e['a_A']:.4f} Å (fixed at experiment, --lattice experimental)")
        else:
            lines.append(f"{material}: a = {e['a_A']:.4f} Å (experiment {e['a_reference_A']:.3f} Å, {100 * (e['a_A'] / e['a_reference_A'] - 1):+.2f}%)")
        for name in ("Gamma", "X", "L"):
            if name in e:
                lines.append(f"  {name:5s} " + " ".join(f"{f:7.3f}" for f in e[name]) + "  THz")
        for label, r in e["reference_THz"].items():
            lines.append(f"  {label:14s} model {r['model']:7.3f}  experiment {r['experiment']:7.3f}  THz  ({r['error_percent']:+.1f}%)")
    return "\n".join(lines)


def main_check_model(args) -> int:
    with contextlib.redirect_stdout(sys.stderr):
        summary, phonons = check(args.model, args.device, args.dtype, args.lattice)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from hpc_itc.core.structure import display_name
        from hpc_itc.tools.plot import lead_phonon_figure

        fig = lead_phonon_figure([(ph, f"{args.model}: {display_name(m)} ({'at the measured lattice' if args.lattice == 'experimental' else 'unstrained'})") for m, ph in phonons.items()], plt)
        fig.savefig(args.plot, dpi=150)
        plt.close(fig)
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_report(summary))
        if args.plot:
            print(f"dispersions: {args.plot}")
    return 0
