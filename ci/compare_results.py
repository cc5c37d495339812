"""Compare two hpc_itc runs of the same input: the inspect --json figures, or whole results files.

    python ci/compare_results.py json A.json B.json [--rtol 1e-9]
        every number of the two `python -m hpc_itc inspect FILE --json` summaries (ITC, radiation limits,
        rectification, overlap factor, force evaluations, ...) within rtol; integers, strings and keys equal.
        Quantities that are rounding noise by construction are compared against an absolute floor instead
        (NOISE_FLOORS: sum-rule residuals ~1e-15 eV/Å^2, |T+R-1| ~1e-9, acoustic frequencies at Gamma ~1e-7 THz):
        their last digits change with the order of floating-point operations, e.g. with the rank a task ran on.
        rectification_percent, a difference of the two directions' ITC, gets the tolerance that theirs implies
        (200 rtol percentage points).
    python ci/compare_results.py h5 A.h5 B.h5 [--rtol 1e-6]
        the same groups, datasets (shape, dtype) and attributes; numbers within rtol x max(1, largest |value|
        of the dataset); integers, booleans and strings equal.  Run-specific attributes (wall_seconds,
        finished, created, writer) are not compared; the writer of each stage is printed.

Exit status 0 when they agree, 1 with one line per difference otherwise.  Used by ci/cluster_checks.sh.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

RUN_SPECIFIC_JSON = {"wall_seconds", "hpc_itc_version", "checkpointed_tasks"}
# content_sha256 is a checksum of the stage's bytes: files that agree to rounding (another rank count, another
# writer) differ in it; each file's own checksum is checked by `inspect --verify` (cluster_checks.sh)
RUN_SPECIFIC_ATTRS = {"wall_seconds", "finished", "created", "writer", "hpc_itc_version", "content_sha256"}
# absolute tolerances of summary keys that measure rounding noise (a path containing the key)
NOISE_FLOORS = {"asr_violation": 1e-9, "max_abs_T_plus_R_minus_1": 1e-8, "caroli_max_abs_diff": 1e-8, "phonons_THz": 1e-6}


def compare_json(a, b, rtol: float, path: str = "") -> list[str]:
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key in RUN_SPECIFIC_JSON:
                continue
            if key not in a or key not in b:
                out.append(f"{path}/{key}: only in {'B' if key not in a else 'A'}")
                continue
            out += compare_json(a[key], b[key], rtol, f"{path}/{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        for k, (x, y) in enumerate(zip(a, b)):
            out += compare_json(x, y, rtol, f"{path}[{k}]")
        return out
    if isinstance(a, bool) or isinstance(b, bool) or not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return [] if a == b else [f"{path}: {a!r} vs {b!r}"]
    if isinstance(a, int) and isinstance(b, int):
        return [] if a == b else [f"{path}: {a} vs {b}"]
    if math.isnan(a) and math.isnan(b):
        return []
    floor = max([v for k, v in NOISE_FLOORS.items() if k in path], default=0.0)
    if "rectification_percent" in path:
        # 100 |h_lr - h_rl| / mean: a difference of two close numbers, so its tolerance follows from theirs,
        # 100 x 2 rtol in percentage points (not rtol of its own value, which is 100/rectification times finer)
        floor = max(floor, 200.0 * rtol)
    return [] if abs(a - b) <= max(rtol * max(abs(a), abs(b)), floor) else [f"{path}: {a!r} vs {b!r} (relative {abs(a - b) / max(abs(a), abs(b)):.1e} > {rtol:g})"]


def compare_h5(path_a: str, path_b: str, rtol: float) -> tuple[list[str], dict[str, tuple]]:
    import h5py

    out: list[str] = []
    writers: dict[str, tuple] = {}

    def items(f):
        found = {"/": f}
        f.visititems(lambda name, obj: found.__setitem__(name, obj))
        return found

    def same_value(x, y) -> bool:
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            return False
        if x.dtype.kind in "fc" or y.dtype.kind in "fc":
            scale = float(np.nanmax(np.abs(y[np.isfinite(y)]))) if y.size and np.isfinite(y).any() else 0.0
            return bool(np.allclose(x, y, rtol=0.0, atol=rtol * max(1.0, scale), equal_nan=True))
        return bool(np.array_equal(x, y))

    with h5py.File(path_a, "r") as fa, h5py.File(path_b, "r") as fb:
        ia, ib = items(fa), items(fb)
        for name in sorted(set(ia) | set(ib)):
            if name not in ia or name not in ib:
                out.append(f"{name}: only in {'B' if name not in ia else 'A'}")
                continue
            oa, ob = ia[name], ib[name]
            if isinstance(oa, h5py.Dataset) != isinstance(ob, h5py.Dataset):
                out.append(f"{name}: a dataset in one file, a group in the other")
                continue
            if isinstance(oa, h5py.Dataset):
                if oa.shape != ob.shape or oa.dtype != ob.dtype:
                    out.append(f"{name}: shape/dtype {oa.shape} {oa.dtype} vs {ob.shape} {ob.dtype}")
                elif not same_value(oa[()], ob[()]):
                    diff = ""
                    if oa.dtype.kind in "fc":
                        d = np.abs(oa[()] - ob[()])
                        diff = f" (largest difference {np.nanmax(d):.3e}, dataset scale {np.nanmax(np.abs(ob[()])):.3e})"
                    out.append(f"{name}: values differ{diff}")
            keys_a = set(oa.attrs) - RUN_SPECIFIC_ATTRS
            keys_b = set(ob.attrs) - RUN_SPECIFIC_ATTRS
            if keys_a != keys_b:
                out.append(f"{name}: attributes {sorted(keys_a ^ keys_b)} only in one file")
            for key in sorted(keys_a & keys_b):
                if key == "input_toml":  # run.output differs between the runs (not hashed); the hash is compared
                    continue
                if not same_value(oa.attrs[key], ob.attrs[key]):
                    out.append(f"{name}: attribute {key}: {oa.attrs[key]!r} vs {ob.attrs[key]!r}")
            if "writer" in oa.attrs or "writer" in ob.attrs:
                writers[name] = (oa.attrs.get("writer"), ob.attrs.get("writer"))
    return out, writers


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=("json", "h5"))
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rtol", type=float, default=1e-9)
    args = ap.parse_args()
    if args.kind == "json":
        with open(args.a) as fa, open(args.b) as fb:
            a, b = json.load(fa), json.load(fb)
        problems = compare_json(a, b, args.rtol)
        if not a.get("stages_complete"):
            problems.append("no stage complete in A")
        print(f"compared inspect --json: {args.a} vs {args.b}: stages {a.get('stages_complete')}, itc {a.get('itc_MW_m2K')}")
    else:
        problems, writers = compare_h5(args.a, args.b, args.rtol)
        print(f"compared results files {args.a} vs {args.b}; writer per stage (A, B): "
              + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(writers.items())))
    for p in problems:
        print(f"  DIFFERENT {p}")
    if problems:
        print(f"{len(problems)} difference(s) beyond rtol {args.rtol:g}")
        return 1
    print(f"agree within rtol {args.rtol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
