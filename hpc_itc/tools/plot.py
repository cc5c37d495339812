"""Figures from results files, in the spirit of the paper's Figs. 2-6.

``python -m hpc_itc plot RESULT.h5 [MORE.h5 ...] --out DIR`` writes each figure as
PNG and PDF.  Several files go on one figure (e.g. bare versus N-terminated);
a figure whose data no file holds is skipped with a note saying why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from hpc_itc.core.structure import display_name
from hpc_itc.errors import InputError
from hpc_itc.store.file import open_for_reading
from hpc_itc.store.h5 import read_str_array
from hpc_itc.store.structure import direction_name as _direction_name
from hpc_itc.store.structure import material_names, read_atoms

_COLOURS = {"Cu": "#c87533", "C": "#404040", "N": "#3050f8"}
DIRECTIONS = ("left_to_right", "right_to_left")
CUMULATIVE_SHARE = 0.999  # cumulative plots stop a little past where h reaches this share of its total


def _ticks(names: list[str]) -> list[str]:
    return ["|".join("Γ" if n.upper() in ("G", "GAMMA") else n for n in name.split("|")) for name in names]


def _materials(f: h5py.File) -> tuple[str, str]:
    """Display names of the left and right materials ("Cu", "diamond"), from /structure."""
    names = material_names(f)
    return names["left"], names["right"]


def direction_name(f: h5py.File, direction: str) -> str:
    """'Cu → diamond' for left_to_right in a Cu/diamond file (phonons incident from the first material)."""
    return _direction_name(material_names(f), direction)


def _label(f: h5py.File, path: str) -> str:
    """'quick: Cu/diamond, bare' or 'cu_n_diamond: Cu/diamond, N-terminated'."""
    name = Path(path).stem
    if "structure" not in f:
        return name
    left, right = _materials(f)
    n = len(f["structure/n_sites"])
    return f"{name}: {left}/{right}, " + ("N-terminated" if n else "bare")


def _temperature_index(g, temperature_K: float, path: str) -> int:
    temps = g["temperatures"][()]
    k = int(np.argmin(np.abs(temps - temperature_K)))
    if abs(temps[k] - temperature_K) > 1e-6:
        raise InputError("--temperature", f"{temperature_K:g} K is not stored in {path}; it holds {', '.join(f'{t:g}' for t in temps)} K "
                         "(transport.temperatures_K)")
    return k


def _finished_transport(files):
    return [(p, f) for p, f in files if "transport" in f and f["transport"].attrs.get("complete", False)]


def fig_structure(files, plt, temperature_K: float = 300.0):
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
        left, right = _materials(f)
        axes[0][2 * k].set_title(f"{_label(f, path)}\n{left} below, {right} above; plane gap {gap:.2f} Å", fontsize=8)
        axes[0][2 * k].legend(fontsize=8, loc="upper left")
    axes[0][0].set_ylabel("z - interface plane (Å)  (grey: device)")
    return fig, None


def fig_registry(files, plt, temperature_K: float = 300.0):
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


def fig_itc(files, plt, temperature_K: float = 300.0):
    """Fig. 3b: h in both directions for each file (bare and N-terminated side by side), values on the bars;
    with a model committee (/committee) its mean ± spread as an error bar and each member as a dot."""
    from hpc_itc.store.committee import read_committee

    have = _finished_transport(files)
    if not have:
        return None, "no finished transport stage"
    fig, ax = plt.subplots(figsize=(2.2 + 2.0 * len(have), 3.8))
    width = 0.38
    top = 0.0
    committee_label = None
    for k, (path, f) in enumerate(have):
        g = f["transport"]
        t = _temperature_index(g, temperature_K, path)
        committee = read_committee(f)
        for j, direction in enumerate(DIRECTIONS):
            if direction not in g:
                continue
            x = k + (j - 0.5) * width
            value = float(g[direction]["itc"][t])
            bars = ax.bar(x, value, width * 0.95, color=("C0", "C1")[j],
                          label=direction_name(f, direction) if k == 0 else None)
            top = max(top, value)
            if committee is not None and direction in committee.directions:
                members = committee.at(direction, float(g["temperatures"][t]))
                mean, spread = float(members.mean()), float(members.std(ddof=1))
                committee_label = committee_label or f"committee mean ± spread ({len(members)} members)"
                ax.errorbar(x, mean, yerr=spread, fmt="_", color="k", capsize=3, lw=1, zorder=3)
                ax.plot(np.full(len(members), x), members, ".", color="k", ms=3, alpha=0.6, zorder=3)
                ax.bar_label(bars, labels=[f"{value:.1f}\n({mean:.1f}±{spread:.1f})"], fontsize=7, padding=2)
                top = max(top, float(members.max()), mean + spread)
            else:
                ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    if committee_label:
        ax.errorbar([], [], yerr=[], fmt="_", color="k", capsize=3, lw=1, label=committee_label)
        ratio = _paired_gain(have, temperature_K)
        if ratio:
            ax.text(0.02, 0.02, ratio, transform=ax.transAxes, fontsize=7, va="bottom")
    ax.set_xticks(np.arange(len(have)), [_label(f, p).replace(": ", "\n", 1) for p, f in have], fontsize=8)
    ax.set_ylim(0, (1.75 if committee_label else 1.35) * top if top > 0 else 1)  # room for the legend above the labels
    ax.set_ylabel("ITC h (MW m$^{-2}$ K$^{-1}$)")
    ax.set_title(f"interfacial thermal conductance at {temperature_K:g} K", fontsize=9)
    ax.legend(fontsize=7 if committee_label else 8, title="phonons incident", title_fontsize=8, loc="upper center",
              ncol=1 if committee_label and len(have) == 1 else 2)
    return fig, None


def _paired_gain(have, temperature_K: float) -> str:
    """'<b>/<a> = r ± s' (Cu → diamond) for two files whose committees have the same members, else ''."""
    from hpc_itc.store.committee import paired_ratio, read_committee

    if len(have) != 2:
        return ""
    (pa, fa), (pb, fb) = have
    a, b = read_committee(fa), read_committee(fb)
    if a is None or b is None or DIRECTIONS[0] not in a.directions:
        return ""
    try:
        mean, spread = paired_ratio(a, b, DIRECTIONS[0], temperature_K)
    except ValueError:  # other members: no paired ratio
        return ""
    return (f"h({Path(pb).stem}) / h({Path(pa).stem}) = {mean:.3f} ± {spread:.3f}\n"
            f"(h ratio member by member, {direction_name(fa, DIRECTIONS[0])})")


def fig_cumulative(files, plt, temperature_K: float = 300.0):
    """Fig. 4a: h accumulated over frequency, per direction; x cut where it has saturated."""
    return _per_direction(files, plt, temperature_K, "cumulative_itc", "frequency_grid",
                          "cumulative ITC  h(ν) = ∫$_0^ν$ h$_ν$′ dν′  (MW m$^{-2}$ K$^{-1}$)")


def fig_spectral(files, plt, temperature_K: float = 300.0):
    """Fig. 4b: mean transmittance per frequency bin (weights of the Landauer sum), per direction."""
    return _per_direction(files, plt, temperature_K, "spectral_transmission", "frequency_bin_edges",
                          "spectral transmittance: mean T(ν) of the incident\nmodes in each bin, weighted by ħω v$_z$ ∂f/∂T")


def _heat_flow_limit_THz(have, temperature_K: float) -> float:
    """The frequency beyond which no file's cumulative h grows (CUMULATIVE_SHARE of its total), plus 15 %."""
    limit = 0.0
    for path, f in have:
        g = f["transport"]
        t = _temperature_index(g, temperature_K, path)
        grid = g["frequency_grid"][()]
        for direction in DIRECTIONS:
            if direction not in g:
                continue
            cum = g[direction]["cumulative_itc"][t]
            total = cum[-1]
            if total > 0:
                limit = max(limit, float(grid[int(np.argmax(cum >= CUMULATIVE_SHARE * total))]))
    return 1.15 * limit if limit > 0 else float("nan")


