"""Any ASE calculator as the potential: ``mlip.calculator = "package.module:factory"``.

The factory is called once per rank with the keyword arguments of ``[mlip.calculator_args]`` and
must return an ASE calculator (SevenNet, MatterSim, ORB, NequIP, CHGNet, GRACE, a DFT code, or
ASE's own EMT).  Every stage then uses it exactly as it uses MACE: one structure per call (the
batched path is MACE's), on the ranks the stage distributes over.  ``device`` and ``dtype`` are
passed on when the factory takes a parameter of that name (``device``; ``dtype`` or
``default_dtype``) and the arguments do not set it already.

What identifies the calculator in the input hash (:func:`fingerprint`): the factory, its
arguments (they are input keys), the version of the package it comes from, and the sha256 of every
file an argument names.  Loading a factory imports and runs code, like loading a pickled model:
use only packages and files you trust.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from pathlib import Path
from typing import Any, Callable

from hpc_itc.config import CALCULATOR_SPEC
from hpc_itc.errors import InvalidInput, one_line

ALLOWED = "'package.module:factory', a function or class returning an ASE calculator (e.g. 'ase.calculators.emt:EMT')"


def parse_spec(spec: str) -> tuple[str, str]:
    """(module, attribute path) of "package.module:factory"; InvalidInput("calculator") otherwise."""
    if not isinstance(spec, str) or not CALCULATOR_SPEC.match(spec.strip()):
        raise InvalidInput("calculator", f"got {spec!r}; must be {ALLOWED}")
    module, _, attr = spec.strip().partition(":")
    return module, attr


def import_factory(spec: str) -> Callable[..., Any]:
    module_name, attr = parse_spec(spec)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - ImportError, or the package failing while it imports
        raise InvalidInput("calculator", f"cannot import {module_name} ({type(exc).__name__}: {one_line(exc, 100)}); "
                                         f"install it in this environment, or give another {ALLOWED}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidInput("calculator", f"{module_name} has no '{attr}'; must be {ALLOWED}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InvalidInput("calculator", f"{spec} is a {type(obj).__name__}, not callable; must be {ALLOWED}")
    return obj


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params  # not through **kwargs: a factory that does not name it may pass it where it does not belong


def build(spec: str, args: dict[str, Any], device: str = "cpu", dtype: str = "float64") -> Any:
    """Call the factory; the result must behave like an ASE calculator."""
    factory = import_factory(spec)
    kwargs = dict(args)
    if _accepts(factory, "device") and "device" not in kwargs:
        kwargs["device"] = device
    for name in ("default_dtype", "dtype"):
        if _accepts(factory, name) and not ({"default_dtype", "dtype"} & set(kwargs)):
            kwargs[name] = dtype
            break
    try:
        calc = factory(**kwargs)
    except Exception as exc:  # noqa: BLE001 - whatever the factory raises is the user's configuration
        raise InvalidInput("calculator_args", f"{spec}(**{sorted(kwargs)}) raised {type(exc).__name__}: {one_line(exc, 120)}") from None
    if not (hasattr(calc, "get_forces") or hasattr(calc, "calculate")) or not hasattr(calc, "get_potential_energy"):
        raise InvalidInput("calculator", f"{spec} returned a {type(calc).__name__}, not an ASE calculator; must be {ALLOWED}")
    return calc


def check_covers(calc: Any, spec: str, cells: dict[str, Any]) -> None:
    """Evaluate ``calc`` once on each small structure of ``cells`` (name -> Atoms, e.g. the two lead cells):
    an element it does not cover, or any other failure, is InvalidInput("calculator") naming the structure."""
    import numpy as np

    for name, atoms in cells.items():
        atoms = atoms.copy()
        atoms.calc = calc
        try:
            forces = np.asarray(atoms.get_forces(), float)
            energy = float(atoms.get_potential_energy())
        except Exception as exc:  # noqa: BLE001
            raise InvalidInput("calculator", f"{spec} fails on {name} ({'-'.join(sorted(set(atoms.get_chemical_symbols())))}): "
                                             f"{type(exc).__name__}: {one_line(exc, 120)}") from None
        finally:
            atoms.calc = None
        if forces.shape != (len(atoms), 3) or not np.isfinite(forces).all() or not np.isfinite(energy):
            raise InvalidInput("calculator", f"{spec} gives non-finite or misshapen forces on {name} (shape {forces.shape})")


def package_version(module_name: str) -> str:
    """Version of the distribution that provides ``module_name`` (its top-level package), or "unknown"."""
    top = module_name.split(".")[0]
    try:
        from importlib.metadata import packages_distributions, version

        for dist in packages_distributions().get(top, [top]):
            try:
                return f"{dist} {version(dist)}"
            except Exception:  # noqa: BLE001
                continue
    except Exception:  # noqa: BLE001
        pass
    module = importlib.import_module(top)
    return f"{top} {getattr(module, '__version__', 'unknown')}"


def files_named(args: dict[str, Any], base_dir: Path) -> dict[str, Path]:
    """Arguments (nested keys dotted, list items indexed) whose string value names an existing file,
    relative to ``base_dir`` or absolute: their content belongs to the calculator's identity."""
    out: dict[str, Path] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                visit(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                visit(f"{prefix}[{i}]", v)
        elif isinstance(value, str) and value and len(value) < 4096:
            p = Path(value).expanduser()
            p = p if p.is_absolute() else base_dir / p
            try:
                if p.is_file():
                    out[prefix] = p.resolve()
            except OSError:
                pass

    visit("", args)
    return out


def resolved_args(args: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """``args`` with relative file names made absolute (they are relative to the input file's folder)."""
    named = files_named(args, base_dir)

    def rebuild(prefix: str, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rebuild(f"{prefix}.{k}" if prefix else str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [rebuild(f"{prefix}[{i}]", v) for i, v in enumerate(value)]
        return str(named[prefix]) if prefix in named else value

    return rebuild("", args)


def fingerprint(spec: str, args: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """What identifies the calculator beyond the input keys: its package version and the files it reads."""
    module_name, _ = parse_spec(spec)
    import_factory(spec)
    files = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in sorted(files_named(args, base_dir).items())}
    return {"calculator_package": package_version(module_name), "calculator_files_sha256": files}
