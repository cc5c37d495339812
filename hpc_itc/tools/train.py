"""``python -m hpc_itc train TRAIN.toml``: a thin, documented layer over mace-torch's trainer.

With ``[train] foundation_model`` set to a MACE model file the defaults are the
fine-tuning recipe of the seed paper (the authors' ``mace_run_train`` settings:
universal loss, energy/forces/stress weights 1/10/1, E0s average, lr 1e-3,
rms_forces_scaling, batch 12, 1000 epochs, EMA 0.999, amsgrad, float64,
5 % validation); ``multihead_replay = true`` adds mace-torch's multi-head replay
fine-tuning (the foundation's own data replayed through ``pt_train_file``).
Without a foundation model a model is trained from scratch with the
architecture in ``[model]``.  Every setting is overridable, and ``extra_args``
passes anything else straight to ``mace_run_train``.  ``--dry-run`` prints the
command without running it.

Data preparation (written to ``<work_dir>/data/`` and recorded in ``data.json`` there, only when
one of these is set): ``valid_split = "config_type"`` takes the validation configurations from
each ``config_type`` in proportion (mace's random split can leave a small family out of
validation); ``[recipe] force_cap_eV_A`` weights a configuration whose RMS reference force
exceeds the cap by (cap / RMS)^2 (mace's per-configuration ``config_weight``), so a few
compressed, far-from-equilibrium configurations do not dominate the force loss.

``[committee] size = N`` trains N members for error bars on h (``[mlip] committee`` of a run):
member k (1..N) has seed ``seed + k``, its own validation split and, with
``subsample_fraction < 1``, its own random subset of each ``config_type`` of the training data;
it is written as ``<model_out stem>_<k>.model``.  ``--member K`` trains one member (one Slurm
array task per member: ``jobscripts/train_committee.sbatch``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpc_itc.config import Key, check_tables, read_toml, resolve_path
from hpc_itc.errors import InputError

# the seed paper's fine-tuning recipe (its authors' mace_run_train settings)
PAPER_FINETUNE = {
    "loss": "universal", "energy_weight": 1.0, "forces_weight": 10.0, "stress_weight": 1.0, "E0s": "average",
    "lr": 1e-3, "scaling": "rms_forces_scaling", "batch_size": 12, "max_num_epochs": 1000, "ema_decay": 0.999,
    "amsgrad": True, "default_dtype": "float64", "valid_fraction": 0.05,
}
SCRATCH = {
    "loss": "stress", "energy_weight": 1.0, "forces_weight": 10.0, "stress_weight": 100.0, "E0s": "average",
    "lr": 1e-2, "scaling": "rms_forces_scaling", "batch_size": 4, "max_num_epochs": 100, "ema_decay": 0.99,
    "amsgrad": True, "default_dtype": "float64", "valid_fraction": 0.1,
}

SCHEMA: dict[str, dict[str, Key]] = {
    "train": {
        "train_file": Key("str", "", "Training data (extxyz), relative to this file's folder.", required=True),
        "valid_file": Key("str", "", "Validation data; empty: valid_fraction of the training data."),
        "test_file": Key("str", "", "Test data evaluated at the end; empty: none."),
        "foundation_model": Key("str", "", "MACE model file to fine-tune (e.g. MACE-MPA-0 medium); empty: train from scratch."),
        "multihead_replay": Key("bool", False, "Multi-head replay fine-tuning (mace-torch multiheads_finetuning): needs foundation_model and pt_train_file."),
        "pt_train_file": Key("str", "", "Replay data of the foundation model for multihead_replay (extxyz)."),
        "name": Key("str", "model", "Run name: the trained model is <work_dir>/<name>.model."),
        "work_dir": Key("str", "training", "Folder for logs, checkpoints and the model (relative to this file's folder)."),
        "model_out": Key("str", "", "Where to copy the trained model; empty: leave it in work_dir."),
        "seed": Key("int", 123, "Random seed.", minimum=0),
        "device": Key("str", "cpu", "Training device.", choices=("cpu", "cuda")),
        "energy_key": Key("str", "REF_energy", "Energy label key (eV)."),
        "forces_key": Key("str", "REF_forces", "Forces label key (eV/Å)."),
        "stress_key": Key("str", "REF_stress", "Stress label key (eV/Å^3)."),
        "valid_split": Key("str", "random", "'random': mace's valid_fraction split; 'config_type': valid_fraction of each config_type (at least one each), seeded by seed, written to work_dir/data/.", choices=("random", "config_type")),
        "extra_args": Key("str_list", [], "More mace_run_train arguments, passed as given (e.g. [\"--patience\", \"20\"]).", min_length=0, unique=False),
    },
    "recipe": {
        "loss": Key("str", "", "Loss; default: 'universal' when fine-tuning (paper), 'stress' from scratch."),
        "energy_weight": Key("float", -1.0, "Energy weight; default 1.", minimum=-1.0),
        "forces_weight": Key("float", -1.0, "Forces weight; default 10.", minimum=-1.0),
        "stress_weight": Key("float", -1.0, "Stress weight; default 1 (fine-tune), 100 (scratch).", minimum=-1.0),
        "E0s": Key("str", "", "Isolated-atom energies: 'average', 'estimated' or a dict literal; default 'average'."),
        "lr": Key("float", -1.0, "Learning rate; default 1e-3 (fine-tune), 1e-2 (scratch).", minimum=-1.0),
        "scaling": Key("str", "", "Scaling; default rms_forces_scaling.", choices=("", "std_scaling", "rms_forces_scaling", "no_scaling")),
        "batch_size": Key("int", 0, "Batch size; default 12 (fine-tune), 4 (scratch).", minimum=0),
        "max_num_epochs": Key("int", 0, "Epochs; default 1000 (fine-tune), 100 (scratch).", minimum=0),
        "ema_decay": Key("float", -1.0, "EMA decay; default 0.999 (fine-tune), 0.99 (scratch).", minimum=-1.0, maximum=1.0),
        "amsgrad": Key("bool", True, "AMSGrad (paper: true)."),
        "default_dtype": Key("str", "float64", "Training precision.", choices=("float64", "float32")),
        "valid_fraction": Key("float", -1.0, "Validation fraction when no valid_file; default 0.05 (fine-tune), 0.1 (scratch).", minimum=-1.0, maximum=0.9),
        "force_cap_eV_A": Key("float", 0.0, "Configurations whose RMS reference force exceeds this get config_weight (cap/RMS)^2 (energy, force and stress loss); 0 = all weight 1.", unit="eV/Å", minimum=0.0),
    },
    "committee": {
        "size": Key("int", 0, "Members to train (seeds seed+1 .. seed+size, each its own validation split and subsample); 0 = one model.", minimum=0, maximum=64),
        "subsample_fraction": Key("float", 1.0, "Fraction of each config_type of the training data a member trains on (drawn with the member's seed); 1 = all.", minimum=0.1, maximum=1.0),
    },
    "model": {
        "hidden_irreps": Key("str", "32x0e", "From scratch: hidden irreps (ignored when fine-tuning)."),
        "r_max": Key("float", 5.0, "From scratch: cutoff radius.", unit="Å", minimum=0.0, exclusive_min=True),
        "num_interactions": Key("int", 2, "From scratch: message-passing layers.", minimum=1),
        "correlation": Key("int", 3, "From scratch: correlation order.", minimum=1),
        "max_ell": Key("int", 2, "From scratch: highest l of spherical harmonics.", minimum=0),
    },
}


def load(path: str) -> tuple[dict[str, dict[str, Any]], Path]:
    p = Path(path)
    raw = read_toml(p, "a TOML training input")
    # an empty string means "not set" for the optional paths and recipe strings
    raw = {sec: {k: v for k, v in (tab.items() if isinstance(tab, dict) else []) if v != ""} if isinstance(tab, dict) else tab
           for sec, tab in raw.items()}
    data = check_tables(raw, SCHEMA)
    base = p.resolve().parent
    t = data["train"]
    for key in ("train_file", "valid_file", "test_file", "foundation_model", "pt_train_file"):
        if t[key] and not resolve_path(base, t[key]).is_file():
            raise InputError(f"train.{key}", f"file '{t[key]}' not found (relative paths are relative to the input file's folder)")
    if t["multihead_replay"] and not (t["foundation_model"] and t["pt_train_file"]):
        raise InputError("train.multihead_replay", "needs train.foundation_model and train.pt_train_file")
    return data, base


def recipe(data: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The effective recipe: the paper's (fine-tune) or the scratch defaults, then the user's overrides."""
    base = dict(PAPER_FINETUNE if data["train"]["foundation_model"] else SCRATCH)
    for key, value in data["recipe"].items():
        unset = value in ("", -1.0, 0) and key not in ("amsgrad", "default_dtype")
        if not unset:
            base[key] = value
    base["amsgrad"] = data["recipe"]["amsgrad"]
    base["default_dtype"] = data["recipe"]["default_dtype"]
    return base


