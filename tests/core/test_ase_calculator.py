"""Any ASE calculator through mlip.calculator: the factory, its errors, and what identifies it."""

import pytest

from hpc_itc.core import ase_calculator as ac
from hpc_itc.core.structure import cubic_layer_cell
from hpc_itc.errors import InvalidInput


def test_factory_builds_and_passes_device_and_dtype():
    calc = ac.build("calculator_factories:with_device", {}, device="cpu", dtype="float32")
    assert calc.passed == ("cpu", "float32")
    calc = ac.build("calculator_factories:with_device", {"dtype": "float64"}, device="cpu", dtype="float32")
    assert calc.passed == ("cpu", "float64")  # the table wins
    assert ac.build("calculator_factories:emt", {"scale": 1.0}).__class__.__name__ == "EMT"


@pytest.mark.parametrize("spec, args, subject, words", [
    ("not a spec", {}, "calculator", "package.module:factory"),
    ("no_such_package_xyz.calc:make", {}, "calculator", "cannot import no_such_package_xyz"),
    ("calculator_factories:missing", {}, "calculator", "has no 'missing'"),
    ("calculator_factories:broken", {}, "calculator_args", "licence server not reachable"),
    ("calculator_factories:emt", {"scale": 2.0}, "calculator_args", "AssertionError"),
    ("calculator_factories:not_a_calculator", {}, "calculator", "not an ASE calculator"),
])
def test_factory_errors_are_one_line(spec, args, subject, words):
    with pytest.raises(InvalidInput) as err:
        ac.build(spec, args)
    assert err.value.subject == subject and words in str(err.value) and "\n" not in str(err.value)


def test_an_element_the_calculator_does_not_cover_is_named():
    cn = cubic_layer_cell("diamond", 3.567).atoms() * (1, 1, 2)
    cn[0].symbol = "N"
    calc = ac.build("calculator_factories:no_nitrogen", {})
    ac.check_covers(calc, "no_nitrogen", {"the Cu lead cell": cubic_layer_cell("cu", 3.615).atoms()})
    with pytest.raises(InvalidInput) as err:
        ac.check_covers(calc, "no_nitrogen", {"an N-substituted diamond cell": cn})
    assert "fails on an N-substituted diamond cell (C-N)" in str(err.value) and "element N is not in this model" in str(err.value)


def test_fingerprint_covers_package_version_and_named_files(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"weights v1")
    args = {"model_path": "model.bin", "options": {"cutoff": 5.0}}
    fp = ac.fingerprint("ase.calculators.emt:EMT", args, tmp_path)
    assert fp["calculator_package"].startswith("ase ") and set(fp["calculator_files_sha256"]) == {"model_path"}
    (tmp_path / "model.bin").write_bytes(b"weights v2")
    assert ac.fingerprint("ase.calculators.emt:EMT", args, tmp_path) != fp
    assert ac.resolved_args(args, tmp_path)["model_path"] == str((tmp_path / "model.bin").resolve())
