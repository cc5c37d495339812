"""Force-constant stage on the shipped default model: cost, savings, scaling and precision, in one run.

    python benchmarks/force_constants.py            # inputs/quick.toml geometry: 4+4 cells, cutoff 4 Å
    python benchmarks/force_constants.py --quick    # 4+4 cells, cutoff 2.5 Å (a few minutes on 2 cores)
    python benchmarks/force_constants.py --input my.toml [--ranks 4] [--json out.json]

One relaxation (structure + relax stages, in this process) gives the slab; then, all on the same
displaced supercells:

1. force calls: phonopy's symmetry-reduced displacements per part against the naive 6 x atoms;
2. seconds per force call (float64, one ASE call per supercell) and with batched MACE calls
   (``force_constants.batch_size``), with the largest force difference between the two;
3. float32 against float64: max |dPhi| per part and the relative change of the bulk frequencies
   at X and L of both leads;
4. the interface route (``device_route = "interface"``) at radii 3, 4, 6, 8 Å and the automatic one
   (the MLIP's receptive field): device force calls saved, and its device force constants against
   the full route's (pairs of device atoms within the cutoff, what the transport stage uses),
   reusing the float64 forces; and the displacement count for the paper's 42 + 42 cells;
5. strong scaling: the force-constant stage launched with ``mpiexec -n 1`` and ``-n RANKS`` (one torch
   thread per rank), and one rank with a thread per core, on copies of the relaxed file; wall time of
   the stage (``/force_constants`` wall_seconds, including rank 0's serial tail: phonopy solve, lead
   phonons, HDF5 write) and efficiency T1 / (RANKS x T_RANKS).  On a shared machine this is noisy:
   the load average is printed with each run.

The last line reads ``symmetry_saving=<naive/reduced> interface_saving=<full/interface device calls at the
automatic radius> batched_speedup=<...> f32_max_rel_freq=<...> strong_scaling_efficiency=<...>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

QUICK = """
[structure]
n_cells_left = 4
n_cells_right = 4
buffer_cells = 2

[relax]
fmax_eV_A = 0.05
lattice = "model"

[force_constants]
cutoff_A = 2.5
"""

FULL = """
[structure]
n_cells_left = 4
n_cells_right = 4
buffer_cells = 3

[relax]
fmax_eV_A = 0.02
lattice = "model"

