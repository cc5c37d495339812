"""The MLIP layer: MACE models through mace-torch and its ASE calculator.

A model is named by one string:

* ``"default"`` - the small model shipped in ``hpc_itc/models/default.model``;
* a path to a MACE model file (a whole pickled torch module as written by
  ``mace_run_train``, e.g. ``MACE.model``; not a training checkpoint);
* a MACE foundation-model name that ``mace.calculators.mace_mp`` knows
  (``small``, ``medium``, ``medium-mpa-0`` ...); these are downloaded by mace-torch,
  so they need network access.

Every problem a user can cause ends as :class:`hpc_itc.errors.InvalidInput` with a
one-line message; torch, e3nn and mace are imported lazily, so importing this
module is cheap.
"""

from __future__ import annotations

import copy
import os
import pathlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms

# MACE model files are whole pickled torch modules, and e3nn 0.4.4 calls torch.load
# on a bundled file at import.  torch >= 2.6 defaults to weights_only=True, which
# refuses both.  Allow full unpickling (only load model files you trust).
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

from hpc_itc.errors import InvalidInput, one_line  # noqa: E402

DEFAULT_MODEL: str = "default"

DTYPES = ("float32", "float64")

# Names accepted by mace.calculators.mace_mp in mace-torch 0.3.16 (the keys of
# mace_mp_urls).  Checked statically so that resolve_model needs no torch import;
# names added by a newer mace-torch are picked up lazily in _foundation_names().
_FOUNDATION_NAMES = (
    "small",
    "medium",
    "large",
    "small-0b",
    "medium-0b",
    "small-0b2",
    "medium-0b2",
    "large-0b2",
    "medium-0b3",
    "medium-mpa-0",
    "small-omat-0",
    "medium-omat-0",
    "mace-matpes-pbe-0",
    "mace-matpes-r2scan-0",
    "mh-0",
    "mh-1",
)
# Other spellings in use (the paper's recipe says "mace-mpa-0-medium").
_FOUNDATION_ALIASES = {
    "mace-mpa-0-medium": "medium-mpa-0",
    "mace-mpa-0": "medium-mpa-0",
    "mpa-0-medium": "medium-mpa-0",
    "mace-omat-0-small": "small-omat-0",
    "mace-omat-0-medium": "medium-omat-0",
    "mace-mp-0-small": "small",
    "mace-mp-0-medium": "medium",
    "mace-mp-0-large": "large",
    "mace-mp-0b3-medium": "medium-0b3",
}

_ALLOWED_MODELS = (
    "'default', a path to a MACE .model file, or a MACE foundation name "
    "(e.g. 'small', 'medium', 'medium-mpa-0')"
)

_lock = threading.RLock()
_module_cache: dict[tuple, Any] = {}
_calc_cache: dict[tuple, Any] = {}


@dataclass(frozen=True)
class ModelSummary:
    path: str
    elements: tuple[str, ...]
    r_max_A: float
    num_interactions: int
    dtype: str


def default_model_path() -> pathlib.Path:
    """The packaged default model, ``hpc_itc/models/default.model``."""
    return pathlib.Path(__file__).resolve().parents[1] / "models" / "default.model"