@dataclass(frozen=True)
class Member:
    """One model to train: the single model (index 0) or committee member ``index`` (1..size)."""

    index: int
    seed: int
    name: str
    work_dir: Path
    model_out: Path | None  # where the model is copied; None: left in work_dir

    @property
    def model(self) -> Path:
        return self.work_dir / f"{self.name}.model"


def members(data: dict[str, dict[str, Any]], base: Path) -> list[Member]:
    """What ``train`` trains: one model, or the ``[committee] size`` members."""
    t = data["train"]
    work = resolve_path(base, t["work_dir"])
    out = resolve_path(base, t["model_out"]) if t["model_out"] else None
    size = data["committee"]["size"]
    if size == 0:
        return [Member(0, t["seed"], t["name"], work, out)]
    return [Member(k, t["seed"] + k, f"{t['name']}_{k}", work / f"member_{k}",
                   out.with_name(f"{out.stem}_{k}{out.suffix}") if out else None) for k in range(1, size + 1)]


def needs_prepared_data(data: dict[str, dict[str, Any]]) -> bool:
    return (data["train"]["valid_split"] == "config_type" or data["committee"]["subsample_fraction"] < 1.0
            or recipe(data).get("force_cap_eV_A", 0.0) > 0.0)


def data_files(member: Member) -> tuple[Path, Path]:
    folder = member.work_dir / "data"
    return folder / "train.extxyz", folder / "valid.extxyz"


