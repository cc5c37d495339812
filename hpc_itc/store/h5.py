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


# ---- stage checksums ------------------------------------------------------------------------------
CHECKSUM_ATTR = "content_sha256"
_CHUNK_BYTES = 64 * 2**20



# how and when a stage was written, not what it holds: left out, so both writers give one checksum
_BOOKKEEPING = {CHECKSUM_ATTR, "writer", "wall_seconds", "finished"}


def _value_bytes(value: Any) -> bytes:
    arr = np.asarray(value)
    if arr.dtype.kind in "OSU":  # text: by content, whether stored as fixed or variable-length strings
        return "\x00".join(x.decode() if isinstance(x, bytes) else str(x) for x in arr.ravel()).encode() + f"|{arr.shape}".encode()
    return f"{arr.dtype.str}|{arr.shape}|".encode() + np.ascontiguousarray(arr).tobytes()


def group_digest(group: h5py.Group) -> str:
    """sha256 over every dataset (path, dtype, shape, bytes, read in chunks) and attribute of ``group``,
    in name order, except the checksum itself and the group's bookkeeping (writer, wall_seconds, finished).
    Same value whichever writer (root or MPI-IO) made it."""
    import hashlib

    h = hashlib.sha256()

    def attrs(obj) -> None:
        for k in sorted(obj.attrs.keys()):
            if obj is group and k in _BOOKKEEPING:
                continue
            h.update(f"@{k}=".encode())
            h.update(_value_bytes(obj.attrs[k]))

    attrs(group)
    names: list[str] = []
    group.visit(names.append)
    for name in sorted(names):
        obj = group[name]
        h.update(f"/{name}|".encode())
        if isinstance(obj, h5py.Dataset):
            h.update(f"{obj.dtype.str}|{obj.shape}|".encode())
            if obj.shape == ():
                h.update(_value_bytes(obj[()]))
            elif obj.shape and obj.size:  # (an empty or null dataset: its dtype and shape say it all)
                step = max(1, _CHUNK_BYTES // max(1, obj.dtype.itemsize * (obj.size // obj.shape[0])))
                for start in range(0, obj.shape[0], step):
                    h.update(_value_bytes(obj[start : start + step]))
        attrs(obj)
    return h.hexdigest()


def seal_group(group: h5py.Group) -> None:
    """Store the group's checksum (the last attribute written before the stage's atomic rename)."""
    group.attrs[CHECKSUM_ATTR] = group_digest(group)


def verify_group(f: h5py.File, name: str) -> str | None:
    """None when stage group ``name`` matches its checksum; otherwise what is wrong, in words.

    A group written before checksums existed has no checksum: "unverified" (reported, not refused).
    A file damaged in its HDF5 metadata fails while being read: reported as unreadable.
    """
    try:
        if name not in f:
            return "missing"
        group = f[name]
        stored = group.attrs.get(CHECKSUM_ATTR)
        if stored is None:
            return "unverified (written without a checksum by an older hpc_itc)"
        stored = stored.decode() if isinstance(stored, bytes) else str(stored)
        return None if group_digest(group) == stored else "fails its checksum (the data changed after it was written)"
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError, ValueError on damaged files
        return f"unreadable ({type(exc).__name__}: {str(exc)[:80]})"
