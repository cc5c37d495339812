"""train: the mace_run_train command for the paper's recipe, and a real (tiny) training run."""


import numpy as np
import pytest
from ase.io import read, write

from hpc_itc.cli import main
from hpc_itc.tools.train import PAPER_FINETUNE, command, load


@pytest.fixture
def small_data(tmp_path):
    frames = [a for a in read("hpc_itc/data/split_train.extxyz", ":") if len(a) <= 150][:6]
    write(tmp_path / "small.extxyz", frames)
    return tmp_path


def _args(text: str, folder) -> dict:
    (folder / "t.toml").write_text(text)
    data, base = load(str(folder / "t.toml"))
    argv = command(data, base)
    out = {}
    for k, a in enumerate(argv):
        if a.startswith("--"):
            nxt = argv[k + 1] if k + 1 < len(argv) and not argv[k + 1].startswith("--") else True
            out[a[2:]] = nxt
    return out


def test_finetune_uses_the_paper_recipe(small_data):
    (small_data / "foundation.model").write_bytes(b"not read by a dry run")
    args = _args('[train]\ntrain_file = "small.extxyz"\nfoundation_model = "foundation.model"\n', small_data)
    for key in ("loss", "scaling"):
        assert args[key] == PAPER_FINETUNE[key]
    assert float(args["lr"]) == 1e-3 and int(args["batch_size"]) == 12 and int(args["max_num_epochs"]) == 1000
    assert float(args["forces_weight"]) == 10.0 and float(args["ema_decay"]) == 0.999 and args["E0s"] == "average"
    assert args["default_dtype"] == "float64" and float(args["valid_fraction"]) == 0.05 and args["amsgrad"] is True
    assert args["foundation_model"].endswith("foundation.model") and args["multiheads_finetuning"] == "False"
    assert "hidden_irreps" not in args  # the foundation's architecture is kept


