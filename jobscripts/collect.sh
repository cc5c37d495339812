#!/bin/bash
# Merge the points of a sweep into one table (CSV + JSON) and one figure (h vs the swept parameter).
# As a job that runs after every array task has ended, whatever its state (unfinished points are listed):
#   JOB=$(sbatch --parsable --array=0-$((N-1)) jobscripts/sweep.sbatch SWEEP.toml)
#   sbatch --dependency=afterany:${JOB%%;*} jobscripts/collect.sh SWEEP.toml OUTDIR
# or by hand at any time:   bash jobscripts/collect.sh SWEEP.toml OUTDIR
#SBATCH --job-name=hpc_itc_collect
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --time=00:15:00
#SBATCH --output=hpc_itc_collect-%j.out

set -euo pipefail
SWEEP=${1:?usage: collect.sh SWEEP.toml OUTDIR}
OUT=${2:?usage: collect.sh SWEEP.toml OUTDIR}
HPC_ITC=${HPC_ITC:-python -m hpc_itc}
$HPC_ITC sweep-collect "$SWEEP" --out "$OUT"
