"""Parameter sweeps run as job arrays: one array task computes one point into its own results file.

A sweep input is a normal run input plus a ``[sweep]`` table that maps dotted input keys to lists of
values, and two optional plain keys::

    [sweep]
    mode = "product"                      # "product" (cartesian product, default) or "zip" (i-th of each)
    name = "nfrac"                        # folder of the points (default: stem of run.output)
    "structure.n_fraction" = [0.0, 1.0]
    "transport.q_mesh" = [[10, 10, 10], [20, 20, 20]]

Points are numbered 0..N-1; in "product" mode the last key varies fastest (``itertools.product`` over
the keys in file order). Point ``i`` gets its own run input and results file in
``<folder of run.output>/<name>/point_<iii>.toml`` and ``point_<iii>.h5`` (relative model paths and
``cohp.lobster_dir`` are made absolute, so the point input runs from its own folder). Every point is
validated with :func:`hpc_itc.config.validate` before anything is written.

    python -m hpc_itc sweep-size SWEEP.toml            number of points N (for sbatch --array=0-$((N-1)))
    python -m hpc_itc sweep-point SWEEP.toml [INDEX]   write point INDEX's input and run it (INDEX
                                                       defaults to $SLURM_ARRAY_TASK_ID); works under srun
    python -m hpc_itc sweep-collect SWEEP.toml --out DIR   sweep.csv, sweep.json, sweep_itc.png

``python -m hpc_itc.tools.sweep sweep-size ...`` (same arguments) does the same.
"""

from __future__ import annotations

import argparse
import copy
import csv
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpc_itc.errors import InputError

MODES = ("product", "zip")
OPTIONS = ("mode", "name")
#: keys that a sweep may not vary: the driver makes run.output unique per point
FORBIDDEN = ("run.output",)


@dataclass
class Sweep:
    """A parsed sweep input."""

    source: Path  # the sweep TOML
    base: dict[str, Any]  # the run input without [sweep]
    params: dict[str, list[Any]]  # dotted key -> values, file order
    mode: str
    name: str
    folder: Path  # where the point inputs and results go

    def points(self) -> list[tuple[int, dict[str, Any]]]:
        keys = list(self.params)
        if self.mode == "zip":
            combos = zip(*self.params.values())
        else:
            combos = itertools.product(*self.params.values())
        return [(i, dict(zip(keys, combo))) for i, combo in enumerate(combos)]

    def __len__(self) -> int:
        return len(self.points())

    def point_input(self, index: int) -> Path:
        return self.folder / f"point_{index:03d}.toml"

    def point_output(self, index: int) -> Path:
        return self.folder / f"point_{index:03d}.h5"

    def point_raw(self, index: int, overrides: dict[str, Any]) -> dict[str, Any]:
        """The run input of one point, as a TOML document meant to live in :attr:`folder`."""
        raw = copy.deepcopy(self.base)
        for dotted, value in overrides.items():
            section, key = dotted.split(".", 1)
            raw.setdefault(section, {})[key] = copy.deepcopy(value)
        raw.setdefault("run", {})["output"] = self.point_output(index).name
        base_dir = self.source.parent
        mlip = raw.get("mlip", {})
        model = mlip.get("model")
        if isinstance(model, str) and model and not Path(model).is_absolute() and (base_dir / model).exists():
            mlip["model"] = str((base_dir / model).resolve())
        cohp = raw.get("cohp", {})
        lob = cohp.get("lobster_dir")
        if isinstance(lob, str) and lob and not Path(lob).expanduser().is_absolute():
            cohp["lobster_dir"] = str((base_dir / lob).resolve())
        return raw