def _per_direction(files, plt, temperature_K: float, key: str, grid_key: str, ylabel: str):
    have = _finished_transport(files)
    if not have:
        return None, "no finished transport stage"
    x_max = _heat_flow_limit_THz(have, temperature_K)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8), sharey=True)
    for ax, direction in zip(axes, DIRECTIONS):
        for path, f in have:
            g = f["transport"]
            if direction not in g:
                continue
            t = _temperature_index(g, temperature_K, path)
            grid = g[grid_key][()]
            y = g[direction][key][t]
            x = 0.5 * (grid[1:] + grid[:-1]) if grid_key == "frequency_bin_edges" else grid
            ax.plot(x, y, label=_label(f, path), lw=1.2)
        ax.set_title(f"{direction_name(have[0][1], direction)}, {temperature_K:g} K", fontsize=9)
        ax.set_xlabel("frequency ν (THz)")
        if np.isfinite(x_max):
            ax.set_xlim(0, x_max)
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel(ylabel, fontsize=8)
    axes[0].legend(fontsize=7)
    return fig, None


def _path_segments(distance: np.ndarray) -> list[slice]:
    """Continuous pieces of a band path: a new piece where the distance does not advance (a jump such as U|K)."""
    breaks = [0] + [i + 1 for i in np.flatnonzero(np.diff(distance) <= 1e-12)] + [len(distance)]
    return [slice(a, b) for a, b in zip(breaks[:-1], breaks[1:]) if b - a > 1]