def split_and_weight(frames: list, forces_key: str, valid_fraction: float, seed: int, by_config_type: bool,
                     subsample_fraction: float, force_cap_eV_A: float) -> tuple[list[int], list[int], list[float]]:
    """(train indices, valid indices, weight of each train index) of ``frames``.

    Validation: with ``by_config_type``, ``round(valid_fraction * n)`` (at least 1 when n > 1) of each
    config_type; otherwise none here (mace splits).  Training: the rest, of which a fraction
    ``subsample_fraction`` of each config_type (at least 1) is kept.  Weight: (cap / RMS force)^2 when the
    configuration's RMS reference force exceeds ``force_cap_eV_A`` > 0, else 1.  Seeded, reproducible."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, atoms in enumerate(frames):
        groups.setdefault(str(atoms.info.get("config_type", "Default")), []).append(i)
    train: list[int] = []
    valid: list[int] = []
    for kind in sorted(groups):
        order = [int(i) for i in rng.permutation(groups[kind])]
        n_valid = max(1, round(valid_fraction * len(order))) if by_config_type and len(order) > 1 else 0
        valid += order[:n_valid]
        rest = order[n_valid:]
        train += rest[:max(1, round(subsample_fraction * len(rest)))]
    train.sort()
    valid.sort()
    weights = []
    for i in train:
        rms = float(np.sqrt(np.mean(np.asarray(frames[i].arrays[forces_key]) ** 2)))
        weights.append(min(1.0, (force_cap_eV_A / rms) ** 2) if force_cap_eV_A > 0 and rms > 0 else 1.0)
    return train, valid, weights


def prepare_data(data: dict[str, dict[str, Any]], base: Path, member: Member) -> dict[str, Any]:
    """Write the member's training (and validation) file to ``<work_dir>/data`` and ``data.json``, the record of
    which configurations went where with which weight; returns that record."""
    from ase.io import read, write

    t, r = data["train"], recipe(data)
    source = resolve_path(base, t["train_file"])
    frames = read(source, ":")
    for i, atoms in enumerate(frames):
        if t["forces_key"] not in atoms.arrays:
            raise InputError("train.forces_key", f"configuration {i} of '{source}' has no per-atom array '{t['forces_key']}'")
    by_type = t["valid_split"] == "config_type" and not t["valid_file"]
    train, valid, weights = split_and_weight(frames, t["forces_key"], r["valid_fraction"], member.seed, by_type,
                                             data["committee"]["subsample_fraction"], r.get("force_cap_eV_A", 0.0))
    train_file, valid_file = data_files(member)
    train_file.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for i, w in zip(train, weights):
        atoms = frames[i].copy()
        atoms.info["config_weight"] = float(atoms.info.get("config_weight", 1.0)) * w
        out.append(atoms)
    write(train_file, out, format="extxyz")
    if by_type:
        write(valid_file, [frames[i] for i in valid], format="extxyz")
    record = {"source": str(source), "seed": member.seed, "train_indices": train, "valid_indices": valid if by_type else None,
              "config_weight": weights, "force_cap_eV_A": r.get("force_cap_eV_A", 0.0),
              "subsample_fraction": data["committee"]["subsample_fraction"], "valid_split": t["valid_split"]}
    (train_file.parent / "data.json").write_text(json.dumps(record, indent=1))
    return record


def command(data: dict[str, dict[str, Any]], base: Path, member: Member | None = None) -> list[str]:
    """The mace_run_train argument list (of ``member``; default: the first of :func:`members`)."""
    t = data["train"]
    r = recipe(data)
    member = member or members(data, base)[0]
    prepared = needs_prepared_data(data)
    train_file, valid_file = data_files(member) if prepared else (resolve_path(base, t["train_file"]), None)
    args = ["mace_run_train", "--name", member.name, "--seed", str(member.seed), "--work_dir", str(member.work_dir),
            "--train_file", str(train_file), "--device", t["device"],
            "--energy_key", t["energy_key"], "--forces_key", t["forces_key"], "--stress_key", t["stress_key"],
            "--loss", r["loss"], "--energy_weight", str(r["energy_weight"]), "--forces_weight", str(r["forces_weight"]),
            "--stress_weight", str(r["stress_weight"]), "--E0s", str(r["E0s"]), "--lr", str(r["lr"]),
            "--scaling", r["scaling"], "--batch_size", str(r["batch_size"]), "--max_num_epochs", str(r["max_num_epochs"]),
            "--ema", "--ema_decay", str(r["ema_decay"]), "--default_dtype", r["default_dtype"], "--save_cpu"]
    if r["amsgrad"]:
        args.append("--amsgrad")
    if t["valid_file"]:
        args += ["--valid_file", str(resolve_path(base, t["valid_file"]))]
    elif prepared and t["valid_split"] == "config_type":
        args += ["--valid_file", str(valid_file)]
    else:
        args += ["--valid_fraction", str(r["valid_fraction"])]
    if t["test_file"]:
        args += ["--test_file", str(resolve_path(base, t["test_file"]))]
    if t["foundation_model"]:
        args += ["--foundation_model", str(resolve_path(base, t["foundation_model"]))]
        if t["multihead_replay"]:
            args += ["--multiheads_finetuning", "True", "--pt_train_file", str(resolve_path(base, t["pt_train_file"]))]
        else:
            args += ["--multiheads_finetuning", "False"]
    else:
        m = data["model"]
        args += ["--model", "MACE", "--hidden_irreps", m["hidden_irreps"], "--r_max", str(m["r_max"]),
                 "--num_interactions", str(m["num_interactions"]), "--correlation", str(m["correlation"]),
                 "--max_ell", str(m["max_ell"])]
    return args + list(t["extra_args"])


def main_train(path: str, dry_run: bool = False, member: int | None = None) -> int:
    data, base = load(path)
    todo = members(data, base)
    if member is not None:
        chosen = [m for m in todo if m.index == member]
        if not chosen:
            allowed = f"1..{len(todo)} ([committee] size)" if data["committee"]["size"] else "none: [committee] size is 0"
            raise InputError("--member", f"got {member}; allowed: {allowed}")
        todo = chosen
    for m in todo:
        args = command(data, base, m)
        print(shlex.join(args))
        if dry_run:
            continue
        if shutil.which(args[0]) is None:
            raise InputError("train", "mace_run_train not found on PATH; install mace-torch")
        if needs_prepared_data(data):
            rec = prepare_data(data, base, m)
            capped = sum(w < 1.0 for w in rec["config_weight"])
            print(f"data: {len(rec['train_indices'])} training configurations ({capped} weighted below 1 by the force cap)"
                  + (f", {len(rec['valid_indices'])} validation by config_type" if rec["valid_indices"] is not None else "")
                  + f" -> {data_files(m)[0].parent}")
        env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
        proc = subprocess.run(args, env=env)
        if proc.returncode != 0:
            print(f"error: mace_run_train exited with status {proc.returncode}; see the log in {m.work_dir}/logs", file=sys.stderr)
            return 1
        model = m.model
        if m.model_out:
            m.model_out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model, m.model_out)
            model = m.model_out
        print(f"model: {model}  (check it: python -m hpc_itc evaluate {model} DATA.extxyz)")
    return 0