def _label(value: Any) -> str:
    if isinstance(value, list):
        return "x".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def load(path: str | Path) -> Sweep:
    """Read a sweep input; check the [sweep] table and every point (InputError on any problem)."""
    from hpc_itc import config

    path = Path(path)
    raw = config.read_toml(path, "a sweep TOML input")
    table = raw.pop("sweep", None)
    if not isinstance(table, dict) or not table:
        raise InputError("sweep", "a sweep input needs a [sweep] table mapping dotted keys to lists of values, e.g. \"structure.n_fraction\" = [0.0, 1.0]")
    mode = table.get("mode", "product")
    if mode not in MODES:
        raise InputError("sweep.mode", f"got {mode!r}; allowed: one of {', '.join(map(repr, MODES))}")
    params: dict[str, list[Any]] = {}
    for key, values in table.items():
        if key in OPTIONS:
            continue
        section, _, name = key.partition(".")
        if section not in config.SCHEMA or name not in config.SCHEMA[section]:
            allowed = "mode, name, or a dotted input key such as structure.n_fraction, transport.q_mesh, transport.temperatures_K"
            if section in config.SCHEMA:
                allowed = f"a key of [{section}]: " + ", ".join(f"{section}.{k}" for k in config.SCHEMA[section])
            raise InputError(key, f"[sweep]: unknown input key; allowed: {allowed}")
        if key in FORBIDDEN:
            raise InputError(key, "[sweep]: cannot be swept (each point writes its own results file); allowed: any other input key")
        if not isinstance(values, list) or not values:
            raise InputError(key, f"[sweep]: got {values!r}; allowed: a non-empty list of values (a list of lists for list-valued keys)")
        params[key] = values
    if not params:
        raise InputError("sweep", "the [sweep] table names no input key to vary; add e.g. \"structure.n_fraction\" = [0.0, 1.0]")
    if mode == "zip":
        lengths = {k: len(v) for k, v in params.items()}
        if len(set(lengths.values())) > 1:
            raise InputError("sweep.mode", f"'zip' needs lists of one length; got {', '.join(f'{k}: {n}' for k, n in lengths.items())}; allowed: equal lengths, or mode = \"product\"")
    name = table.get("name")
    if name is None:
        out = raw.get("run", {}).get("output", config.SCHEMA["run"]["output"].default)
        name = Path(str(out)).stem if isinstance(out, str) else "sweep"
    if not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name or name in (".", ".."):
        raise InputError("sweep.name", f"got {name!r}; allowed: a folder name (no slashes)")
    out_rel = raw.get("run", {}).get("output", config.SCHEMA["run"]["output"].default)
    out_rel = out_rel if isinstance(out_rel, str) and out_rel.strip() else "results.h5"
    folder = (path.resolve().parent / Path(out_rel).expanduser()).parent / name
    sweep = Sweep(source=path.resolve(), base=raw, params=params, mode=mode, name=name, folder=folder.resolve())
    for index, overrides in sweep.points():
        point_raw = sweep.point_raw(index, overrides)
        try:
            config.validate(point_raw, source=sweep.point_input(index), base_dir=sweep.folder)
        except InputError as exc:
            where = ", ".join(f"{k} = {_label(v)}" for k, v in overrides.items())
            raise InputError(exc.key, f"{exc.message} (sweep point {index}: {where})") from None
    return sweep


def expand(sweep_input: str | Path | Sweep) -> list[tuple[int, dict[str, Any]]]:
    """(index, overrides) of every point of a sweep input (a path or a loaded :class:`Sweep`)."""
    sweep = sweep_input if isinstance(sweep_input, Sweep) else load(sweep_input)
    return sweep.points()


def _index_from(index: int | str | None, n: int) -> int:
    if index is None:
        env = os.environ.get("SLURM_ARRAY_TASK_ID")
        if env is None:
            raise InputError("index", "give the point index, or run inside a Slurm array task (SLURM_ARRAY_TASK_ID)")
        index = env
    try:
        value = int(index)
    except (TypeError, ValueError):
        raise InputError("index", f"got {index!r}; allowed: an integer 0..{n - 1}") from None
    if not 0 <= value < n:
        raise InputError("index", f"got {value}; allowed: 0..{n - 1} (the sweep has {n} points)")
    return value


