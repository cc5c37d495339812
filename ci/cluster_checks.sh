#!/usr/bin/env bash
# Cluster checks (issue 7), run by .ci/run after the unit tests; needs root and apt (Debian 12).
#
#   1. apt: Slurm (slurm-wlm, munge, PMIx), Debian's Open MPI and parallel HDF5 (libhdf5-openmpi-dev)
#   2. a venv ($HPC_ITC_PVENV, default /tmp/hpc_itc_pvenv) with mpi4py and h5py built against them
#      (h5py.get_config().mpi is True), the rest (torch, mace, ...) from the base environment
#   3. a single-node Slurm (ci/slurm_up.sh)
#   4. checks, each printing PASS or FAIL:
#      mpio-writer   tests/store/test_rows.py under mpiexec: MPI-IO and rank-0 writers give the same file
#      srun          `srun -n 2 python -m hpc_itc` on inputs/ci_cluster.toml (MPI-IO writer) vs one process
#                    (rank-0 writer): inspect --json figures within rtol 1e-9, and the whole files
#      rank-failure  an exception on rank 1 only ends the whole step with the message (no hang);
#                    a rank that dies (exit without a word) ends the step (srun --kill-on-bad-exit)
#      job-array     jobscripts/sweep.sbatch as a 3-task array (q mesh 6/8/10) + jobscripts/collect.sh as a
#                    dependent job; point 1 is the reference input: same figures as the one-process run
#      kill-resume   SIGKILL to a 2-rank run at a random moment, rerun: same figures as the uninterrupted run
#      term-requeue  jobscripts/run.sbatch: TERM to the batch shell (what --signal=B:TERM does before the time
#                    limit) stops the ranks, the job requeues itself and the requeued job finishes the run
#   5. Slurm is stopped (also on failure).
# Exit status: 0 when every check passes; 1 otherwise (a failed set-up step fails at once, loudly).
# HPC_ITC_KILL_SEED=N repeats a kill-resume draw. Work files: $HPC_ITC_CLUSTER_WORK (default /tmp/hpc_itc_cluster_checks).

set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PV=${HPC_ITC_PVENV:-/tmp/hpc_itc_pvenv}
WORK=${HPC_ITC_CLUSTER_WORK:-/tmp/hpc_itc_cluster_checks}
T0=$SECONDS
declare -A RESULT TIME
ORDER=()

step() { echo; echo "== [$((SECONDS - T0)) s] $*"; }
die() { echo "cluster_checks: FAILED SET-UP: $*" >&2; exit 1; }

# ---- 1. packages --------------------------------------------------------------------------------
step "apt: slurm-wlm munge libpmix2 libpmix-dev libhdf5-openmpi-dev openmpi-bin libopenmpi-dev"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || die "apt-get update"
apt-get install -y -qq slurm-wlm munge libpmix2 libpmix-dev libhdf5-openmpi-dev openmpi-bin libopenmpi-dev >/dev/null \
    || die "apt-get install"
[[ -x /usr/bin/mpicc && -x /usr/bin/mpiexec ]] || die "Debian's Open MPI (/usr/bin/mpicc, /usr/bin/mpiexec) missing after apt"

# ---- 2. venv with a parallel h5py ------------------------------------------------------------------
# the Python that installed hpc_itc (.ci/run's); taken before PATH changes (/usr/bin/python3 is Debian's, bare)
BASE_PY=${HPC_ITC_BASE_PYTHON:-$(command -v python || command -v python3)}
# Debian's Open MPI must come first on PATH: a pip-installed Open MPI (the test extra) is another stack.
export PATH="$PV/bin:/usr/bin:$PATH"
venv_ok() {
    "$PV/bin/python" - <<'PY' 2>/dev/null
import h5py, mpi4py
from mpi4py import MPI
import torch, mace, phonopy, ase, pytest  # noqa: F401
assert h5py.get_config().mpi, "h5py without MPI"
assert "Open MPI v4" in MPI.Get_library_version(), MPI.Get_library_version()
PY
}
if venv_ok; then
    step "venv $PV: present (parallel h5py, Debian Open MPI): reused"