def fig_mode_maps(files, plt, temperature_K: float = 300.0):
    """Figs. 4c,d: the incident lead's dispersion along the path, each branch coloured by its transmittance."""
    from matplotlib.collections import LineCollection

    have = [(p, f) for p, f in files if "transport" in f and any(f"transport/{d}/path" in f for d in DIRECTIONS)]
    if not have:
        return None, "no mode-resolved path data (transport.path_points = 0 or an older file)"
    fig, axes = plt.subplots(len(have), 2, figsize=(10, 3.9 * len(have)), squeeze=False, layout="constrained")
    line = None
    for row, (path, f) in zip(axes, have):
        for ax, direction in zip(row, DIRECTIONS):
            key = f"transport/{direction}/path"
            if key not in f:
                ax.set_visible(False)
                continue
            g = f[key]
            dist, freq, trans = g["distance"][()], g["frequency"][()], g["transmission"][()]
            for piece in _path_segments(dist):
                for band in range(freq.shape[1]):
                    x, y, c = dist[piece], freq[piece, band], trans[piece, band]
                    points = np.column_stack([x, y])
                    segments = np.stack([points[:-1], points[1:]], axis=1)
                    line = LineCollection(segments, cmap="viridis", norm=plt.Normalize(0, 1), linewidths=1.6)
                    line.set_array(0.5 * (c[:-1] + c[1:]))
                    ax.add_collection(line)
            if "label_positions" in g:
                positions = g["label_positions"][()]
                ax.set_xticks(positions, _ticks(read_str_array(g["labels"])))
                for x in positions:
                    ax.axvline(x, color="0.85", lw=0.5, zorder=-1)
            ax.set_xlim(dist[0], dist[-1])
            ax.set_ylim(0, 1.04 * np.nanmax(freq))
            incident = direction_name(f, direction).split(" → ")[0]
            ax.set_title(f"{_label(f, path)}\n{direction_name(f, direction)}: {incident} lead modes", fontsize=8)
            ax.set_ylabel("frequency (THz)")
    if line is not None:
        fig.colorbar(line, ax=axes.ravel().tolist(), label="transmittance T", shrink=0.9)
    return fig, None


def fig_ldos(files, plt, temperature_K: float = 300.0):
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
        names = material_names(f)
        ax.plot(grid, n1, label=f"{names['left']} layer {left} ({g.attrs['overlap_atoms_left']}), D$_1$")
        ax.plot(grid, n2, label=f"{names['right']} layer +{right} ({g.attrs['overlap_atoms_right']}), D$_2$")
        ax.fill_between(grid, np.minimum(n1, n2), color="0.6", alpha=0.5, label="overlap")
        ax.set_title(f"{_label(f, path)}: S = {g.attrs['overlap_factor']:.4f} THz$^{{-1}}$", fontsize=9)
        ax.set_ylabel("normalised LDOS (THz$^{-1}$)")
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("frequency (THz)")
    return fig, None


