"""Model evaluation against labelled data: RMSE per config_type, as in the paper's Table 1.

``python -m hpc_itc evaluate MODEL DATA.extxyz [--json] [--parity FILE.png]``

Energies per atom (meV/atom), force components (meV/Å) and stress components
(meV/Å^3) are compared with the labels (default keys REF_energy, REF_forces,
REF_stress, ASE sign convention, eV and Å units); a configuration without a label
simply does not enter that column.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from hpc_itc.errors import InputError, keyed


def _labels(atoms, energy_key: str, forces_key: str, stress_key: str):
    energy = atoms.info.get(energy_key)
    forces = atoms.arrays.get(forces_key)
    stress = atoms.info.get(stress_key)
    if stress is not None:
        stress = np.asarray(stress, float)
        stress = stress.reshape(3, 3) if stress.size == 9 else _voigt_to_matrix(stress)
    return energy, forces, stress


def check_labels(frames, path: str, energy_key: str, forces_key: str, stress_key: str) -> None:
    """InputError naming the frame and label that cannot be compared (before the model is loaded)."""
    for i, atoms in enumerate(frames):
        where = f"'{path}' frame {i}"
        if len(atoms) == 0:
            raise InputError("DATA", f"{where} has no atoms; allowed: configurations of at least one atom")
        energy = atoms.info.get(energy_key)
        if energy is not None and (isinstance(energy, (bool, str, bytes)) or not np.isscalar(energy) or not np.isfinite(float(energy))):
            raise InputError("DATA", f"{where}: {energy_key} = {str(energy)[:40]!r}; allowed: a finite number (eV)")
        forces = atoms.arrays.get(forces_key)
        if forces is not None:
            f = np.asarray(forces)
            if f.dtype.kind not in "fiu" or f.shape != (len(atoms), 3) or not np.isfinite(f).all():
                raise InputError("DATA", f"{where}: {forces_key} has shape {f.shape} ({f.dtype}); allowed: finite numbers, "
                                         f"{len(atoms)} x 3 (eV/Å)")
        stress = atoms.info.get(stress_key)
        if stress is not None:
            v = np.asarray(stress)
            if v.dtype.kind not in "fiu" or v.size not in (6, 9) or not np.isfinite(v).all():
                raise InputError("DATA", f"{where}: {stress_key} has {v.size} components ({v.dtype}); allowed: 6 (Voigt xx yy zz yz xz xy) "
                                         "or 9 finite numbers (eV/Å^3)")


def _voigt_to_matrix(v: np.ndarray) -> np.ndarray:
    xx, yy, zz, yz, xz, xy = v
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def read_data(path: str):
    from ase.io import read

    p = Path(path)
    if not p.is_file():
        raise InputError("DATA", f"'{path}' not found; give an extxyz file with labelled configurations")
    try:
        frames = read(p, index=":")
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise InputError("DATA", f"cannot read '{path}' as extxyz ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not frames:
        raise InputError("DATA", f"'{path}' holds no configurations")
    return frames


def evaluate(model: str, data_path: str, energy_key: str = "REF_energy", forces_key: str = "REF_forces",
             stress_key: str = "REF_stress", device: str = "cpu", dtype: str = "float64"):
    """Per config_type RMSEs and the raw pairs (for parity plots)."""
    from hpc_itc.core import mlip

    frames = read_data(data_path)
    check_labels(frames, data_path, energy_key, forces_key, stress_key)
    symbols = {s for a in frames for s in a.get_chemical_symbols()}
    with keyed({"model": "MODEL", "device": "--device", "dtype": "--dtype"}):
        mlip.check_elements(model, symbols)
        calc = mlip.load_calculator(model, device=device, dtype=dtype)
    pairs: dict[str, dict[str, list]] = defaultdict(lambda: {"energy": [], "forces": [], "stress": []})
    n_labelled = 0
    for atoms in frames:
        ref_e, ref_f, ref_s = _labels(atoms, energy_key, forces_key, stress_key)
        if ref_e is None and ref_f is None and ref_s is None:
            continue
        n_labelled += 1
        kind = str(atoms.info.get("config_type", "unlabelled"))
        at = atoms.copy()
        at.calc = calc
        n = len(at)
        for group in (kind, "all"):
            if ref_e is not None:
                pairs[group]["energy"].append((float(ref_e) / n, at.get_potential_energy() / n))
            if ref_f is not None:
                pairs[group]["forces"].append((np.asarray(ref_f).ravel(), at.get_forces().ravel()))
            if ref_s is not None and at.pbc.all():
                pairs[group]["stress"].append((ref_s.ravel(), at.get_stress(voigt=False).ravel()))
    if n_labelled == 0:
        raise InputError("--energy-key", f"no configuration in '{data_path}' has '{energy_key}', '{forces_key}' or '{stress_key}'; set the label keys")
    table = {}
    for group, p in pairs.items():
        table[group] = {
            "n_configs": len(p["energy"]) or len(p["forces"]),
            "energy_meV_atom": _rmse(p["energy"], 1e3),
            "forces_meV_A": _rmse(p["forces"], 1e3),
            "stress_meV_A3": _rmse(p["stress"], 1e3),
        }
    ordered = {k: table[k] for k in sorted(table) if k != "all"}
    ordered["all"] = table["all"]
    return ordered, pairs


def _rmse(pairs: list, scale: float) -> float | None:
    if not pairs:
        return None
    ref = np.concatenate([np.atleast_1d(r) for r, _ in pairs])
    pred = np.concatenate([np.atleast_1d(q) for _, q in pairs])
    return float(np.sqrt(np.mean((pred - ref) ** 2)) * scale)


def parity_plot(pairs, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, (key, unit) in zip(axes, (("energy", "eV/atom"), ("forces", "eV/Å"), ("stress", "eV/Å$^3$"))):
        for group, p in pairs.items():
            if group == "all" or not p[key]:
                continue
            ref = np.concatenate([np.atleast_1d(r) for r, _ in p[key]])
            pred = np.concatenate([np.atleast_1d(q) for _, q in p[key]])
            ax.scatter(ref, pred, s=4, label=group)
        lims = ax.get_xlim()
        ax.plot(lims, lims, "k--", lw=0.7)
        ax.set_xlabel(f"DFT {key} ({unit})")
        ax.set_ylabel(f"model {key} ({unit})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def format_table(table: dict) -> str:
    def cell(v):
        return f"{v:10.2f}" if v is not None else f"{'-':>10}"

    lines = [f"{'config_type':24s} {'configs':>7s} {'E (meV/atom)':>12s} {'F (meV/Å)':>10s} {'S (meV/Å^3)':>12s}"]
    for group, row in table.items():
        lines.append(f"{group:24s} {row['n_configs']:7d} {cell(row['energy_meV_atom']):>12s} {cell(row['forces_meV_A'])} {cell(row['stress_meV_A3']):>12s}")
    return "\n".join(lines)


def main_evaluate(args) -> int:
    # libraries print notices on stdout at import; keep stdout for the table / JSON alone
    with contextlib.redirect_stdout(sys.stderr):
        table, pairs = evaluate(args.model, args.data, args.energy_key, args.forces_key, args.stress_key, args.device, args.dtype)
    if args.parity:
        parity_plot(pairs, args.parity)
    if args.json:
        json.dump(table, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(table))
        if args.parity:
            print(f"parity plot: {args.parity}")
    return 0
