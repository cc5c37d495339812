"""Committee stage: its cost against the main run's force constants + transport, and members over ranks.

    python benchmarks/committee.py                 # a small Cu/diamond input, the shipped three-member committee
    python benchmarks/committee.py --ranks 3       # also the same committee under mpiexec -n 3 (one member per rank)
    python benchmarks/committee.py --input my.toml [--models a.model b.model]   # your input (without [committee])

Baseline, in this process: the main run (structure .. transport) on mlip.model; its force_constants +
transport wall time T_main.  Then the committee stage on one rank: wall time T_c and the overhead ratio
T_c / (members x T_main), which is 1 when a member costs what the main run's two stages cost (copying
the geometry and loading each member's model are the extra).  With ``--ranks R`` the committee stage is
rerun (members recomputed) under ``mpiexec -n R``: speedup T_c / T_c(R) and efficiency speedup /
min(R, members).  On a shared machine this is noisy: the load average is printed with each run.

The last line reads ``committee_overhead=<T_c / (members x T_main)> committee_speedup=<...>``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SMALL = """
[run]
output = "bench.h5"
stages = ["structure", "relax", "force_constants", "transport"]

[structure]
n_cells_left = 4
n_cells_right = 4
buffer_cells = 2

[relax]
fmax_eV_A = 0.05

[force_constants]
cutoff_A = 3.0

[transport]
q_mesh = [8, 8, 8]
temperatures_K = [300.0]
"""


def _wall(path: Path, stage: str) -> float:
    import h5py

    with h5py.File(path) as f:
        return float(f[stage].attrs["wall_seconds"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", help="a run input (default: a small Cu/diamond slab)")
    ap.add_argument("--ranks", type=int, default=0, help="also run the committee stage under mpiexec -n RANKS")
    ap.add_argument("--models", nargs="+", default=["shipped"], help="committee.models (default: the shipped members)")
    args = ap.parse_args()
    from hpc_itc.cli import main as cli

    work = Path(tempfile.mkdtemp(prefix="hpc_itc_bench_committee_"))
    import tomli_w
    import tomllib

    doc = tomllib.loads(Path(args.input).read_text() if args.input else SMALL)
    if "committee" in doc:
        print("error: --input: leave out [committee]; the benchmark adds it (--models)", file=sys.stderr)
        return 2
    base = Path(args.input).resolve().parent if args.input else work
    doc.setdefault("run", {}).update(output=str(work / "bench.h5"), stages=["structure", "relax", "force_constants", "transport"])
    (base / ".bench_committee_main.toml").write_text(tomli_w.dumps(doc))
    doc["run"]["stages"].append("committee")
    doc["committee"] = {"models": args.models}
    (base / ".bench_committee.toml").write_text(tomli_w.dumps(doc))
    main_input, committee_input = base / ".bench_committee_main.toml", base / ".bench_committee.toml"
    if cli([str(main_input)]) != 0:
        return 1
    t_main = _wall(work / "bench.h5", "force_constants") + _wall(work / "bench.h5", "transport")
    shutil.copyfile(work / "bench.h5", work / "main_copy.h5")
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    if cli([str(committee_input)]) != 0:
        return 1
    t_c = time.monotonic() - t0
    import h5py

    from hpc_itc.store.committee import read_committee

    with h5py.File(work / "bench.h5") as f:
        c = read_committee(f)
    n = len(c.member_model)
    print(f"main run force_constants + transport: {t_main:.1f} s (load {load:.1f})")
    print(f"committee stage, 1 rank, {n} members: {t_c:.1f} s = {t_c / t_main:.2f} x the main run's two stages "
          f"(overhead ratio {t_c / (n * t_main):.2f})")
    for i, d in enumerate(c.directions):
        print(f"  h {d} at {c.temperatures_K[-1]:g} K: {c.mean[i, -1]:.3f} ± {c.spread[i, -1]:.3f} MW/(m^2 K); "
              f"members {', '.join(f'{x:.3f}' for x in c.itc_MW_m2K[:, i, -1])}")
    speedup = float("nan")
    if args.ranks > 1 and shutil.which("mpiexec"):
        par = work / "par"
        par.mkdir()
        shutil.copyfile(work / "main_copy.h5", par / "bench.h5")
        doc["run"]["output"] = str(par / "bench.h5")
        (base / ".bench_committee_par.toml").write_text(tomli_w.dumps(doc))
        env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        load = os.getloadavg()[0]
        t0 = time.monotonic()
        proc = subprocess.run(["mpiexec", "-n", str(args.ranks), "--oversubscribe", sys.executable, "-m", "hpc_itc",
                               str(base / ".bench_committee_par.toml")], env=env, capture_output=True, text=True)
        t_r = time.monotonic() - t0
        if proc.returncode != 0:
            print(proc.stderr[-2000:])
            return 1
        speedup = t_c / t_r
        print(f"committee stage, {args.ranks} ranks: {t_r:.1f} s (load {load:.1f}); speedup {speedup:.2f}, "
              f"efficiency {speedup / min(args.ranks, n):.2f}")
    print(f"committee_overhead={t_c / (n * t_main):.3f} committee_speedup={speedup:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
