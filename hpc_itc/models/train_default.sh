#!/usr/bin/env bash
# Reproduces hpc_itc/models/default.model: a small, fast placeholder MACE model trained
# from scratch (no foundation model) with mace-torch's own trainer on the CPU (steps 1-2), then
# fine-tuned from that model on the same data with `python -m hpc_itc train` (step 3).
# Usage:  bash hpc_itc/models/train_default.sh [WORK_DIR]      (run from the repository root)
# Afterwards copy WORK_DIR/finetune/work/default_ft_stagetwo.model (the non-compiled float64
# stage-two model of step 3) to hpc_itc/models/default.model.  Recorded run: mace-torch 0.3.16, torch 2.13.0+cpu,
# e3nn 0.4.4, 2 CPU cores shared with other jobs: steps 1-2 47 minutes, step 3 72 minutes.  Bit-identical weights are not guaranteed
# on other machines or thread counts (floating-point summation order).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${1:-/tmp/hpc_itc_train_default}"
mkdir -p "$WORK"
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1   # torch>=2.6 + e3nn 0.4.4 / pickled MACE models
# One torch thread: on a shared 2-core machine, 2 OpenMP threads slowed to ~6x when another
# process took a core; 1 thread costs ~1.7x when alone but is steady.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
COMMON=(
  --name default --seed 123 --work_dir "$WORK"
  --train_file "$REPO/hpc_itc/data/split_train.extxyz" --valid_fraction 0.1
  --test_file "$REPO/hpc_itc/data/split_test.extxyz"
  --energy_key REF_energy --forces_key REF_forces --stress_key REF_stress
  --E0s average
  --model MACE --hidden_irreps 32x0e --max_ell 2 --correlation 3 --num_interactions 2
  --r_max 5.0 --num_radial_basis 8 --num_cutoff_basis 5
  --loss stress --energy_weight 1 --forces_weight 10 --stress_weight 100
  --batch_size 2 --valid_batch_size 4 --lr 0.01 --scheduler_patience 5
  --ema --ema_decay 0.99
  --stage_two --start_stage_two 35 --stage_two_lr 0.001
  --default_dtype float64 --device cpu --save_cpu
  --error_table PerAtomRMSEstressvirials --plot False
)
# Step 1 (epochs 0-44): mostly forces; stage two (epochs 35-44) with E:F:S = 10:10:100.
mace_run_train "${COMMON[@]}" --max_num_epochs 45 \
  --stage_two_energy_weight 10 --stage_two_forces_weight 10 --stage_two_stress_weight 100
# Step 2 (epochs 44-54; the trainer resumes at the checkpoint's epoch number): step 1 left
# per-composition energy offsets of 30-130 meV/atom (energy weight too small), so continue
# from the epoch-44 stage-two checkpoint (--restart_latest) with the energy weight raised,
# E:F:S = 1000:100:1000.
mace_run_train "${COMMON[@]}" --max_num_epochs 55 --restart_latest \
  --stage_two_energy_weight 1000 --stage_two_forces_weight 100 --stage_two_stress_weight 1000
# Steps 1-2 give the first shipped model (session 1): $WORK/default_stagetwo.model.
# Step 3 (session 2): fine-tune that model on the same data with hpc_itc's own `train` command
# (foundation_model = the step-2 model, no multihead replay), forces weighted up and a larger
# learning rate: E:F:S = 50:100:500, lr 5e-3, batch 2, EMA 0.99.  The recorded run was stopped after
# epoch 42 and resumed from its epoch-42 checkpoint with a shorter schedule (stage two, E:F:S =
# 1000:100:1000 at lr 1e-3, from epoch 50 to 59); 3a/3b below replay exactly that.
FT="$WORK/finetune"
mkdir -p "$FT"
write_ft_toml() {  # $1 = max_num_epochs, $2 = start_stage_two, $3 = extra flag (or empty)
  cat > "$FT/train.toml" <<TOML
[train]
train_file = "$REPO/hpc_itc/data/split_train.extxyz"
test_file = "$REPO/hpc_itc/data/split_test.extxyz"
foundation_model = "$WORK/default_stagetwo.model"
name = "default_ft"
work_dir = "$FT/work"
model_out = "$FT/default_ft.model"
device = "cpu"
seed = 123
extra_args = ["--stage_two", "--start_stage_two", "$2", $3 "--stage_two_lr", "0.001", "--stage_two_energy_weight", "1000", "--stage_two_forces_weight", "100", "--stage_two_stress_weight", "1000", "--scheduler_patience", "5", "--error_table", "PerAtomRMSEstressvirials", "--plot", "False"]

[recipe]
loss = "stress"
energy_weight = 50.0
forces_weight = 100.0
stress_weight = 500.0
lr = 0.005
batch_size = 2
max_num_epochs = $1
ema_decay = 0.99
valid_fraction = 0.1
E0s = "average"
TOML
}
write_ft_toml 43 80 ""                         # 3a: epochs 0-42
python -m hpc_itc train "$FT/train.toml"
write_ft_toml 60 50 '"--restart_latest",'      # 3b: epochs 42-59, stage two from 50
python -m hpc_itc train "$FT/train.toml"
# The shipped model is the stage-two one of step 3: $FT/work/default_ft_stagetwo.model
echo "model: $FT/work/default_ft_stagetwo.model  (copy it to hpc_itc/models/default.model)"
