"""Factories for the mlip.calculator tests (importable as calculator_factories:NAME; tests/ is on sys.path)."""

from ase.calculators.emt import EMT


def emt(scale: float = 1.0):
    """ASE's EMT (the keyword shows that [mlip.calculator_args] arrive)."""
    assert scale == 1.0
    return EMT()


def broken(**kwargs):
    raise RuntimeError("licence server not reachable")


def not_a_calculator():
    return {"energy": 0.0}


class NoNitrogen(EMT):
    """EMT that, like a model trained without N, refuses nitrogen."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        if "N" in atoms.get_chemical_symbols():
            raise ValueError("element N is not in this model")
        super().calculate(atoms, properties, system_changes)


def no_nitrogen():
    return NoNitrogen()


def with_device(device="cpu", dtype="float64"):
    """Records what the driver passed through (device, dtype)."""
    calc = EMT()
    calc.passed = (device, dtype)
    return calc
