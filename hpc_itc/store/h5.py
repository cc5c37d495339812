"""Small HDF5 helpers every store module shares: datasets with units, string lists, durable renames."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np


def write_array(group: h5py.Group, name: str, data: Any, unit: str | None = None, doc: str | None = None) -> h5py.Dataset:
    """Create a dataset with optional ``unit`` and ``doc`` attributes."""
    arr = np.asarray(data)
    if arr.dtype.kind == "U":
        arr = arr.astype("S")
    ds = group.create_dataset(name, data=arr)
    if unit is not None:
        ds.attrs["unit"] = unit
    if doc is not None:
        ds.attrs["doc"] = doc
    return ds


def write_str_list(obj: h5py.Group | h5py.Dataset, name: str, items) -> None:
    """Attribute ``name``: a list of strings (UTF-8, variable length; may be empty), e.g. warnings."""
    obj.attrs.create(name, data=np.array(list(items), dtype=object), dtype=h5py.string_dtype())


def read_str_list(obj: h5py.Group | h5py.Dataset, name: str) -> list[str]:
    """Attribute ``name`` written by :func:`write_str_list` ([] when absent)."""
    return [x.decode() if isinstance(x, bytes) else str(x) for x in obj.attrs.get(name, [])]


def read_str_array(ds: h5py.Dataset) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else str(x) for x in ds[()]]


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def group_complete(f: h5py.File, name: str) -> bool:
    """True when stage group ``name`` of an open results file was written to the end (attr ``complete``)."""
    return name in f and bool(f[name].attrs.get("complete", False))
