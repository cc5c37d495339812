import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "inputs"

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def example_inputs():
    return sorted(INPUTS.glob("*.toml"))