def write_point_input(sweep: Sweep, index: int) -> Path:
    """Write point ``index``'s run input (atomically, only when it changed) and return its path."""
    import tomli_w

    overrides = dict(sweep.points()[index][1])
    text = f"# sweep point {index} of {sweep.source}\n# " + ", ".join(f"{k} = {_label(v)}" for k, v in overrides.items()) + "\n"
    text += tomli_w.dumps(sweep.point_raw(index, overrides))
    target = sweep.point_input(index)
    if target.is_file() and target.read_text() == text:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
    return target


def main_point(sweep_path: str, index: int | str | None = None) -> int:
    """sweep-point: write the point's run input next to its results and run it through the driver."""
    from hpc_itc.driver import run
    from hpc_itc.parallel import world

    sweep = load(sweep_path)
    i = _index_from(index, len(sweep))
    comm = world()
    target = sweep.point_input(i)
    if comm.rank == 0:
        write_point_input(sweep, i)
    comm.barrier()
    return run(str(target))


def main_size(sweep_path: str) -> int:
    print(len(load(sweep_path)))
    return 0


def _point_row(sweep: Sweep, index: int, overrides: dict[str, Any]) -> dict[str, Any]:
    from hpc_itc.config import requested_stages
    from hpc_itc.tools.summary import summary

    out = sweep.point_output(index)
    row: dict[str, Any] = {"index": index, "values": overrides, "results": str(out)}
    if not out.is_file():
        row["status"] = "not started"
        return row
    try:
        s = summary(out)
    except Exception as exc:  # noqa: BLE001 - a half-written or foreign file must not stop the collection
        row["status"] = f"unreadable ({type(exc).__name__})"
        return row
    # what the sweep asks for, not what the file's stored input asked for (run.stages is not hashed)
    requested = requested_stages(sweep.point_raw(index, overrides))
    missing = [st for st in requested if st not in s["stages_complete"]]
    row["status"] = "finished" if not missing else "unfinished"
    row["stages_complete"] = s["stages_complete"]
    row["stages_missing"] = missing
    if s.get("checkpointed_tasks"):
        row["checkpointed_tasks"] = s["checkpointed_tasks"]
    for key in ("input_sha256", "itc_MW_m2K", "rectification_percent", "radiation_limit_MW_m2K", "overlap_factor_per_THz", "wall_seconds"):
        if key in s:
            row[key] = s[key]
    return row


