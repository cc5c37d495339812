"""Transport stage speed on the paper's problem size, against the plain dense solve, in one run.

    python benchmarks/transport.py            # 42+42 cells, cutoff 6 Å, 20x20x20 mesh, both directions, 2 processes
                                              # (q_z refined as the stage does by default; --qz-refine 1: the plain mesh)
    python benchmarks/transport.py --quick    # the same device on an 8x8x8 mesh

The device is the paper's: 42 layers of Cu (1 atom each) on 42 layers of diamond
(2 atoms each) in the 1x1 primitive (001) cell, 126 atoms, with force constants
out to 6 Å.  They come from a central-spring model built in code
(`tests/springs.py`, bands up to ~7.3 THz for Cu and ~40 THz for
diamond): the solver's cost depends on the geometry and the force-constant range,
not on where the force constants came from.

What is timed, in the same process:

* the full mesh with the production code path (the transport stage's task
  functions: symmetry detection, irreducible k_par columns, closed-channel
  screen, block-tridiagonal solves, expansion to the full mesh, Landauer sums),
  spread over ``--procs`` worker processes;
* the straightforward baseline on a deterministic sample of whole mesh columns:
  every incident mode solved on its own, dense LU of the whole device + lead
  system, no symmetry, no screening (``solve_column(method="dense",
  screen=False, group=False)``, which also checks the fast results); its cost per
  mode times the number of incident modes of the full mesh, divided by the number
  of processes (perfect parallel scaling granted to the baseline), is compared
  with the measured wall time.

The last line reads ``speedup_vs_dense=<ratio> seconds_full_mesh=<s>``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))  # springs.py: the test fixture

import numpy as np  # noqa: E402
from springs import spring_interface  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from hpc_itc import config  # noqa: E402
from hpc_itc.core.transport.qz_sampling import sample_meshes  # noqa: E402
from hpc_itc.core.transport.solve import (  # noqa: E402
    SOLVED_RGF,
    direction_sums,  # noqa: E402
    solve_column,
)
from hpc_itc.core.transport.symmetry import find_inplane_symmetry  # noqa: E402
from hpc_itc.core.transport.system import build_system  # noqa: E402
from hpc_itc.stages import transport as stage  # noqa: E402

_STATE: dict = {}


def _run(k: int):
    with threadpool_limits(limits=1):
        task = _STATE["tasks"][k]
        return k, stage.run_task(_STATE["system"], task, _STATE["settings"].solver, _STATE["reds"], {})


def full_mesh(system, settings, meshes, procs: int):
    """The production path on the whole mesh; returns (wall seconds, per-direction mode arrays, (h, radiation limit), symmetry)."""
    t0 = time.perf_counter()
    symmetry = find_inplane_symmetry(system) if settings.use_symmetry else None
    if symmetry is None:
        from hpc_itc.core.transport.symmetry import InplaneSymmetry

        symmetry = InplaneSymmetry.identity()
    reds = stage.reductions(system, symmetry, [meshes.main], settings.directions)
    tasks = stage.plan(settings, meshes, reds, {})
    _STATE.update(system=system, settings=settings, reds=reds, tasks=tasks)
    results = {}
    if procs > 1:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            for k, res in pool.imap_unordered(_run, range(len(tasks))):
                results[k] = res
    else:
        for k in range(len(tasks)):
            results[k] = _run(k)[1]
    per_dir, h = {}, {}
    for direction in settings.directions:
        ks = [k for k, t in enumerate(tasks) if t.direction == direction]
        d = {key: np.concatenate([results[k][key] for k in ks]) for key in results[ks[0]]}
        per_dir[direction] = d
        sums = direction_sums(system, direction, d, meshes.main, settings.temperatures_K)
        h[direction] = (sums.itc, sums.radiation_limit)
    return time.perf_counter() - t0, per_dir, h, symmetry, reds


def dense_sample(system, mesh, directions, n_columns: int, per_dir: dict):
    """Seconds per incident mode of the plain dense path on sample columns, and the largest |T_fast - T_dense|.

    Half the columns are spread evenly over the whole in-plane mesh, half over the
    columns where the fast path solved scattering problems (open channels), so that
    the comparison also covers non-zero transmittances.
    """
    out = {}
    worst, compared, nonzero = 0.0, 0, 0
    n_all = mesh[0] * mesh[1]
    for direction in directions:
        fast = per_dir[direction]
        open_cols = np.unique(fast["mesh_index"][fast["solve_code"] >= SOLVED_RGF][:, 0] * mesh[1]
                              + fast["mesh_index"][fast["solve_code"] >= SOLVED_RGF][:, 1])
        n_open = n_columns // 2 if len(open_cols) else 0
        spread = np.linspace(0, n_all - 1, n_columns - n_open + 2).round().astype(int)[1:-1]
        picks = list(spread)
        if n_open:
            picks += list(open_cols[np.linspace(0, len(open_cols) - 1, n_open).round().astype(int)])
        picks = sorted(set(int(c) for c in picks))
        seconds, modes = 0.0, 0
        for c in picks:
            i, j = divmod(int(c), mesh[1])
            with threadpool_limits(limits=1):
                t0 = time.perf_counter()
                ref = solve_column(system, direction, mesh, i, j, method="dense", screen=False, group=False)
                seconds += time.perf_counter() - t0
            modes += len(ref["omega"])
            sel = (fast["mesh_index"][:, 0] == i) & (fast["mesh_index"][:, 1] == j)
            key_fast = {(tuple(m), b): t for m, b, t in zip(fast["mesh_index"][sel], fast["band"][sel], fast["transmission"][sel])}
            for m, b, t in zip(ref["mesh_index"], ref["band"], ref["transmission"]):
                if (tuple(m), b) in key_fast:
                    worst = max(worst, abs(key_fast[(tuple(m), b)] - t))
                    compared += 1
                    nonzero += t > 1e-6
        out[direction] = (seconds / max(modes, 1), modes, len(picks))
    return out, worst, compared, nonzero


def solve_ratio(system, per_dir: dict, mesh, n: int = 24):
    """Per-solve time of the block-tridiagonal vs the dense linear solve at the same (k_par, omega), lead modes shared."""
    rows = []
    for direction, d in per_dir.items():
        ok = np.flatnonzero((d["solve_code"] >= SOLVED_RGF) & ~d["symmetry_image"].astype(bool))
        rows += [(direction, k) for k in ok[np.unique(np.linspace(0, len(ok) - 1, n // 2).round().astype(int))]] if len(ok) else []
    t_rgf = t_dense = 0.0
    diff = 0.0
    for direction, k in rows:
        d = per_dir[direction]
        theta = 2 * np.pi * d["mesh_index"][k, :2] / np.array(mesh[:2])
        omega = d["omega"][k]
        jn = system.junction(theta)
        lm, rm = jn.lead_modes("left", omega), jn.lead_modes("right", omega)
        with threadpool_limits(limits=1):
            t0 = time.perf_counter()
            a = jn.solve(omega, left_modes=lm, right_modes=rm, method="rgf")
            t_rgf += time.perf_counter() - t0
            t0 = time.perf_counter()
            b = jn.solve(omega, left_modes=lm, right_modes=rm, method="dense")
            t_dense += time.perf_counter() - t0
        diff = max(diff, np.abs(a.t_LR - b.t_LR).max(initial=0.0), np.abs(a.t_RL - b.t_RL).max(initial=0.0))
    return len(rows), t_rgf / max(len(rows), 1), t_dense / max(len(rows), 1), diff


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8x8x8 mesh instead of 20x20x20")
    ap.add_argument("--mesh", type=int, nargs=3, default=None, help="q mesh (overrides --quick)")
    ap.add_argument("--cells", type=int, default=42, help="device layers per side (paper: 42)")
    ap.add_argument("--cutoff", type=float, default=6.0, help="force-constant cutoff in Å")
    ap.add_argument("--procs", type=int, default=2, help="worker processes for the full mesh")
    ap.add_argument("--dense-columns", type=int, default=None, help="mesh columns per direction timed with the dense path")
    ap.add_argument("--no-symmetry", action="store_true")
    ap.add_argument("--qz-refine", type=int, default=0,
                    help="transport.qz_refine: 0 automatic (production default), 1 the mesh as given")
    args = ap.parse_args(argv)
    mesh = tuple(args.mesh) if args.mesh else ((8, 8, 8) if args.quick else (20, 20, 20))
    n_dense = args.dense_columns or (3 if args.quick else 6)

    t0 = time.perf_counter()
    lp, rp, dev, _ = spring_interface(args.cells, args.cells, args.cutoff)
    system = build_system(lp, rp, dev, (1, 1), (args.cells, args.cells))
    system.partition  # noqa: B018  (computed once, before the workers fork)
    t_build = time.perf_counter() - t0
    print(f"device: {dev.n_atoms} atoms ({system.n_device_dof} dof) in {len(system.partition) - 1} blocks "
          f"{np.diff(system.partition).tolist()}; principal layers {system.left.p}+{system.right.p} layers = "
          f"{system.left.n_dof}/{system.right.n_dof} dof; cutoff {args.cutoff} Å; spring model built in {t_build:.1f} s")
    settings = config.validate({"transport": {
        "q_mesh": list(mesh), "directions": ["left_to_right", "right_to_left"], "temperatures_K": [300.0],
        "frequency_bin_THz": 0.25, "block_size": 4, "use_symmetry": not args.no_symmetry,
        "path_points": 0, "caroli_samples": 0, "qz_refine": args.qz_refine}}).transport
    meshes = sample_meshes(system.primitive("left"), system.primitive("right"), settings.q_mesh, settings.q_mesh_sweep,
                           settings.qz_refine)
    mesh = meshes.main  # the mesh actually sampled: N3 times the q_z refinement
    print(f"q mesh {meshes.main_input} with q_z refined x{meshes.factor[mesh]}: incident modes on "
          f"{mesh[0]}x{mesh[1]}x{mesh[2]}")

    wall, per_dir, h, symmetry, reds = full_mesh(system, settings, meshes, args.procs)
    n_modes = {d: len(v["omega"]) for d, v in per_dir.items()}
    total_modes = sum(n_modes.values())
    print(f"mesh {mesh[0]}x{mesh[1]}x{mesh[2]}, both directions, {args.procs} processes: {wall:.2f} s wall for "
          f"{total_modes} incident modes ({wall / total_modes * 1e3:.3f} ms wall, "
          f"{wall * args.procs / total_modes * 1e3:.3f} ms cpu per mode)")
    print(f"in-plane point group of the system: {symmetry.order} operations (force-constant mismatch "
          f"{symmetry.max_ifc_violation:.1e}); irreducible columns " +
          ", ".join(f"{d} {len(reds[(mesh, d)].representatives)}/{mesh[0] * mesh[1]}" for d in settings.directions))
    for d, v in per_dir.items():
        computed = ~v["symmetry_image"].astype(bool)
        code = np.bincount(v["solve_code"][computed], minlength=5)
        tpr = np.abs(v["transmission"] + v["reflection"] - 1).max()
        print(f"  {d}: {n_modes[d]} modes, {computed.sum()} computed: {code[0]} closed by the band bound, {code[1]} by "
              f"eigenvalues, {code[2] + code[3] + code[4]} scattering solves ({code[4]} dense fallbacks); "
              f"h(300 K) = {h[d][0][0]:.2f} MW/(m^2 K), radiation limit {h[d][1][0]:.1f}; max|T+R-1| = {tpr:.1e}")

    dense, worst, compared, nonzero = dense_sample(system, mesh, settings.directions, n_dense, per_dir)
    dense_total = 0.0
    for d, (per_mode, modes, cols) in dense.items():
        dense_total += per_mode * n_modes[d]
        print(f"  dense baseline {d}: {per_mode * 1e3:.2f} ms per mode ({modes} modes in {cols} columns)")
    print(f"dense baseline extrapolated to the full mesh: {dense_total:.0f} s on one process, "
          f"{dense_total / args.procs:.0f} s on {args.procs} (perfect scaling); max |T_fast - T_dense| = {worst:.1e} over "
          f"{compared} sampled modes ({nonzero} with T > 1e-6)")
    n_ratio, t_rgf, t_den, diff = solve_ratio(system, per_dir, mesh)
    if n_ratio:
        print(f"linear solve alone at {n_ratio} (k_par, omega) points: block-tridiagonal {t_rgf * 1e3:.2f} ms, dense "
              f"{t_den * 1e3:.2f} ms (x{t_den / t_rgf:.1f}); max amplitude difference {diff:.1e}")
    per_mode_fast = wall * args.procs / total_modes
    per_mode_dense = dense_total / total_modes
    print(f"cpu seconds per incident mode: fast {per_mode_fast * 1e3:.3f} ms, dense {per_mode_dense * 1e3:.2f} ms "
          f"(x{per_mode_dense / per_mode_fast:.1f})")
    h_lr, h_rl = h["left_to_right"][0][0], h["right_to_left"][0][0]
    print(f"rectification at 300 K: {200 * abs(h_lr - h_rl) / (h_lr + h_rl):.2f} % ({h_lr:.2f} vs {h_rl:.2f} MW/(m^2 K))")
    speedup = (dense_total / args.procs) / wall
    print(f"speedup_vs_dense={speedup:.1f} seconds_full_mesh={wall:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