def shipped_committee() -> list[pathlib.Path]:
    """The committee members shipped in ``hpc_itc/models/committee/`` (``committee_<k>.model``, k = 1, 2, ...)."""
    folder = default_model_path().parent / "committee"
    found = sorted(folder.glob("committee_*.model"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if len(found) < 2:
        raise InvalidInput("committee.models", f"the packaged committee in {folder} is missing (broken install); reinstall hpc_itc or name model files")
    return found


def _foundation_names() -> tuple[str, ...]:
    names = set(_FOUNDATION_NAMES)
    try:  # a newer mace-torch may know more names
        from mace.calculators.foundations_models import mace_mp_urls  # type: ignore

        names.update(str(k) for k in mace_mp_urls)
    except Exception:
        pass
    return tuple(sorted(names))


def _is_foundation_name(model: str) -> bool:
    return model in _FOUNDATION_NAMES or model in _FOUNDATION_ALIASES


def resolve_model(model: str) -> str:
    """Turn a model specification into an absolute file path or a foundation name."""
    if not isinstance(model, (str, os.PathLike)):
        raise InvalidInput("model", f"must be {_ALLOWED_MODELS}; got {type(model).__name__}")
    spec = os.fspath(model).strip()
    if spec == "" or spec.lower() == DEFAULT_MODEL:
        p = default_model_path()
        if not p.is_file():
            raise InvalidInput("model",
                f"the packaged default model {p} is missing (broken install); "
                "reinstall hpc_itc or give a model file path",
            )
        return str(p)
    p = pathlib.Path(spec).expanduser()
    if p.is_file():
        return str(p.resolve())
    if p.exists():
        raise InvalidInput("model", f"'{spec}' is not a file; must be {_ALLOWED_MODELS}")
    if _is_foundation_name(spec):
        return spec
    if os.sep not in spec and not spec.endswith((".model", ".pt", ".pth")):
        if spec in _foundation_names():
            return spec
    raise InvalidInput("model", f"no such model file or foundation name '{spec}'; must be {_ALLOWED_MODELS}"
    )


def _is_path(resolved: str) -> bool:
    return os.path.isabs(resolved) and os.path.isfile(resolved)


def _file_key(path: str) -> tuple:
    st = os.stat(path)
    return (path, st.st_mtime_ns, st.st_size)


def _check_module(module: Any, source: str) -> None:
    import torch

    if not isinstance(module, torch.nn.Module):
        what = type(module).__name__
        hint = " (a training checkpoint? use the .model file mace_run_train writes)" if isinstance(module, dict) else ""
        raise InvalidInput("model",
            f"'{source}' holds a {what}, not a MACE model{hint}; must be {_ALLOWED_MODELS}",
        )
    for attr in ("atomic_numbers", "r_max", "num_interactions"):
        if not hasattr(module, attr):
            raise InvalidInput("model",
                f"'{source}' is a torch module ({type(module).__name__}) but not a MACE model "
                f"(no '{attr}'); must be {_ALLOWED_MODELS}",
            )


def _looks_like_plain_pickle(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(1) == b"\x80"
    except OSError:
        return False


# What a MACE model file's pickle may name (module prefixes, or exact names).  A pickle runs what it names
# while it is read, so a name outside these is refused before torch.load sees the file.  This stops
# accidents and plain payloads (os.system, builtins.exec, subprocess); it is not a sandbox: torch itself
# holds callables that run code (torch.fx rebuilds GraphModules from source), so a model file must be
# trusted like code (README, docs/models.md).
_PICKLE_MODULES = ("torch", "e3nn", "mace", "numpy", "collections", "opt_einsum_fx", "_codecs", "copyreg")
_PICKLE_BUILTINS = {"set", "frozenset", "slice", "complex", "range", "list", "dict", "tuple", "int", "float", "bool", "str", "bytes",
                    "bytearray", "object", "NotImplemented", "Ellipsis"}
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def pickle_globals(data: bytes) -> list[str]:
    """"module.name" of every global a pickle refers to, read with pickletools (nothing is executed)."""
    import pickletools

    names, strings, memo = [], [], {}
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            module, _, name = str(arg).partition(" ")
            names.append(f"{module}.{name}")
        elif op.name == "INST":
            module, _, name = str(arg).partition(" ")
            names.append(f"{module}.{name}")
        elif op.name in _STRING_OPS:
            strings.append(str(arg))
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            strings.append(memo.get(arg))
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = strings[-1] if strings else None
        elif op.name == "MEMOIZE":
            memo[len(memo)] = strings[-1] if strings else None
        elif op.name == "STACK_GLOBAL":
            module, name = (strings[-2], strings[-1]) if len(strings) >= 2 else (None, None)
            names.append(f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else "<unresolved>")
    return names


def _allowed_global(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    if module in ("builtins", "__builtin__"):
        return attr in _PICKLE_BUILTINS
    return any(module == m or module.startswith(m + ".") for m in _PICKLE_MODULES)


def scan_model_file(path: str) -> None:
    """InvalidInput when the file's pickles name anything a MACE model never needs (checked without unpickling)."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                pickles = [z.read(n) for n in z.namelist() if n.endswith(".pkl")]
        else:  # a plain pickle, or torch's legacy format (several pickles in a row): read the first
            with open(path, "rb") as fh:
                pickles = [fh.read(50_000_000)]
    except (OSError, zipfile.BadZipFile, RuntimeError) as exc:
        raise InvalidInput("model", f"cannot read '{path}' ({type(exc).__name__}); must be {_ALLOWED_MODELS}") from None
    if not pickles:
        raise InvalidInput("model", f"'{path}' holds no pickled object; must be {_ALLOWED_MODELS}")
    for data in pickles:
        try:
            names = pickle_globals(data)
        except Exception:  # noqa: BLE001 - pickletools stops at the first byte that is not an opcode
            if not zipfile.is_zipfile(path):
                names = []  # legacy torch files carry raw storage bytes after the pickles; the first object was read
            else:
                raise InvalidInput("model", f"'{path}' holds a damaged pickle; must be {_ALLOWED_MODELS}") from None
        refused = sorted({n for n in names if not _allowed_global(n)})
        if refused:
            raise InvalidInput("model", f"'{path}' would run {', '.join(refused[:3])} when loaded, which no MACE model does; "
                                        f"not loaded (model files run code: use only files you trust); must be {_ALLOWED_MODELS}")


def _torch_load(path: str) -> Any:
    import torch

    scan_model_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except InvalidInput:
        raise
    except MemoryError:
        raise InvalidInput("model", f"'{path}' is too large to load; must be {_ALLOWED_MODELS}")
    except Exception as exc:  # corrupt, truncated, foreign pickle, version mismatch ...
        if _looks_like_plain_pickle(path) and "magic number" in str(exc).lower():
            raise InvalidInput("model",
                f"'{path}' is a plain Python pickle, not a MACE model (a torch.save file); "
                f"must be {_ALLOWED_MODELS}",
            ) from None
        raise InvalidInput("model",
            f"cannot load '{path}' as a MACE model ({type(exc).__name__}: {one_line(exc, 100)}); "
            f"must be {_ALLOWED_MODELS} saved by a compatible mace-torch",
        ) from None


def _foundation_raw(name: str) -> Any:
    _import_mace()
    try:
        from mace.calculators import mace_mp

        return mace_mp(model=_FOUNDATION_ALIASES.get(name, name), device="cpu", return_raw_model=True)
    except Exception:
        raise InvalidInput("model",
            f"could not obtain foundation model '{name}' (no network?); give a model file path instead",
        ) from None


def _import_mace() -> None:
    """Import torch, e3nn and mace, turning an install problem into InvalidInput."""
    import contextlib
    import io

    try:
        # mace prints a notice about optional CUDA kernels on stdout at import; stdout belongs
        # to our commands' output (tables, JSON), so the notice is dropped
        with contextlib.redirect_stdout(io.StringIO()):
            import e3nn  # noqa: F401
            import mace  # noqa: F401
            import mace.calculators  # noqa: F401
            import torch  # noqa: F401
    except Exception as exc:
        raise InvalidInput("model",
            f"cannot import torch/e3nn/mace-torch ({type(exc).__name__}: {one_line(exc, 100)}); "
            "install torch and mace-torch (with torch>=2.6 TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 must be set "
            "before torch is imported)",
        ) from None


def _load_module(resolved: str) -> Any:
    """The torch module for a resolved model (cached per process); do not modify it."""
    with _lock:
        key = _file_key(resolved) if _is_path(resolved) else ("foundation", resolved)
        if key in _module_cache:
            return _module_cache[key]
        _import_mace()
        if _is_path(resolved):
            module = _torch_load(resolved)
        else:
            module = _foundation_raw(resolved)
        _check_module(module, resolved)
        module.eval()
        _module_cache[key] = module
        return module


def _element_symbols(module: Any) -> tuple[str, ...]:
    from ase.data import chemical_symbols

    try:
        zs = [int(z) for z in module.atomic_numbers]
        return tuple(chemical_symbols[z] for z in zs)
    except Exception as exc:
        raise InvalidInput("model", f"model has unreadable atomic_numbers ({one_line(exc, 80)}); must be {_ALLOWED_MODELS}"
        ) from None


def _module_dtype(module: Any) -> str:
    for p in module.parameters():
        if p.is_floating_point():
            return str(p.dtype).replace("torch.", "")
    return "float64"


def model_summary(model: str) -> ModelSummary:
    """Elements, cutoff, number of interactions and stored dtype of a model."""
    resolved = resolve_model(model)
    module = _load_module(resolved)
    try:
        r_max = float(module.r_max)
        n_int = int(module.num_interactions)
    except Exception as exc:
        raise InvalidInput("model", f"'{resolved}' has unreadable r_max/num_interactions ({one_line(exc, 80)})"
        ) from None
    return ModelSummary(
        path=resolved,
        elements=_element_symbols(module),
        r_max_A=r_max,
        num_interactions=n_int,
        dtype=_module_dtype(module),
    )


def _check_device(device: Any) -> str:
    allowed = "must be 'cpu' or 'cuda' (or 'cuda:N'; cuda only where torch sees a GPU)"
    if not isinstance(device, str):
        raise InvalidInput("device", f"{allowed}; got {device!r}")
    dev = device.strip().lower()
    if dev == "cpu":
        return dev
    if not (dev == "cuda" or dev.startswith("cuda:")):
        raise InvalidInput("device", f"{allowed}; got {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise InvalidInput("device", f"{device!r} asked for but torch sees no GPU here; use 'cpu'")
    if ":" in dev:
        idx_text = dev.split(":", 1)[1]
        if not idx_text.isdigit() or int(idx_text) >= torch.cuda.device_count():
            raise InvalidInput("device", f"{device!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)"
            )
    return dev


def _check_dtype(dtype: Any) -> str:
    if dtype not in DTYPES:
        raise InvalidInput("dtype", f"must be 'float32' or 'float64'; got {dtype!r}")
    return dtype


def _set_threads(num_threads: Any) -> None:
    if num_threads is None:
        return
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise InvalidInput("num_threads", f"must be a positive integer; got {num_threads!r}")
    import torch

    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


def load_calculator(
    model: str = DEFAULT_MODEL,
    *,
    device: str = "cpu",
    dtype: str = "float64",
    num_threads: int | None = None,
):
    """A MACECalculator for ``model`` (cached per resolved model, device and dtype).

    The cached calculator is shared: attach it to one Atoms object at a time
    (ASE calculators keep the results of the last structure they saw).
    """
    dtype = _check_dtype(dtype)
    resolved = resolve_model(model)
    _import_mace()
    device = _check_device(device)
    _set_threads(num_threads)
    with _lock:
        fkey = _file_key(resolved) if _is_path(resolved) else ("foundation", resolved)
        key = (fkey, device, dtype)
        calc = _calc_cache.get(key)
        if calc is not None:
            return calc
        module = _load_module(resolved)
        try:
            private = copy.deepcopy(module)  # the calculator converts dtype in place
        except Exception:
            private = _torch_load(resolved) if _is_path(resolved) else _foundation_raw(resolved)
        from mace.calculators import MACECalculator

        try:
            calc = MACECalculator(models=[private], device=device, default_dtype=dtype)
        except InvalidInput:
            raise
        except Exception as exc:
            raise InvalidInput("model",
                f"mace-torch could not build a calculator from '{resolved}' "
                f"({type(exc).__name__}: {one_line(exc, 100)}); must be {_ALLOWED_MODELS}",
            ) from None
        _calc_cache[key] = calc
        return calc


def check_elements(model: str, symbols: Iterable[str]) -> None:
    """InvalidInput("model") if any of ``symbols`` is not covered by the model."""
    summary = model_summary(model)
    have = set(summary.elements)
    missing = sorted({str(s) for s in symbols} - have)
    if missing:
        name = "default" if summary.path == str(default_model_path()) else summary.path
        raise InvalidInput(
            "model",
            f"model '{name}' has no parameters for element(s) {', '.join(missing)}; "
            f"it covers {', '.join(summary.elements)}",
        )


def clear_caches() -> None:
    """Forget loaded models and calculators (tests, or after a model file changed)."""
    with _lock:
        _module_cache.clear()
        _calc_cache.clear()


# ---- batched force evaluation ----------------------------------------------------------------
def _is_batchable_mace(calc) -> bool:
    return (type(calc).__name__ == "MACECalculator" and getattr(calc, "model_type", "") == "MACE"
            and not getattr(calc, "use_compile", False) and hasattr(calc, "models") and hasattr(calc, "z_table"))


def mace_batch_forces(calc, structures: Sequence[Atoms]) -> list[np.ndarray]:
    """Forces of several structures from one model call per committee member (mace's own batching).

    Builds one ``AtomicData`` graph per structure exactly as ``MACECalculator`` does and joins them
    into a ``torch_geometric`` batch; the model returns forces for all atoms of the batch.
    """
    import torch
    from mace import data as mace_data
    from mace.tools import torch_geometric, torch_tools

    arrays_keys = dict(calc.arrays_keys)
    arrays_keys.update({calc.charges_key: "charges"})
    keyspec = mace_data.KeySpecification(info_keys=calc.info_keys, arrays_keys=arrays_keys)
    with torch_tools.default_dtype(calc.default_dtype):
        graphs = [mace_data.AtomicData.from_config(mace_data.config_from_atoms(a, key_specification=keyspec, head_name=calc.head),
                                                   z_table=calc.z_table, cutoff=calc.r_max, heads=calc.available_heads)
                  for a in structures]
    batch = torch_geometric.Batch.from_data_list(graphs).to(calc.device)
    members = []
    for model in calc.models:
        b = batch.clone()
        dtype = next(model.parameters()).dtype
        for key in b.keys:
            value = b[key]
            if torch.is_tensor(value) and torch.is_floating_point(value):
                b[key] = value.to(dtype=dtype)
        out = model(b.to_dict(), compute_stress=False, training=False)
        members.append(out["forces"].detach())
    forces = torch.stack(members).mean(dim=0).cpu().numpy().astype(float) * (calc.energy_units_to_eV / calc.length_units_to_A)
    ptr = batch["ptr"].cpu().numpy()
    return [forces[ptr[k] : ptr[k + 1]].copy() for k in range(len(structures))]


def evaluate_forces(calc, structures: Sequence[Atoms], batch_size: int = 1) -> list[np.ndarray]:
    """Forces of ``structures``: batches of ``batch_size`` per MACE model call, else one ASE call each."""
    if batch_size > 1 and _is_batchable_mace(calc):
        out: list[np.ndarray] = []
        for start in range(0, len(structures), batch_size):
            out.extend(mace_batch_forces(calc, structures[start : start + batch_size]))
        return out
    out = []
    for atoms in structures:
        atoms.calc = calc
        out.append(np.array(atoms.get_forces(), float))
        atoms.calc = None
    return out
