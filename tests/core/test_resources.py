"""The resource estimate from the input alone agrees with what the pipeline builds."""

import h5py
import pytest

from hpc_itc.core.force_constants import real_space_ifc
from hpc_itc.core.harmonic import PrincipalLayerLead
from hpc_itc.core.resources import LIMITS, estimate, principal_layer_reach
from hpc_itc.core.structure import cubic_layer_cell


@pytest.mark.parametrize("cutoff", [2.0, 3.0, 4.5, 6.0])
def test_principal_layers_from_geometry_match_the_force_constants(emt_cu_phonopy, cutoff):
    phonon, cell = emt_cu_phonopy  # Cu layer cell, a = 3.59 Å, 4 x 4 x 5 supercell
    truncated, _ = real_space_ifc(phonon, cell).truncated(cutoff)
    assert principal_layer_reach(cubic_layer_cell("cu", 3.59), cutoff) == PrincipalLayerLead.from_bulk(truncated).p


def test_estimate_counts_the_slab_the_structure_stage_builds(finished_run, finished_run_summary):
    from small_input import SMALL  # noqa: F401 - the input of finished_run: 3 + 3 cells, 2 buffer cells, cutoff 3

    with h5py.File(finished_run[1]) as f:
        a_left = float(f["structure/left_lead"].attrs["inplane_A"])
    left, right = cubic_layer_cell("cu", 3.615).with_steps(inplane_A=a_left), cubic_layer_cell("diamond", 3.567)
    est = estimate(left, right, (3, 3), 2, (1, 1), 3.0, 0, (3, 3, 3), 0, 2, "rgf")
    assert est.slab_atoms == finished_run_summary["n_atoms"] == 5 * 1 + 5 * 2
    assert est.device_atoms == finished_run_summary["n_atoms_device"]
    assert est.force_calls >= finished_run_summary["n_force_evaluations"]
    assert est.over() == []


def test_absurd_inputs_exceed_the_limits_and_say_by_how_much():
    cu, c = cubic_layer_cell("cu", 3.615), cubic_layer_cell("diamond", 3.567)
    big = estimate(cu.with_steps(inplane_A=c.inplane_A), c, (10000, 10000), 1000, (100, 100), 15.0, 0, (1000, 1000, 1000), 0, 2, "dense")
    over = " ".join(big.over())
    for name in LIMITS:
        assert name in over