def test_multihead_replay_needs_replay_data(small_data, capsys):
    (small_data / "f.model").write_bytes(b"x")
    (small_data / "t.toml").write_text('[train]\ntrain_file = "small.extxyz"\nfoundation_model = "f.model"\nmultihead_replay = true\n')
    assert main(["train", str(small_data / "t.toml"), "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith("error: train.multihead_replay")
    (small_data / "t.toml").write_text('[train]\ntrain_file = "small.extxyz"\nfoundation_model = "f.model"\nmultihead_replay = true\npt_train_file = "small.extxyz"\n')
    args = _args((small_data / "t.toml").read_text(), small_data)
    assert args["multiheads_finetuning"] == "True" and args["pt_train_file"].endswith("small.extxyz")


def test_missing_training_file(tmp_path, capsys):
    (tmp_path / "t.toml").write_text('[train]\ntrain_file = "nope.extxyz"\n')
    assert main(["train", str(tmp_path / "t.toml")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: train.train_file")


def test_tiny_training_from_scratch_gives_a_usable_model(small_data):
    (small_data / "t.toml").write_text('''
[train]
train_file = "small.extxyz"
name = "tiny"
work_dir = "work"
model_out = "tiny.model"
extra_args = ["--num_radial_basis", "4"]
[recipe]
max_num_epochs = 1
batch_size = 2
[model]
hidden_irreps = "4x0e"
r_max = 3.0
num_interactions = 1
correlation = 1
max_ell = 1
''')
    assert main(["train", str(small_data / "t.toml")]) == 0
    from hpc_itc.core import mlip
    from hpc_itc.tools.evaluate import evaluate

    summary = mlip.model_summary(str(small_data / "tiny.model"))
    assert summary.r_max_A == pytest.approx(3.0) and summary.num_interactions == 1
    table, _ = evaluate(str(small_data / "tiny.model"), str(small_data / "small.extxyz"))
    assert np.isfinite(table["all"]["forces_meV_A"])


def test_split_by_config_type_subsample_and_force_cap():
    """valid_split = config_type takes valid_fraction of every family; a member keeps subsample_fraction of the
    rest of each; the force cap weights exactly the configurations above it by (cap / RMS)^2; seeded."""
    from hpc_itc.tools.train import split_and_weight

    frames = read("hpc_itc/data/split_train.extxyz", ":")
    kinds = [a.info["config_type"] for a in frames]
    rms = np.array([np.sqrt(np.mean(a.arrays["REF_forces"] ** 2)) for a in frames])
    train, valid, weights = split_and_weight(frames, "REF_forces", 0.1, 124, True, 0.85, 2.0)
    assert not set(train) & set(valid)
    for kind in set(kinds):
        n = kinds.count(kind)
        n_valid = sum(kinds[i] == kind for i in valid)
        assert n_valid == max(1, round(0.1 * n))
        assert sum(kinds[i] == kind for i in train) == round(0.85 * (n - n_valid))
    w = dict(zip(train, weights))
    for i in train:
        assert w[i] == pytest.approx(min(1.0, (2.0 / rms[i]) ** 2))
    assert sum(x < 1 for x in weights) == sum(rms[i] > 2.0 for i in train) > 0  # the compressed Cu/diamond configs
    assert split_and_weight(frames, "REF_forces", 0.1, 124, True, 0.85, 2.0) == (train, valid, weights)
    other = split_and_weight(frames, "REF_forces", 0.1, 125, True, 0.85, 2.0)
    assert other[0] != train  # another member, another subset
    everything, none, ones = split_and_weight(frames, "REF_forces", 0.1, 1, False, 1.0, 0.0)
    assert everything == list(range(len(frames))) and none == [] and set(ones) == {1.0}


def test_committee_members_get_their_own_seed_data_and_model(small_data, capsys):
    (small_data / "f.model").write_bytes(b"not read by a dry run")
    text = ('[train]\ntrain_file = "small.extxyz"\nfoundation_model = "f.model"\nmodel_out = "out/c.model"\nseed = 7\n'
            'valid_split = "config_type"\n[committee]\nsize = 3\nsubsample_fraction = 0.5\n')
    (small_data / "t.toml").write_text(text)
    data, base = load(str(small_data / "t.toml"))
    from hpc_itc.tools.train import members

    ms = members(data, base)
    assert [m.seed for m in ms] == [8, 9, 10] and [m.model_out.name for m in ms] == ["c_1.model", "c_2.model", "c_3.model"]
    args = command(data, base, ms[1])
    assert args[args.index("--train_file") + 1].endswith("member_2/data/train.extxyz")
    assert args[args.index("--valid_file") + 1].endswith("member_2/data/valid.extxyz") and "--valid_fraction" not in args
    assert main(["train", str(small_data / "t.toml"), "--dry-run", "--member", "2"]) == 0
    assert capsys.readouterr().out.count("mace_run_train") == 1
    assert main(["train", str(small_data / "t.toml"), "--dry-run", "--member", "4"]) == 2
    assert capsys.readouterr().err.startswith("error: --member: got 4; allowed: 1..3")


def test_finetune_recipe_asks_only_for_the_foundation_model(capsys):
    """inputs/train_finetune.toml is complete except for the user's MACE-MPA-0 file, and says so in one line."""
    assert main(["train", "inputs/train_finetune.toml", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: train.foundation_model") and "\n" not in err


@pytest.mark.parametrize("recipe", ["inputs/train_equivariant_cpu.toml",
                                    "inputs/train_equivariant_gpu.toml", "hpc_itc/models/train_committee.toml"])
def test_shipped_recipes_load_and_give_the_architecture_they_state(recipe):
    """Every recipe the README and hpc_itc/models/README.md point to must load (known keys, data files that
    exist) and hand mace_run_train the architecture and schedule written in it, or a user's replay breaks."""
    import tomllib

    with open(recipe, "rb") as fh:
        raw = tomllib.load(fh)
    data, base = load(recipe)
    argv = command(data, base)
    assert argv[0] == "mace_run_train"
    given = {a[2:]: argv[k + 1] for k, a in enumerate(argv[:-1]) if a.startswith("--")}
    for key in ("hidden_irreps", "max_ell", "correlation", "num_interactions"):
        if key in raw.get("model", {}):
            assert given[key] == str(raw["model"][key]), key
    assert int(given["max_num_epochs"]) == raw.get("recipe", {}).get("max_num_epochs", int(given["max_num_epochs"]))
    assert given["device"] == raw["train"].get("device", "cpu")