[force_constants]
cutoff_A = 4.0
"""


def _base_input(path: Path | None, quick: bool) -> dict:
    """The input tables the benchmark uses (a user input's model path made absolute)."""
    import tomllib

    if path is None:
        return tomllib.loads(QUICK if quick else FULL)
    data = tomllib.loads(path.read_text())
    model = data.get("mlip", {}).get("model")
    if model and model != "default" and not Path(model).is_absolute() and (path.parent / model).exists():
        data["mlip"]["model"] = str((path.parent / model).resolve())
    return data


def _write_input(folder: Path, base: dict, stages: list[str]) -> Path:
    import copy

    import tomli_w

    data = copy.deepcopy(base)
    data.setdefault("run", {}).update(output="bench.h5", stages=stages)
    path = folder / "in.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def _env(ranks: int) -> dict:
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1",
               PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe", PYTHONPATH=str(REPO))
    return env


def _frequencies(phonon, q) -> np.ndarray:
    phonon.run_qpoints([q])
    return np.sort(np.asarray(phonon.qpoints.frequencies[0], float))


def _device_pairs_within(het, ifc_a, ifc_b, cutoff: float) -> tuple[float, float]:
    dist = np.linalg.norm(ifc_a.pair_vectors(), axis=1)
    dev = het.device_indices
    sel = (dist <= cutoff + 1e-9) & np.isin(ifc_a.i, dev) & np.isin(ifc_a.j, dev)
    return float(np.abs(ifc_a.phi[sel] - ifc_b.phi[sel]).max()), float(np.abs(ifc_b.phi[sel]).max())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="4+4 cells, 2 buffer cells, cutoff 2.5 Å")
    p.add_argument("--input", type=Path, help="a TOML input whose structure, mlip and force_constants are used")
    p.add_argument("--ranks", type=int, default=2, help="ranks of the parallel run (default 2)")
    p.add_argument("--radius", type=float, default=None, help="an extra interface_radius_A to try (3, 4, 6, 8 Å and the automatic one always are)")
    p.add_argument("--batch", type=int, default=4, help="supercells per batched MACE call")
    p.add_argument("--workdir", type=Path, default=None, help="keep files here (default: a temporary folder)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    p.add_argument("--no-mpi", action="store_true", help="skip the mpiexec runs")
    args = p.parse_args(argv)

    from hpc_itc import config
    from hpc_itc.cli import main as cli_main
    from hpc_itc.core import force_constants as fc
    from hpc_itc.core import mlip
    from hpc_itc.parallel import SerialComm
    from hpc_itc.stages.context import Context
    from hpc_itc.store.file import ResultsFile

    base = _base_input(args.input, args.quick)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_fc_"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"workdir": str(work)}
    t0 = time.perf_counter()

    # ---- relax once ----------------------------------------------------------------------------
    relax_dir = work / "relaxed"
    relax_dir.mkdir(exist_ok=True)
    inp = _write_input(relax_dir, base, ["structure", "relax"])
    if not (relax_dir / "bench.h5").exists() or not ResultsFile(relax_dir / "bench.h5").is_complete("relax"):
        assert cli_main([str(inp)]) == 0
    cfg = config.load(inp)
    ctx = Context(comm=SerialComm(), cfg=cfg, results=ResultsFile(cfg.output_path))
    het = ctx.relaxed()
    fc_cfg = cfg.force_constants
    cutoff = fc_cfg.cutoff_A
    threads = os.cpu_count() or 1
    print(f"slab: {len(het.atoms)} atoms ({len(het.device_indices)} in the device), cutoff {cutoff} Å, model {cfg.model}, "
          f"{threads} torch threads; relax {time.perf_counter() - t0:.0f} s; work in {work}; load average {os.getloadavg()[0]:.1f}", flush=True)

    # ---- 1 + 2: counts, float64 forces, seconds per call, batching -------------------------------
    calc64 = mlip.load_calculator(cfg.model, dtype="float64", num_threads=threads)
    plans64 = fc.plans_for(het, replace(fc_cfg, device_route="full"))
    # warm-up: the first model call pays for lazy initialisation
    mlip.evaluate_forces(calc64, [fc.displaced_atoms(plans64[0].phonon, 0)])
    forces64, per_call = {}, {}
    print("\npart        atoms/supercell  reduced  naive  naive/reduced  s/call(f64)", flush=True)
    for plan in plans64:
        structures = [fc.displaced_atoms(plan.phonon, k) for k in range(plan.n_displacements)]
        t = time.perf_counter()
        forces64[plan.name] = mlip.evaluate_forces(calc64, structures, 1)
        per_call[plan.name] = (time.perf_counter() - t) / plan.n_displacements
        print(f"{plan.name:11s} {len(plan.phonon.supercell):15d} {plan.n_displacements:8d} {plan.n_displacements_naive:6d} "
              f"{plan.n_displacements_naive / plan.n_displacements:14.2f} {per_call[plan.name]:12.3f}", flush=True)
    n_reduced = sum(p.n_displacements for p in plans64)
    n_naive = sum(p.n_displacements_naive for p in plans64)
    out["calls"] = {p.name: {"reduced": p.n_displacements, "naive": p.n_displacements_naive, "seconds_per_call": per_call[p.name],
                             "supercell_atoms": len(p.phonon.supercell)} for p in plans64}
    print(f"all parts: {n_reduced} symmetry-reduced force calls vs {n_naive} naive (x{n_naive / n_reduced:.2f})")

    device = plans64[2]

    # timing on one set of device supercells, best of 2, interleaved: float64/float32, one call each/batched
    calc32 = mlip.load_calculator(cfg.model, dtype="float32", num_threads=threads)
    mlip.evaluate_forces(calc32, [fc.displaced_atoms(plans64[0].phonon, 0)])
    subset = list(range(min(device.n_displacements, 2 * args.batch)))
    timing = {}
    for _ in range(2):
        for name, calc, batch in (("f64", calc64, 1), ("f64_batched", calc64, args.batch), ("f32", calc32, 1), ("f32_batched", calc32, args.batch)):
            structures = [fc.displaced_atoms(device.phonon, k) for k in subset]
            t = time.perf_counter()
            got = mlip.evaluate_forces(calc, structures, batch)
            timing[name] = min(timing.get(name, np.inf), (time.perf_counter() - t) / len(subset))
            if name == "f64_batched":
                batch_diff = max(float(np.abs(a - forces64["device"][k]).max()) for a, k in zip(got, subset))
    out["timing_device_seconds_per_call"] = timing
    out["batched"] = {"batch_size": args.batch, "max_abs_dF_eV_A": batch_diff, "speedup_f64": timing["f64"] / timing["f64_batched"]}
    print(f"\ndevice supercells ({len(device.phonon.supercell)} atoms), s per supercell, best of 2 over {len(subset)}: "
          + ", ".join(f"{k} {v:.3f}" for k, v in timing.items()))
    print(f"batched MACE calls of {args.batch}: x{timing['f64'] / timing['f64_batched']:.2f} (float64), "
          f"x{timing['f32'] / timing['f32_batched']:.2f} (float32) vs one call each; max |dF| batched vs one by one {batch_diff:.1e} eV/Å; "
          f"float32 x{timing['f64'] / timing['f32']:.2f} faster than float64")

    stats = {}
    for plan in plans64:
        stats[plan.name] = fc.produce(plan.phonon, np.array(forces64[plan.name]))

    # ---- 3: float32 vs float64 ---------------------------------------------------------------------
    plans32 = fc.plans_for(het, replace(fc_cfg, device_route="full"))
    print("\nfloat32 vs float64: part, max|dPhi| (eV/Å^2), max|Phi| (eV/Å^2), relative change of the bulk frequencies", flush=True)
    out["float32"] = {}
    for p32, p64 in zip(plans32, plans64):
        structures = [fc.displaced_atoms(p32.phonon, k) for k in range(p32.n_displacements)]
        f32 = mlip.evaluate_forces(calc32, structures, 1)
        fc.produce(p32.phonon, np.array(f32))
        d = float(np.abs(p32.phonon.force_constants - p64.phonon.force_constants).max())
        scale = float(np.abs(p64.phonon.force_constants).max())
        entry = {"max_abs_dPhi_eV_A2": d, "max_abs_Phi_eV_A2": scale,
                 "max_abs_dF_eV_A": max(float(np.abs(a - b).max()) for a, b in zip(f32, forces64[p32.name]))}
        line = f"  {p32.name:11s} {d:.2e}  {scale:6.2f}"
        if p32.name in fc.LEADS:
            lattice = (het.left_lead if p32.name == "left_lead" else het.right_lead).lattice
            from hpc_itc.core.phonons import FCC_POINTS_CUBIC, reduced_qpoint

            for point in ("X", "L"):
                q = reduced_qpoint(lattice, FCC_POINTS_CUBIC[point])
                w64, w32 = _frequencies(p64.phonon, q), _frequencies(p32.phonon, q)
                rel = float(np.max(np.abs(w32 - w64) / np.abs(w64)))
                entry[f"max_rel_dfreq_{point}"] = rel
                entry[f"freq_{point}_THz_f64"] = w64.round(4).tolist()
                line += f"  {point}: max rel df {rel:.1e}"
        out["float32"][p32.name] = entry
        print(line, flush=True)
    f32_rel = max(v.get(f"max_rel_dfreq_{pt}", 0.0) for v in out["float32"].values() for pt in ("X", "L"))

    # ---- 4: interface route: several radii on the same forces, then the count for the paper's geometry ----
    auto = fc.interface_radius(replace(fc_cfg, interface_radius_A=0.0), cfg.model)
    radii = sorted({*([args.radius] if args.radius else []), 3.0, 4.0, 6.0, 8.0, auto})
    lead_ifcs = {s: fc.real_space_ifc(plans64[s].phonon, plans64[s].unitcell) for s in (0, 1)}
    full_ifc = fc.real_space_ifc(device.phonon, het.atoms)
    deviation = fc.bulk_site_deviation(het)
    out["interface"] = {"auto_radius_A": auto, "device_calls_full": device.n_displacements, "radii": {}}
    print(f"\ninterface route (auto radius = MLIP receptive field {auto:.1f} Å) against the full route, same float64 forces; "
          f"full route: {device.n_displacements} device calls, {len(het.atoms)} slab atoms")
    print("  radius_A  device_calls  saving  zone_atoms  max|dPhi| device pairs within cutoff (eV/Å^2, relative)  bulk-site dev outside (Å)")
    for radius in radii:
        dev_if = fc.plans_for(het, replace(fc_cfg, device_route="interface", interface_radius_A=radius))[2]
        computed = {k: forces64["device"][k] for k in dev_if.task_ids}
        fc.produce(dev_if.phonon, fc.part_forces(dev_if, computed, het, lead_ifcs))
        d_within, scale = _device_pairs_within(het, fc.real_space_ifc(dev_if.phonon, het.atoms), full_ifc, cutoff)
        outside = float(deviation[~dev_if.zone].max()) if (~dev_if.zone).any() else 0.0
        saving = device.n_displacements / max(dev_if.n_force_evaluations, 1)
        out["interface"]["radii"][f"{radius:g}"] = {"device_calls": dev_if.n_force_evaluations, "saving": saving, "zone_atoms": int(dev_if.zone.sum()),
                                                   "max_abs_dPhi_eV_A2": d_within, "max_abs_Phi_eV_A2": scale, "bulk_site_deviation_outside_A": outside}
        print(f"  {radius:8.2f}  {dev_if.n_force_evaluations:12d}  {saving:6.2f}  {int(dev_if.zone.sum()):10d}  {d_within:10.2e} ({d_within / scale:.1e})"
              f"{'':34s}{outside:.4f}", flush=True)
    out["interface"]["saving"] = out["interface"]["radii"][f"{auto:g}"]["saving"]

    # the saving grows with the device: count (no force calls) for the paper's 42 + 42 cells, same leads and settings
    from hpc_itc.core.structure import build

    spec = replace(ctx.spec, n_cells_left=42, n_cells_right=42)
    big = build(spec, het.left_lead, het.right_lead)
    big_full = fc.plans_for(big, replace(fc_cfg, device_route="full"))[2]
    paper = {"slab_atoms": len(big.atoms), "device_calls_full": big_full.n_displacements}
    for radius in sorted({6.0, auto}):
        big_if = fc.plans_for(big, replace(fc_cfg, device_route="interface", interface_radius_A=radius))[2]
        paper[f"device_calls_interface_{radius:g}A"] = big_if.n_force_evaluations
        print(f"  42 + 42 cells (unrelaxed slab of {len(big.atoms)} atoms; displacement count only), radius {radius:g} Å: "
              f"{big_if.n_force_evaluations} of {big_full.n_displacements} device calls (x{big_full.n_displacements / big_if.n_force_evaluations:.1f} fewer)")
    out["interface"]["paper_geometry"] = paper

    # ---- 5: strong scaling -------------------------------------------------------------------------------
    eff = float("nan")
    if not args.no_mpi and shutil.which("mpiexec"):
        walls = {}
        cores = os.cpu_count() or 1
        # (ranks, torch threads per rank): pure MPI scaling with one thread each, and one rank using every core
        runs = [(1, 1), (args.ranks, 1)] + ([(1, cores)] if cores > 1 else [])
        for ranks, nthreads in runs:
            key = f"{ranks}x{nthreads}"
            folder = work / f"ranks{key}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            shutil.copyfile(relax_dir / "bench.h5", folder / "bench.h5")
            run_base = {**base, "mlip": {**base.get("mlip", {}), "num_threads": nthreads}}
            run_inp = _write_input(folder, run_base, ["structure", "relax", "force_constants"])
            t = time.perf_counter()
            proc = subprocess.run(["mpiexec", "-n", str(ranks), "--oversubscribe", sys.executable, "-m", "hpc_itc", str(run_inp)],
                                  capture_output=True, text=True, env=_env(ranks), cwd=folder)
            process = time.perf_counter() - t
            (folder / "log.txt").write_text(proc.stderr)
            if proc.returncode != 0:
                print(proc.stderr[-2000:])
                return 1
            import re

            found = re.findall(r"force evaluations \(rank 0 share\): \d+/\d+ \(100%\), ([0-9.]+) s elapsed", proc.stderr)
            evaluating = float(found[-1]) if found else float("nan")
            with ResultsFile(folder / "bench.h5").open() as f:
                walls[key] = {"stage_seconds": float(f["force_constants"].attrs["wall_seconds"]), "process_seconds": process,
                              "rank0_evaluation_seconds": evaluating, "load_average_1min_after": os.getloadavg()[0]}
            print(f"mpiexec -n {ranks}, {nthreads} torch thread(s) per rank: force-constant stage {walls[key]['stage_seconds']:.1f} s, "
                  f"of which rank 0 evaluating {evaluating:.1f} s (process {process:.1f} s; load average {os.getloadavg()[0]:.1f} on {cores} cores)", flush=True)
        t1, tn = walls["1x1"]["stage_seconds"], walls[f"{args.ranks}x1"]["stage_seconds"]
        eff = t1 / (args.ranks * tn)
        out["scaling"] = {"ranks": args.ranks, "walls": walls, "speedup": t1 / tn, "efficiency": eff}
        print(f"strong scaling 1 -> {args.ranks} ranks (one thread each): speedup {t1 / tn:.2f}, efficiency {eff:.2f}"
              + (f"; one rank with {cores} threads: {walls[f'1x{cores}']['stage_seconds']:.1f} s" if cores > 1 else ""))

    out["total_seconds"] = time.perf_counter() - t0
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    print(f"\nsymmetry_saving={n_naive / n_reduced:.2f} interface_saving={out['interface']['saving']:.2f} "
          f"batched_speedup={out['batched']['speedup_f64']:.2f} f32_max_rel_freq={f32_rel:.1e} strong_scaling_efficiency={eff:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