else
    step "venv $PV: mpi4py and h5py built against Debian's Open MPI and HDF5 (a few minutes)"
    rm -rf "$PV"
    # --system-site-packages: torch, mace, ... from the base environment; mpi4py and h5py of the venv come first
    "$BASE_PY" -m venv --system-site-packages "$PV" || die "$BASE_PY -m venv"
    "$PV/bin/python" -m pip install -q -U pip setuptools wheel cython pkgconfig numpy || die "pip: build tools"
    if ! "$PV/bin/python" -c "import torch, mace, phonopy, ase, pytest" 2>/dev/null; then
        # the base environment lacks the runtime packages: install them into the venv (not the test extra:
        # its pip Open MPI would be a second MPI stack)
        "$PV/bin/python" -m pip install -q torch==2.13.0 pytest -e "$REPO" || die "pip: torch, pytest and hpc_itc"
    fi
    MPICC=/usr/bin/mpicc CC=/usr/bin/mpicc "$PV/bin/python" -m pip install -q --no-cache-dir --force-reinstall --no-deps \
        --no-binary mpi4py mpi4py || die "pip: mpi4py from source"
    HDF5_MPI=ON CC=/usr/bin/mpicc HDF5_PKGCONFIG_NAME=hdf5-openmpi "$PV/bin/python" -m pip install -q --no-cache-dir \
        --force-reinstall --no-deps --no-binary=h5py --no-build-isolation h5py || die "pip: h5py with MPI"
    venv_ok || die "venv $PV: h5py.get_config().mpi is not True or imports fail"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"   # this checkout's hpc_itc, whatever is installed
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 HDF5_USE_FILE_LOCKING=FALSE
PY=$PV/bin/python
[[ $(command -v python) == "$PY" ]] || die "python on PATH is $(command -v python), not $PY"
"$PY" -c "import hpc_itc, sys; assert hpc_itc.__file__.startswith(sys.argv[1]), hpc_itc.__file__" "$REPO" || die "hpc_itc is not imported from $REPO"
"$PY" -c "import h5py; from mpi4py import MPI; print('h5py', h5py.__version__, 'HDF5', h5py.version.hdf5_version, 'mpi', h5py.get_config().mpi, '|', MPI.Get_library_version().splitlines()[0])"

