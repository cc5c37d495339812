#!/usr/bin/env bash
# Reproduces hpc_itc/models/default.model: a small, fast placeholder MACE model trained
# from scratch (no foundation model) with mace-torch's own trainer on the CPU.
# Usage:  bash hpc_itc/models/train_default.sh [WORK_DIR]      (run from the repository root)
# Afterwards copy WORK_DIR/default_stagetwo.model (the non-compiled float64 stage-two
# model) to hpc_itc/models/default.model.  Recorded run: mace-torch 0.3.16, torch 2.13.0+cpu,
# e3nn 0.4.4, 2 CPU cores, about 40 minutes.  Bit-identical weights are not guaranteed
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
# The final model is the stage-two one: $WORK/default_stagetwo.model
echo "model: $WORK/default_stagetwo.model  (copy it to hpc_itc/models/default.model)"
