"""Figures from results files: written as PNG and PDF, several files on one figure, missing data skipped."""

import numpy as np

from hpc_itc.cli import main
from hpc_itc.tools.plot import plot_files


def test_plot_writes_png_and_pdf(finished_run, tmp_path):
    _, out = finished_run
    report = plot_files([str(out), str(out)], str(tmp_path))
    for name in ("structure", "itc", "cumulative_itc", "spectral_transmission", "ldos"):
        assert report[name].endswith(".png"), report
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert (tmp_path / f"{name}.pdf").stat().st_size > 1000
    assert report["cohp"].startswith("skipped:")


def test_plot_missing_file_is_an_input_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "none.h5"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: result:")


def _figure(make, out, *args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hpc_itc.store.file import open_for_reading

    f = open_for_reading(str(out))
    try:
        fig, why = make([(str(out), f)], plt, *args)
        assert fig is not None, why
        return fig, f
    except BaseException:
        f.close()
        raise


def _transport_at_300K(f):
    """The /transport group and the index of 300 K in it."""
    g = f["transport"]
    return g, list(g["temperatures"][()]).index(300.0)


def test_itc_bars_show_the_stored_values_and_materials(finished_run):
    """Fig. 3b: one bar per direction, its label the stored h at the chosen temperature, the legend in material names."""
    from hpc_itc.tools.plot import fig_itc

    _, out = finished_run
    fig, f = _figure(fig_itc, out, 300.0)
    with f:
        g, k = _transport_at_300K(f)
        expected = sorted(f"{g[d]['itc'][k]:.1f}" for d in ("left_to_right", "right_to_left"))
        ax = fig.axes[0]
        assert sorted(t.get_text() for t in ax.texts) == expected
        assert "300 K" in ax.get_title()
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["Cu → diamond", "diamond → Cu"]


def test_temperature_not_stored_is_an_input_error(finished_run, tmp_path, capsys):
    _, out = finished_run
    assert main(["plot", str(out), "--out", str(tmp_path), "--temperature", "123"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --temperature: 123 K is not stored in") and err.count("\n") == 1


def test_cumulative_cut_where_heat_stops_flowing(finished_run):
    """Fig. 4a: the x axis ends 15 % past the frequency where h reaches 99.9 % of its total, not at the top of diamond."""
    from hpc_itc.tools.plot import fig_cumulative

    _, out = finished_run
    fig, f = _figure(fig_cumulative, out, 300.0)
    with f:
        g, k = _transport_at_300K(f)
        grid = g["frequency_grid"][()]
        reach = max(grid[np.argmax(c >= 0.999 * c[-1])] for c in (g[d]["cumulative_itc"][k] for d in ("left_to_right", "right_to_left")))
        for ax in fig.axes:
            assert ax.get_xlim()[1] == np.float64(1.15 * reach)
            assert ax.get_xlim()[1] < grid[-1]
        assert fig.axes[0].get_title() == "Cu → diamond, 300 K"


def test_mode_maps_are_continuous_branches(finished_run):
    """Figs. 4c,d: each band drawn as line segments coloured by T (not dots), Γ in the path labels."""
    from matplotlib.collections import LineCollection

    from hpc_itc.tools.plot import fig_mode_maps

    _, out = finished_run
    fig, f = _figure(fig_mode_maps, out)
    with f:
        ax = fig.axes[0]
        lines = [c for c in ax.collections if isinstance(c, LineCollection)]
        n_bands = f["transport/left_to_right/path/frequency"].shape[1]
        assert len(lines) >= n_bands
        colours = np.concatenate([c.get_array() for c in lines])
        assert np.nanmin(colours) >= 0 and np.nanmax(colours) <= 1
        assert [t.get_text() for t in ax.get_xticklabels()][0] == "Γ"
        assert "Cu → diamond" in ax.get_title()