# ---- 3. Slurm ----------------------------------------------------------------------------------------
step "Slurm: munged, slurmctld, slurmd (ci/slurm_up.sh)"
# shellcheck source=ci/slurm_up.sh
source "$REPO/ci/slurm_up.sh"
cleanup() {
    local rc=$?
    [[ -n "${SLURM_CONF:-}" ]] && scancel --user=root 2>/dev/null
    slurm_down || true
    exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT   # a cancelled CI job still stops the daemons (through the EXIT trap)
slurm_up || { tail -20 "$SLURM_DIR"/log/*.log 2>/dev/null; die "Slurm did not come up"; }
export SLURM_CONF="$SLURM_DIR/slurm.conf"

# ---- helpers -------------------------------------------------------------------------------------------
rm -rf "$WORK" && mkdir -p "$WORK"
record() {  # record NAME PASS|FAIL START_SECONDS DETAIL
    RESULT[$1]=$2
    TIME[$1]=$(($SECONDS - $3))
    ORDER+=("$1")
    echo "$2: $1 (${TIME[$1]} s) $4"
}
input_for() {  # input_for NAME -> $WORK/NAME.toml writing $WORK/NAME.h5
    sed "s#^output = .*#output = \"$WORK/$1.h5\"#" "$REPO/inputs/ci_cluster.toml" > "$WORK/$1.toml"
    echo "$WORK/$1.toml"
}
inspect_json() { python -m hpc_itc inspect "$1" --json > "$2"; }
writers() { python - "$1" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1]) as f:
    print(" ".join(f"{s}={f[s].attrs.get('writer')}" for s in f if isinstance(f[s], h5py.Group)))
PY
}
wait_jobs() {  # wait_jobs TIMEOUT_S JOBID... -> 0 when none is queued or running any more
    local deadline=$((SECONDS + $1)); shift
    while squeue -h -j "$(IFS=,; echo "$*")" 2>/dev/null | grep -q .; do
        ((SECONDS < deadline)) || { echo "jobs $* still queued/running after the time limit"; squeue; return 1; }
        sleep 3
    done
}

# ---- 4a. both writers under MPI --------------------------------------------------------------------
step "check mpio-writer: tests/store/test_rows.py with the parallel h5py (HPC_ITC_REQUIRE_MPIO=1: no skips)"
t=$SECONDS
if HPC_ITC_REQUIRE_MPIO=1 HPC_ITC_MPIEXEC=/usr/bin/mpiexec "$PY" -m pytest -q -p no:cacheprovider tests/store/test_rows.py; then
    record mpio-writer PASS $t ""
else
    record mpio-writer FAIL $t "(pytest output above)"
fi

# ---- 4b. srun -n 2 vs one process -------------------------------------------------------------------
step "check srun: one process (reference) then srun -n 2 on inputs/ci_cluster.toml"
t=$SECONDS
ok=1
ts=$SECONDS
if timeout 900 python -m hpc_itc "$(input_for serial)" > "$WORK/serial.log" 2>&1; then
    echo "one process: $((SECONDS - ts)) s, writers: $(writers "$WORK/serial.h5")"
    inspect_json "$WORK/serial.h5" "$WORK/serial.json"
else
    ok=0; tail -20 "$WORK/serial.log"; echo "the one-process reference run failed"
fi
ts=$SECONDS
if timeout 900 srun -n 2 python -m hpc_itc "$(input_for srun2)" > "$WORK/srun2.log" 2>&1; then
    T_SRUN=$((SECONDS - ts))
    echo "srun -n 2: $T_SRUN s, writers: $(writers "$WORK/srun2.h5")"
    grep -q "results writer: mpio (2 rank(s)" "$WORK/srun2.log" || { ok=0; echo "srun run did not use the MPI-IO writer"; }
    # the stages that write through Context.write_stage must have used MPI-IO here
    for s in force_constants transport ldos; do
        writers "$WORK/srun2.h5" | grep -q "$s=mpio" || { ok=0; echo "/$s was not written through MPI-IO"; }
    done
    inspect_json "$WORK/srun2.h5" "$WORK/srun2.json"
else
    T_SRUN=120; ok=0; tail -30 "$WORK/srun2.log"; echo "srun -n 2 failed"
fi
if ((ok)); then
    python ci/compare_results.py json "$WORK/serial.json" "$WORK/srun2.json" --rtol 1e-9 || ok=0
    # the whole files: same layout; numbers to 1e-6 of each dataset's scale (rounding-level quantities such as
    # sum-rule residuals or acoustic frequencies at Gamma differ between runs in their last digits)
    python ci/compare_results.py h5 "$WORK/serial.h5" "$WORK/srun2.h5" --rtol 1e-6 || ok=0
    # each file's stages match the checksums their writers (root, MPI-IO) sealed them with
    for f in serial srun2; do python -m hpc_itc inspect --verify "$WORK/$f.h5" | tail -1; python -m hpc_itc inspect --verify "$WORK/$f.h5" > /dev/null || ok=0; done
fi
record srun "$([[ $ok == 1 ]] && echo PASS || echo FAIL)" $t "(one process vs srun -n 2: inspect --json rtol 1e-9, files rtol 1e-6, inspect --verify)"

# ---- 4c. a failure on one rank ------------------------------------------------------------------------
step "check rank-failure: exception on rank 1 only, then rank 1 dying, under srun -n 2"
t=$SECONDS
ok=1
input_for fail > /dev/null
set +e
HPC_ITC_FAIL_RANK=1 timeout 300 srun -n 2 python -m hpc_itc "$WORK/fail.toml" > "$WORK/fail_raise.log" 2>&1
rc=$?
set -e
echo "exception on rank 1: exit status $rc"
grep -E "^error: rank" "$WORK/fail_raise.log" | head -4 || true
if [[ $rc == 124 ]]; then ok=0; echo "hang: srun still running after 300 s";
elif [[ $rc == 0 ]]; then ok=0; echo "the run succeeded although rank 1 failed";
elif [[ $(grep -c "rank 1: RuntimeError: injected failure on rank 1" "$WORK/fail_raise.log") -lt 2 ]]; then
    ok=0; echo "not every rank reported rank 1's error"; tail -20 "$WORK/fail_raise.log"; fi
rm -rf "$WORK"/fail.h5*
set +e
HPC_ITC_FAIL_RANK=1 HPC_ITC_FAIL_HOW=exit timeout 300 srun --kill-on-bad-exit=1 -n 2 python -m hpc_itc "$WORK/fail.toml" > "$WORK/fail_exit.log" 2>&1
rc=$?
set -e
echo "rank 1 died (srun --kill-on-bad-exit=1, as in jobscripts/): exit status $rc"
grep -E "srun: error" "$WORK/fail_exit.log" | head -3 || true
if [[ $rc == 124 ]]; then ok=0; echo "hang: srun still running after 300 s";
elif [[ $rc == 0 ]]; then ok=0; echo "the run succeeded although rank 1 died"; fi
record rank-failure "$([[ $ok == 1 ]] && echo PASS || echo FAIL)" $t "(non-zero exit within the timeout, message on every rank)"

# ---- 4d. job array + collect --------------------------------------------------------------------------
step "check job-array: jobscripts/sweep.sbatch --array=0-2 (2 ranks each), jobscripts/collect.sh after it"
t=$SECONDS
ok=1
mkdir -p "$WORK/sweep"
sed "s#^output = .*#output = \"sweep_ci.h5\"#" "$REPO/inputs/ci_cluster.toml" > "$WORK/sweep/sweep_ci.toml"
cat >> "$WORK/sweep/sweep_ci.toml" <<'TOML'

[sweep]
name = "array"
"transport.q_mesh" = [[6, 6, 6], [8, 8, 8], [10, 10, 10]]
TOML
N=$(python -m hpc_itc sweep-size "$WORK/sweep/sweep_ci.toml")
[[ $N == 3 ]] || { ok=0; echo "sweep-size gave $N, expected 3"; }
ARRAY=$(sbatch --parsable --ntasks=2 --time=00:20:00 --array=0-$((N - 1)) --chdir="$WORK/sweep" \
        --output="$WORK/sweep/array-%A_%a.out" "$REPO/jobscripts/sweep.sbatch" "$WORK/sweep/sweep_ci.toml")
ARRAY=${ARRAY%%;*}
COLLECT=$(sbatch --parsable --dependency=afterany:"$ARRAY" --chdir="$WORK/sweep" --output="$WORK/sweep/collect-%j.out" \
          "$REPO/jobscripts/collect.sh" "$WORK/sweep/sweep_ci.toml" "$WORK/sweep/collected")
COLLECT=${COLLECT%%;*}
echo "array job $ARRAY, collect job $COLLECT"
wait_jobs 1200 "$ARRAY" "$COLLECT" || ok=0
cat "$WORK"/sweep/collect-*.out 2>/dev/null | tail -8 || true
python - "$WORK/sweep/collected/sweep.json" "$N" <<'PY' || ok=0
import json, sys
doc = json.load(open(sys.argv[1]))
rows = doc["points"]
print("collected:", [(r["index"], r["status"]) for r in rows])
assert len(rows) == int(sys.argv[2]) and all(r["status"] == "finished" for r in rows), "not every point finished"
PY
for i in 0 1 2; do grep -q "results writer: mpio (2 rank(s)" "$WORK"/sweep/array-*_$i.out || { ok=0; echo "array task $i: no MPI-IO writer line"; }; done
P1="$WORK/sweep/array/point_001.h5"
if [[ -f $P1 && -f $WORK/serial.json ]]; then
    inspect_json "$P1" "$WORK/point1.json"
    python ci/compare_results.py json "$WORK/serial.json" "$WORK/point1.json" --rtol 1e-9 || ok=0
else
    ok=0; echo "no $P1 (or no reference run) to compare"
fi
((ok)) || tail -20 "$WORK"/sweep/array-*.out || true
record job-array "$([[ $ok == 1 ]] && echo PASS || echo FAIL)" $t "(3 array tasks + collect; point 1 vs the one-process run)"

# ---- 4e. SIGKILL at a random moment, then resume ------------------------------------------------------
SEED=${HPC_ITC_KILL_SEED:-$(( $(date +%s) % 100000 ))}
step "check kill-resume: srun -n 2, SIGKILL at a random moment (seed $SEED), rerun"
t=$SECONDS
ok=0
input_for kill > /dev/null
for attempt in 1 2 3; do
    rm -rf "$WORK"/kill.h5 "$WORK"/kill.h5.ckpt "$WORK"/.kill.h5.tmp*
    KILL_AT=$(python -c "import random, sys; print(f'{random.Random(int(sys.argv[1]) + int(sys.argv[2])).uniform(2.0, 0.9 * float(sys.argv[3])):.1f}')" "$SEED" "$attempt" "$T_SRUN")
    srun -n 2 --job-name=hpc_itc_kill python -m hpc_itc "$WORK/kill.toml" > "$WORK/kill_1.log" 2>&1 &
    SRUN=$!
    sleep "$KILL_AT"
    JOB=$(squeue -h -n hpc_itc_kill -o %A | head -1)
    if [[ -z $JOB ]]; then
        wait $SRUN || true
        echo "attempt $attempt: the run ended before the kill at $KILL_AT s; drawing again"
        continue
    fi
    scancel --signal=KILL "$JOB"   # SIGKILL to both ranks of the step at once
    set +e; wait $SRUN; rc=$?; set -e
    inspect_json "$WORK/kill.h5" "$WORK/kill_state.json" 2>/dev/null || echo '{}' > "$WORK/kill_state.json"
    STATE=$(python -c "import json, sys; d = json.load(open(sys.argv[1])); print('stages complete', d.get('stages_complete'), '| checkpointed tasks', d.get('checkpointed_tasks', {}))" "$WORK/kill_state.json")
    echo "attempt $attempt: SIGKILL at $KILL_AT s (srun exit status $rc): $STATE"
    if python -c "import json, sys; sys.exit(0 if 'ldos' in json.load(open(sys.argv[1])).get('stages_complete', []) else 1)" "$WORK/kill_state.json"; then
        echo "the run had finished before the kill; drawing again"
        continue
    fi
    ts=$SECONDS
    if timeout 900 srun -n 2 python -m hpc_itc "$WORK/kill.toml" > "$WORK/kill_2.log" 2>&1; then
        echo "rerun: $((SECONDS - ts)) s; it resumed:"
        grep -E "already in|already checkpointed|taken from checkpoints" "$WORK/kill_2.log" | sed 's/^.*INFO /  /' | cut -c1-160 || true
        inspect_json "$WORK/kill.h5" "$WORK/kill.json"
        python ci/compare_results.py json "$WORK/srun2.json" "$WORK/kill.json" --rtol 1e-9 && ok=1
    else
        tail -30 "$WORK/kill_2.log"; echo "the rerun failed"
    fi
    break
done
record kill-resume "$([[ $ok == 1 ]] && echo PASS || echo FAIL)" $t "(seed $SEED; rerun vs uninterrupted srun -n 2, rtol 1e-9)"

# ---- 4f. TERM before the time limit, requeue, resume (jobscripts/run.sbatch) ----------------------------
step "check term-requeue: jobscripts/run.sbatch, TERM to the batch shell, requeue, resume"
t=$SECONDS
ok=1
input_for term > /dev/null
JOB=$(sbatch --parsable --ntasks=2 --time=00:20:00 --chdir="$WORK" --output="$WORK/term-%j.out" \
      --export=ALL,HPC_ITC_TERM_GRACE=30 "$REPO/jobscripts/run.sbatch" "$WORK/term.toml")
JOB=${JOB%%;*}
# wait until the ranks have checkpointed some force evaluations, then signal the batch shell only
deadline=$((SECONDS + 300))
until compgen -G "$WORK/term.h5.ckpt/force_constants/*/task_*.npz" > /dev/null; do
    ((SECONDS < deadline)) || { echo "no checkpoint after 300 s"; ok=0; break; }
    sleep 1
done
scancel --batch --signal=TERM "$JOB" && echo "TERM sent to the batch shell of job $JOB"
wait_jobs 900 "$JOB" || ok=0
OUT="$WORK/term-$JOB.out"
grep -q "TERM before the time limit, stopping and requeueing" "$OUT" || { ok=0; echo "the batch script did not handle TERM"; }
# the ranks end with status 143 (SIGTERM); whichever rank aborts first may cut the others' messages short
grep -qE "error: terminated \(SIGTERM\)|errorcode 143" "$OUT" || { ok=0; echo "the ranks did not report the TERM"; }
STARTS=$(grep -c "stage structure: starting\|stage structure: already in" "$OUT" || true)
[[ $STARTS -ge 2 ]] || { ok=0; echo "the job did not run a second time after the requeue (runs seen: $STARTS)"; }
grep -E "already in|already checkpointed|taken from checkpoints" "$OUT" | sed 's/^.*INFO /  /' | cut -c1-160 | head -6 || true
if [[ -f $WORK/term.h5 ]] && inspect_json "$WORK/term.h5" "$WORK/term.json"; then
    python ci/compare_results.py json "$WORK/srun2.json" "$WORK/term.json" --rtol 1e-9 || ok=0
else
    ok=0; echo "no finished results file"
fi
((ok)) || tail -30 "$OUT" || true
record term-requeue "$([[ $ok == 1 ]] && echo PASS || echo FAIL)" $t "(TERM, requeue, resumed run vs uninterrupted srun -n 2)"

# ---- summary ------------------------------------------------------------------------------------------
step "summary (total $((SECONDS - T0)) s)"
failed=0
for name in "${ORDER[@]}"; do
    printf '  %-13s %s  %4d s\n' "$name" "${RESULT[$name]}" "${TIME[$name]}"
    [[ ${RESULT[$name]} == PASS ]] || failed=1
done
if ((failed)); then echo "cluster checks: FAIL"; exit 1; fi
echo "cluster checks: all PASS"
