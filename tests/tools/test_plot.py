"""Figures from results files: written as PNG and PDF, several files on one figure, missing data skipped."""

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