def _finite(obj: Any) -> Any:
    """NaN/inf (e.g. the rectification of two zero conductances) as null: strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def collect(sweep_path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Merge the points into sweep.csv, sweep.json and sweep_itc.png under ``out_dir``."""
    sweep = load(sweep_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [_point_row(sweep, i, o) for i, o in sweep.points()]
    doc = {"sweep": str(sweep.source), "mode": sweep.mode, "keys": list(sweep.params), "n_points": len(rows),
           "n_finished": sum(r["status"] == "finished" for r in rows), "points": rows}
    paths = {"json": out / "sweep.json", "csv": out / "sweep.csv", "png": out / "sweep_itc.png"}
    paths["json"].write_text(json.dumps(_finite(doc), indent=2, allow_nan=False) + "\n")
    # CSV: one row per point; itc per direction and temperature, rectification per temperature
    itc_cols: list[str] = []
    rect_cols: list[str] = []
    for r in rows:
        for d, per_t in r.get("itc_MW_m2K", {}).items():
            for t in per_t:
                c = f"itc_{d}_{t}K_MW_m2K"
                if c not in itc_cols:
                    itc_cols.append(c)
        for t in r.get("rectification_percent", {}):
            c = f"rectification_{t}K_percent"
            if c not in rect_cols:
                rect_cols.append(c)
    header = ["index", "status", *sweep.params, *itc_cols, *rect_cols, "overlap_factor_per_THz", "stages_missing", "results"]
    with paths["csv"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            cells = {"index": r["index"], "status": r["status"], "results": r["results"],
                     "overlap_factor_per_THz": r.get("overlap_factor_per_THz", ""),
                     "stages_missing": " ".join(r.get("stages_missing", []))}
            cells.update({k: _label(v) for k, v in r["values"].items()})
            for d, per_t in r.get("itc_MW_m2K", {}).items():
                cells.update({f"itc_{d}_{t}K_MW_m2K": h for t, h in per_t.items()})
            cells.update({f"rectification_{t}K_percent": v for t, v in r.get("rectification_percent", {}).items()})
            w.writerow([cells.get(c, "") for c in header])
    _plot(sweep, rows, paths["png"])
    return paths


def _plot(sweep: Sweep, rows: list[dict[str, Any]], target: Path) -> None:
    """h vs the swept parameter: the first key with scalar numeric values is the x axis, the other
    keys label the curves; without such a key the points are placed side by side by label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def numeric(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    x_key = next((k for k, vals in sweep.params.items() if all(numeric(v) for v in vals)), None)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series: dict[str, list[tuple[float, float]]] = {}
    labels = {}
    for r in rows:
        if "itc_MW_m2K" not in r:
            continue
        vals = r["values"]
        if x_key is not None:
            x = float(vals[x_key])
            rest = ", ".join(f"{k.split('.')[-1]}={_label(v)}" for k, v in vals.items() if k != x_key)
        else:
            x = float(r["index"])
            labels[x] = "\n".join(_label(v) for v in vals.values())
            rest = ""
        for d, per_t in r["itc_MW_m2K"].items():
            for t, h in per_t.items():
                name = f"{d.replace('_', ' ')}, {float(t):g} K" + (f", {rest}" if rest else "")
                series.setdefault(name, []).append((x, h))
    for name, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
    if x_key is not None:
        ax.set_xlabel(x_key)
    else:
        ax.set_xlabel(", ".join(sweep.params))
        ax.set_xticks(list(labels), list(labels.values()))
    ax.set_ylabel("h (MW m$^{-2}$ K$^{-1}$)")
    n_done = sum(r["status"] == "finished" for r in rows)
    ax.set_title(f"{sweep.name}: {n_done} of {len(rows)} points finished")
    if series:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no finished transport stage yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    plt.close(fig)


def main_collect(sweep_path: str, out_dir: str) -> int:
    paths = collect(sweep_path, out_dir)
    doc = json.loads(paths["json"].read_text())
    print(f"{doc['n_finished']} of {doc['n_points']} points finished")
    for r in doc["points"]:
        if r["status"] != "finished":
            print(f"  point {r['index']}: {r['status']}" + (f" (missing: {', '.join(r['stages_missing'])})" if r.get("stages_missing") else ""))
    for kind, p in paths.items():
        print(f"{kind}: {p}")
    return 0


def add_subparsers(sub: Any) -> None:
    """The three subcommands, for hpc_itc.cli's parser."""
    sp = sub.add_parser("sweep-point", help="run one point of a parameter sweep (index or $SLURM_ARRAY_TASK_ID)")
    sp.add_argument("sweep")
    sp.add_argument("index", nargs="?", default=None, help="point index 0..N-1 (default: $SLURM_ARRAY_TASK_ID)")
    sc = sub.add_parser("sweep-collect", help="merge the finished points of a sweep into CSV, JSON and a figure")
    sc.add_argument("sweep")
    sc.add_argument("--out", required=True, help="folder for sweep.csv, sweep.json, sweep_itc.png")
    ss = sub.add_parser("sweep-size", help="print the number of points of a sweep")
    ss.add_argument("sweep")


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "sweep-point":
        return main_point(args.sweep, args.index)
    if args.command == "sweep-collect":
        return main_collect(args.sweep, args.out)
    if args.command == "sweep-size":
        return main_size(args.sweep)
    raise ValueError(args.command)
