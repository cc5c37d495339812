"""Figures from results files, in the spirit of the paper's Figs. 2-6.

``python -m hpc_itc plot RESULT.h5 [MORE.h5 ...] --out DIR`` writes each figure as
PNG and PDF.  Several files go on one figure (e.g. bare versus N-terminated);
a figure whose data no file holds is skipped with a note saying why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from hpc_itc.store.file import open_for_reading
from hpc_itc.store.h5 import read_str_array
from hpc_itc.store.structure import read_atoms

_COLOURS = {"Cu": "#c87533", "C": "#404040", "N": "#3050f8"}


def _ticks(names: list[str]) -> list[str]:
    return ["Γ" if n.upper() in ("G", "GAMMA") else n for n in names]


def _label(f: h5py.File, path: str) -> str:
    name = Path(path).stem
    if "structure" in f:
        n = len(f["structure/n_sites"])
        return f"{name} (N sites: {n})" if n else name
    return name


def fig_structure(files, plt):
    """Side views of the relaxed slab near the interface: x-z and y-z (the bridge site shows in y-z)."""
    have = [(p, f) for p, f in files if "relax" in f or "structure" in f]
    if not have:
        return None, "no structure in any file"
    fig, axes = plt.subplots(1, 2 * len(have), figsize=(2.4 * 2 * len(have) + 1, 6), squeeze=False)
    for k, (path, f) in enumerate(have):
        atoms = read_atoms(f["relax"] if "relax" in f else f["structure"])
        pos, cell, sym = atoms.positions, np.asarray(atoms.cell), atoms.get_chemical_symbols()
        region, side = atoms.arrays["region"], atoms.arrays["side"]
        z_plane = 0.5 * (pos[side == 0, 2].max() + pos[side == 1, 2].min())
        near = np.abs(pos[:, 2] - z_plane) < 9.0  # the interface, not 42 layers of bulk
        for axis, ax in zip((0, 1), axes[0][2 * k:2 * k + 2]):
            # stored positions are unwrapped (layers shift in-plane); show them in the cell, two periods wide
            x = np.mod(pos[:, axis], cell[axis, axis])
            for s in sorted(set(sym)):
                m = np.array([e == s for e in sym]) & near
                for image in (0, 1):
                    ax.scatter(x[m] + image * cell[axis, axis], pos[m, 2] - z_plane, s=40, c=_COLOURS.get(s, "k"),
                               label=s if image == 0 else None, edgecolors="k", linewidths=0.3)
            dev = (region == 1) & near
            ax.axhspan(pos[dev, 2].min() - z_plane, pos[dev, 2].max() - z_plane, color="0.9", zorder=-1)
            ax.set_xlabel(("x [110]" if axis == 0 else "y [-110]") + " (Å)")
            ax.set_aspect("equal", adjustable="datalim")
        gap = pos[side == 1, 2].min() - pos[side == 0, 2].max()
        axes[0][2 * k].set_title(f"{_label(f, path)}\nplane gap {gap:.2f} Å", fontsize=8)
    axes[0][0].set_ylabel("z - interface plane (Å)  (grey: device)")
    axes[0][0].legend(fontsize=8)
    return fig, None


def fig_registry(files, plt):
    """Energy of rigid in-plane shifts of the right half (best gap at each), from relax.registry_search."""
    have = [(p, f) for p, f in files if "relax/registry" in f]
    if not have:
        return None, "no registry search in any file (relax.registry_search)"
    fig, axes = plt.subplots(1, len(have), figsize=(3.6 * len(have) + 0.6, 3.4), squeeze=False)
    for ax, (path, f) in zip(axes[0], have):
        g = f["relax/registry"]
        surface = g["surface_eV"][()]
        n = surface.shape[0]
        tiled = np.block([[surface, surface[:, :1]], [surface[:1, :], surface[:1, :1]]])  # close the cell at 1
        im = ax.imshow(tiled.T, origin="lower", extent=(-0.5 / n, 1 + 0.5 / n, -0.5 / n, 1 + 0.5 / n), cmap="viridis")
        chosen = [float(v) for v in g.attrs["chosen_shift_frac"]]
        start = [float(v) for v in g.attrs["start_shift_frac"]]
        ax.plot(*chosen, "w*", ms=12, label=f"lowest ({chosen[0]:.3g}, {chosen[1]:.3g})")
        ax.plot(*start, "rx", ms=8, label=f"start ({start[0]:.3g}, {start[1]:.3g})")
        ax.set_xlabel("shift along a1 (fraction)")
        ax.set_ylabel("shift along a2 (fraction)")
        ax.set_title(f"{_label(f, path)}\ngain {g.attrs['gain_eV']:.3f} eV/cell", fontsize=8)
        ax.legend(fontsize=6, loc="upper right")
        fig.colorbar(im, ax=ax, label="E - E$_{min}$ (eV/cell)")
    return fig, None


def fig_itc(files, plt):
    have = [(p, f) for p, f in files if "transport" in f and f["transport"].attrs.get("complete", False)]
    if not have:
        return None, "no finished transport stage"
    fig, ax = plt.subplots(figsize=(5, 3.5))
    width = 0.8 / max(len(have), 1)
    directions = ("left_to_right", "right_to_left")
    for k, (path, f) in enumerate(have):
        g = f["transport"]
        temps = g["temperatures"][()]
        t_index = int(np.argmin(np.abs(temps - 300.0)))
        values = [g[d]["itc"][t_index] if d in g else np.nan for d in directions]
        ax.bar(np.arange(2) + k * width, values, width, label=_label(f, path))
    ax.set_xticks(np.arange(2) + 0.4 - width / 2, ["left → right", "right → left"])
    ax.set_ylabel(f"ITC at {temps[t_index]:.0f} K (MW m$^{{-2}}$ K$^{{-1}}$)")
    ax.legend(fontsize=8)
    return fig, None


def fig_cumulative(files, plt):
    return _per_direction(files, plt, "cumulative_itc", "cumulative ITC (MW m$^{-2}$ K$^{-1}$)", "frequency_grid")


def fig_spectral(files, plt):
    return _per_direction(files, plt, "spectral_transmission", "spectral transmittance", "frequency_bin_edges")


def _per_direction(files, plt, key: str, ylabel: str, grid_key: str):
    have = [(p, f) for p, f in files if "transport" in f and f["transport"].attrs.get("complete", False)]
    if not have:
        return None, "no finished transport stage"
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, direction in zip(axes, ("left_to_right", "right_to_left")):
        for path, f in have:
            g = f["transport"]
            if direction not in g:
                continue
            temps = g["temperatures"][()]
            t_index = int(np.argmin(np.abs(temps - 300.0)))
            grid = g[grid_key][()]
            y = g[direction][key][t_index]
            x = 0.5 * (grid[1:] + grid[:-1]) if grid_key == "frequency_bin_edges" else grid
            ax.plot(x, y, label=_label(f, path))
        ax.set_title(direction.replace("_", " "), fontsize=9)
        ax.set_xlabel("frequency (THz)")
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    return fig, None


def fig_mode_maps(files, plt):
    have = [(p, f) for p, f in files if "transport" in f and any(f"transport/{d}/path" in f for d in ("left_to_right", "right_to_left"))]
    if not have:
        return None, "no mode-resolved path data (transport.path_points = 0 or an older file)"
    panels = [(p, f, d) for p, f in have for d in ("left_to_right", "right_to_left") if f"transport/{d}/path" in f]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, (path, f, direction) in zip(axes[0], panels):
        g = f[f"transport/{direction}/path"]
        dist = g["distance"][()]
        freq = g["frequency"][()]
        trans = g["transmission"][()]
        sc = None
        for band in range(freq.shape[1]):
            sc = ax.scatter(dist, freq[:, band], c=trans[:, band], s=6, cmap="viridis", vmin=0, vmax=1)
        if "label_positions" in g:
            ax.set_xticks(g["label_positions"][()], _ticks(read_str_array(g["labels"])))
        ax.set_title(f"{_label(f, path)}\n{direction.replace('_', ' ')}", fontsize=8)
        ax.set_ylabel("frequency (THz)")
        if sc is not None:
            fig.colorbar(sc, ax=ax, label="transmittance")
    return fig, None


def fig_ldos(files, plt):
    have = [(p, f) for p, f in files if "ldos" in f and f["ldos"].attrs.get("complete", False)]
    if not have:
        return None, "no finished ldos stage"
    fig, axes = plt.subplots(len(have), 1, figsize=(6, 2.8 * len(have)), squeeze=False)
    for ax, (path, f) in zip(axes[:, 0], have):
        g = f["ldos"]
        grid = g["frequency"][()]
        layers = list(g["layers"][()])
        left, right = (int(x) for x in g.attrs["overlap_layers"])
        d1 = g["layer_ldos"][layers.index(left)]
        d2 = g["layer_ldos"][layers.index(right)]
        n1 = d1 / np.trapezoid(d1, grid)
        n2 = d2 / np.trapezoid(d2, grid)
        ax.plot(grid, n1, label=f"layer {left} ({g.attrs['overlap_atoms_left']})")
        ax.plot(grid, n2, label=f"layer {right} ({g.attrs['overlap_atoms_right']})")
        ax.fill_between(grid, np.minimum(n1, n2), color="0.6", alpha=0.5, label="overlap")
        ax.set_title(f"{_label(f, path)}: S = {g.attrs['overlap_factor']:.4f} THz$^{{-1}}$", fontsize=9)
        ax.set_ylabel("normalised LDOS (THz$^{-1}$)")
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("frequency (THz)")
    return fig, None


def fig_dispersions(files, plt):
    have = [(p, f, lead) for p, f in files for lead in ("left_lead", "right_lead") if f"force_constants/{lead}/phonons" in f]
    if not have:
        return None, "no lead dispersions stored (force-constant stage without phonons)"
    fig, axes = plt.subplots(1, len(have), figsize=(4 * len(have), 3.5), squeeze=False)
    for ax, (path, f, lead) in zip(axes[0], have):
        g = f[f"force_constants/{lead}/phonons"]
        dist = g["distance"][()]
        freq = g["frequency"][()]
        ax.plot(dist, freq, "k-", lw=0.8)
        if "label_positions" in g:
            ax.set_xticks(g["label_positions"][()], _ticks(read_str_array(g["labels"])))
        ax.set_title(f"{_label(f, path)}: {lead.replace('_', ' ')}", fontsize=8)
        ax.set_ylabel("frequency (THz)")
    return fig, None


def fig_cohp(files, plt):
    have = [(p, f) for p, f in files if "cohp" in f and f["cohp"].attrs.get("complete", False)]
    if not have:
        return None, "no cohp stage"
    fig, ax = plt.subplots(figsize=(4, 5))
    for path, f in have:
        g = f["cohp"]
        ax.plot(g["minus_cohp_mean"][()], g["energy"][()], label=_label(f, path))
    ax.axhline(0, color="k", lw=0.5, ls="--")
    ax.set_xlabel("-COHP (averaged over interface bonds)")
    ax.set_ylabel("E - E$_F$ (eV)")
    ax.legend(fontsize=8)
    return fig, None


FIGURES: dict[str, Callable] = {
    "structure": fig_structure,
    "registry": fig_registry,
    "dispersions": fig_dispersions,
    "itc": fig_itc,
    "cumulative_itc": fig_cumulative,
    "spectral_transmission": fig_spectral,
    "mode_maps": fig_mode_maps,
    "ldos": fig_ldos,
    "cohp": fig_cohp,
}


def plot_files(paths: list[str], out_dir: str) -> dict[str, str]:
    """Write every figure the files support; returns {figure: path or 'skipped: reason'}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    handles = []
    try:
        for p in paths:
            handles.append((p, open_for_reading(p)))
        report = {}
        for name, make in FIGURES.items():
            fig, why = make(handles, plt)
            if fig is None:
                report[name] = f"skipped: {why}"
                continue
            fig.tight_layout()
            for ext in ("png", "pdf"):
                fig.savefig(out / f"{name}.{ext}", dpi=150)
            plt.close(fig)
            report[name] = str(out / f"{name}.png")
        return report
    finally:
        for _, h in handles:
            h.close()
