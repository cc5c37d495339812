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
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def command(data: dict[str, dict[str, Any]], base: Path) -> list[str]:
    """The mace_run_train argument list."""
    t = data["train"]
    r = recipe(data)
    work = resolve_path(base, t["work_dir"])
    args = ["mace_run_train", "--name", t["name"], "--seed", str(t["seed"]), "--work_dir", str(work),
            "--train_file", str(resolve_path(base, t["train_file"])), "--device", t["device"],
            "--energy_key", t["energy_key"], "--forces_key", t["forces_key"], "--stress_key", t["stress_key"],
            "--loss", r["loss"], "--energy_weight", str(r["energy_weight"]), "--forces_weight", str(r["forces_weight"]),
            "--stress_weight", str(r["stress_weight"]), "--E0s", str(r["E0s"]), "--lr", str(r["lr"]),
            "--scaling", r["scaling"], "--batch_size", str(r["batch_size"]), "--max_num_epochs", str(r["max_num_epochs"]),
            "--ema", "--ema_decay", str(r["ema_decay"]), "--default_dtype", r["default_dtype"], "--save_cpu"]
    if r["amsgrad"]:
        args.append("--amsgrad")
    if t["valid_file"]:
        args += ["--valid_file", str(resolve_path(base, t["valid_file"]))]
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


def main_train(path: str, dry_run: bool = False) -> int:
    data, base = load(path)
    args = command(data, base)
    print(shlex.join(args))
    if dry_run:
        return 0
    if shutil.which(args[0]) is None:
        raise InputError("train", "mace_run_train not found on PATH; install mace-torch")
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    proc = subprocess.run(args, env=env)
    if proc.returncode != 0:
        print(f"error: mace_run_train exited with status {proc.returncode}; see the log in {resolve_path(base, data['train']['work_dir'])}/logs", file=sys.stderr)
        return 1
    t = data["train"]
    model = resolve_path(base, t["work_dir"]) / f"{t['name']}.model"
    if t["model_out"]:
        out = resolve_path(base, t["model_out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, out)
        model = out
    print(f"model: {model}  (check it: python -m hpc_itc evaluate {model} DATA.extxyz)")
    return 0
