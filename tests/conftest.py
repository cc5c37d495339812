import os
import sys

import pytest

# the tests' own helper modules (small_input.py) sit next to this file
sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from small_input import SMALL  # noqa: E402


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One complete run of the small input on the default model, shared by the end-to-end tests."""
    from hpc_itc.cli import main

    folder = tmp_path_factory.mktemp("run")
    path = folder / "in.toml"
    path.write_text(SMALL.format(out="small.h5"))
    assert main([str(path)]) == 0
    return path, folder / "small.h5"


@pytest.fixture(scope="session")
def finished_run_summary(finished_run):
    from hpc_itc.inspect import summary

    return summary(finished_run[1])