def draw_lead_phonons(ax, ax_dos, ph, title: str) -> None:
    """Dispersion (continuous per straight segment), DOS and the experimental points of one lead (core.phonons.LeadPhonons)."""
    from hpc_itc.core.phonons import REFERENCE_MATCH

    for s in np.unique(ph.path_segment):
        sel = ph.path_segment == s
        ax.plot(ph.path_distances[sel], ph.path_frequencies[sel], color="C0", lw=1)
    for x in ph.label_distances:
        ax.axvline(x, color="0.8", lw=0.5)
    ax.set_xticks(ph.label_distances, _ticks(list(ph.label_names)))
    ax.set_xlim(ph.path_distances[0], ph.path_distances[-1])
    marked = False
    for label, _, ref in ph.comparison:
        point = REFERENCE_MATCH.get(ph.material, {}).get(label, (None,))[0]
        for x in [x for n, x in zip(ph.label_names, ph.label_distances) if point in n.split("|")]:
            ax.plot(x, ref, "o", mfc="none", mec="C3", ms=6, mew=1.2, label=None if marked else "experiment (unstrained crystal)")
            marked = True
    if marked:
        ax.legend(loc="lower right", fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.set_ylabel("frequency (THz)")
    ax_dos.plot(ph.dos, ph.dos_frequencies, color="C0", lw=1)
    ax_dos.set_ylim(ax.get_ylim())
    ax_dos.set_xlim(left=0)
    ax_dos.set_xlabel("DOS (states/THz per cell)", fontsize=8)
    ax_dos.set_yticklabels([])


def lead_phonon_figure(panels, plt):
    """One row (dispersion | DOS) per (LeadPhonons, title)."""
    fig, axes = plt.subplots(len(panels), 2, figsize=(8.5, 3.3 * len(panels)), squeeze=False, gridspec_kw={"width_ratios": [3, 1]},
                             layout="tight")
    for (ax, ax_dos), (ph, title) in zip(axes, panels):
        draw_lead_phonons(ax, ax_dos, ph, title)
    return fig


def fig_dispersions(files, plt, temperature_K: float = 300.0):
    """Each lead's bulk dispersion and DOS from its force constants, with the experimental points (reference_phonons.toml)."""
    from hpc_itc.store.force_constants import read_lead_phonons

    panels, seen = [], []
    for path, f in files:
        for lead in ("left_lead", "right_lead"):
            key = f"force_constants/{lead}/phonons"
            if key not in f:
                continue
            ph = read_lead_phonons(f[key])
            if any(ph.path_frequencies.shape == o.shape and np.allclose(ph.path_frequencies, o, atol=1e-6) for o in seen):
                continue  # the same lead in another file (bare and N-terminated share their leads)
            seen.append(ph.path_frequencies)
            strained = str(f["structure"].attrs.get("strained_side", "")) if "structure" in f else ""
            note = ", strained in plane to the interface cell" if strained and lead.startswith(strained) else ""
            panels.append((ph, f"{_label(f, path)}: {display_name(ph.material)} lead{note}"))
    if not panels:
        return None, "no lead dispersions stored (force-constant stage without phonons)"
    return lead_phonon_figure(panels, plt), None


def fig_cohp(files, plt, temperature_K: float = 300.0):
    """Fig. 6: -COHP(E) averaged over the interface bonds (a bulk or one-material folder: its nearest-neighbour shell)."""
    have = [(p, f) for p, f in files if "cohp" in f and f["cohp"].attrs.get("complete", False)]
    if not have:
        return None, "no cohp stage"
    fig, ax = plt.subplots(figsize=(4.4, 5))
    kinds = set()
    for path, f in have:
        g = f["cohp"]
        kind = str(g.attrs.get("kind", "interface"))
        kinds.add(kind)
        if kind == "interface":
            sides = " | ".join(side["name"] for side in json.loads(g.attrs.get("sides", "[]")))
            ax.plot(g["minus_cohp_mean"][()], g["energy"][()],
                    label=f"{_label(f, path)}: {int(g.attrs['n_bonds'])} interface bonds" + (f" ({sides})" if sides else ""))
        else:  # every bond of a crystal averaged is mostly weak far pairs: show the nearest shell (types are ordered by length)
            nearest = read_str_array(g["types"])[0]
            ax.plot(g["type_minus_cohp_mean"][0], g["energy"][()],
                    label=f"{Path(path).stem}: {kind}, nearest shell {nearest} (x{int(g['type_count'][0])})")
    ax.axhline(0, color="k", lw=0.5, ls="--")
    ax.axvline(0, color="0.7", lw=0.5)
    what = "the interface bonds" if kinds == {"interface"} else ("the bonds of the nearest shell" if "interface" not in kinds
                                                                 else "the interface bonds / nearest shell")
    ax.set_xlabel(f"-COHP per bond (eV), averaged over {what}\n(> 0 bonding)", fontsize=8)
    ax.set_ylabel("E - E$_F$ (eV)")
    ax.legend(fontsize=7)
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


def plot_files(paths: list[str], out_dir: str, temperature_K: float = 300.0) -> dict[str, str]:
    """Write every figure the files support; returns {figure: path or 'skipped: reason'}.

    ``temperature_K`` chooses the temperature of the ITC, cumulative and spectral figures; it must be
    one of the file's transport.temperatures_K (else InputError naming --temperature).
    """
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
            fig, why = make(handles, plt, temperature_K)  # only the ITC, cumulative and spectral figures use it
            if fig is None:
                report[name] = f"skipped: {why}"
                continue
            if fig.get_layout_engine() is None:
                fig.tight_layout()
            for ext in ("png", "pdf"):
                fig.savefig(out / f"{name}.{ext}", dpi=150)
            plt.close(fig)
            report[name] = str(out / f"{name}.png")
        return report
    finally:
        for _, h in handles:
            h.close()
