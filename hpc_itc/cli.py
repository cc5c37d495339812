"""Command line: ``python -m hpc_itc INPUT.toml`` and the subcommands (argparse only: each one is a function
of :mod:`hpc_itc.driver` or :mod:`hpc_itc.tools`).

    python -m hpc_itc INPUT.toml             run the pipeline (also under srun / mpiexec)
    python -m hpc_itc run INPUT.toml         the same
    python -m hpc_itc validate INPUT.toml    check the input only; touches nothing
    python -m hpc_itc inspect RESULT.h5 [--json] [--verify]
    python -m hpc_itc export RESULT.h5 OUT.extxyz [--stage structure|relax]
    python -m hpc_itc export-phonopy RESULT.h5 OUTDIR [--part all|left_lead|right_lead|device]
    python -m hpc_itc plot RESULT.h5 [MORE.h5 ...] --out DIR
    python -m hpc_itc schema                 print the input reference (Markdown)
    python -m hpc_itc sample SAMPLE.toml     training data: rattled + MD configurations, selection, VASP inputs
    python -m hpc_itc collect-vasp FOLDER... --out OUT.extxyz   finished VASP runs -> labelled extxyz

Exit status: 0 success, 2 bad input (one line on stderr naming the key), 1 failure.
"""

from __future__ import annotations

import argparse
import sys

from hpc_itc import __version__
from hpc_itc import log as logmod
from hpc_itc.errors import InputError, InvalidInput, message_line

SUBCOMMANDS = ("run", "validate", "inspect", "export", "export-phonopy", "plot", "cohp-inputs", "evaluate", "check-model", "train", "sample", "collect-vasp", "schema", "sweep-point", "sweep-collect", "sweep-size")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hpc_itc", description="Interfacial thermal conductance from a machine-learned potential.")
    p.add_argument("--version", action="version", version=f"hpc_itc {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the pipeline described by a TOML input")
    r.add_argument("input")
    v = sub.add_parser("validate", help="check a TOML input without running anything")
    v.add_argument("input")
    i = sub.add_parser("inspect", help="summarise a results file")
    i.add_argument("result")
    i.add_argument("--json", action="store_true", help="one JSON object on stdout")
    i.add_argument("--verify", action="store_true", help="check every stage against its checksum; exit 1 when one is corrupt")
    e = sub.add_parser("export", help="write a stored structure as extxyz (or any ASE format by extension)")
    e.add_argument("result")
    e.add_argument("out")
    e.add_argument("--stage", choices=("structure", "relax"), default="relax")
    ep = sub.add_parser("export-phonopy", help="force constants in phonopy's own format (phonopy_params.yaml per part)")
    ep.add_argument("result")
    ep.add_argument("out_dir")
    ep.add_argument("--part", choices=("all", "left_lead", "right_lead", "device"), default="all")
    pl = sub.add_parser("plot", help="figures (PNG and PDF) from one or more results files")
    pl.add_argument("results", nargs="+")
    pl.add_argument("--out", required=True, help="folder for the figures")
    pl.add_argument("--temperature", type=float, default=300.0, metavar="K",
                    help="temperature of the ITC, cumulative and spectral figures (one of transport.temperatures_K; default 300)")
    c = sub.add_parser("cohp-inputs", help="VASP + LOBSTER inputs for a slab cut from the relaxed interface")
    c.add_argument("result")
    c.add_argument("outdir")
    c.add_argument("--thickness", type=float, default=30.0, help="slab thickness in Å (paper: about 30)")
    c.add_argument("--vacuum", type=float, default=15.0, help="vacuum in Å")
    ev = sub.add_parser("evaluate", help="RMSE of a model on labelled data, per config_type (paper Table 1)")
    ev.add_argument("model", help="'default', a MACE model file, or a foundation-model name")
    ev.add_argument("data", help="extxyz with labels")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--parity", metavar="FILE.png", help="also write a parity plot")
    ev.add_argument("--energy-key", default="REF_energy")
    ev.add_argument("--forces-key", default="REF_forces")
    ev.add_argument("--stress-key", default="REF_stress")
    ev.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ev.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    ck = sub.add_parser("check-model", help="lattice constants and phonons of bulk Cu and diamond against experiment")
    ck.add_argument("model", help="'default', a MACE model file, or a foundation-model name")
    ck.add_argument("--json", action="store_true")
    ck.add_argument("--plot", metavar="FILE.png", help="also plot the dispersions and DOS")
    ck.add_argument("--lattice", default="relaxed", choices=("relaxed", "experimental"),
                    help="phonons at the model's zero-pressure lattice constants (default) or at the measured ones")
    ck.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ck.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    tr = sub.add_parser("train", help="train or fine-tune a MACE model (mace_run_train with the paper's recipe)")
    tr.add_argument("input")
    tr.add_argument("--dry-run", action="store_true", help="print the mace_run_train command only")
    tr.add_argument("--member", type=int, default=None, help="train only committee member K (1..[committee] size; one Slurm array task each)")
    sub.add_parser("schema", help="print the input-file reference")
    from hpc_itc.tools.sweep import add_subparsers as add_sweep_subparsers

    add_sweep_subparsers(sub)
    sa = sub.add_parser("sample", help="training data for the MLIP: rattled and MD configurations, selection, VASP inputs")
    sa.add_argument("input")
    cv = sub.add_parser("collect-vasp", help="finished VASP runs -> extxyz with REF_energy, REF_forces, REF_stress")
    cv.add_argument("folders", nargs="+", help="VASP run folders, or folders holding them")
    cv.add_argument("--out", required=True, help="output .extxyz")
    cv.add_argument("--skip-unfinished", action="store_true", help="warn about unfinished folders instead of failing")
    cv.add_argument("--config-type", default=None, help="config_type for folders without hpc_itc.json (default 'vasp')")
    return p


def _validate_any(path: str) -> int:
    """``validate`` for every input kind the program takes: a run input, or (by its table) a sweep,
    a training or a sampling input."""
    from hpc_itc.config import read_toml

    raw = read_toml(path)
    if "sweep" in raw:
        from hpc_itc.tools.sweep import expand

        points = expand(path)  # checks the [sweep] table and validates every point as a run input
        print(f"ok: {path} is a valid sweep input ({len(points)} points; each passes the run-input checks)")
        return 0
    if "train" in raw:
        from hpc_itc.tools.train import load as load_train

        load_train(path)
        print(f"ok: {path} is a valid training input (python -m hpc_itc train {path} --dry-run shows the command)")
        return 0
    if "sample" in raw or "dft" in raw:
        from hpc_itc.tools.sample import load_sample_config

        load_sample_config(path)
        print(f"ok: {path} is a valid sampling input")
        return 0
    from hpc_itc.driver import validate

    return validate(path)


def main(argv: list[str] | None = None) -> int:
    logmod.quiet_known_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in SUBCOMMANDS and not argv[0].startswith("-"):
        argv = ["run", *argv]
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from hpc_itc.driver import run

            return run(args.input)
        if args.command == "validate":
            return _validate_any(args.input)
        if args.command == "inspect":
            from hpc_itc.tools.summary import inspect_file

            return inspect_file(args.result, as_json=args.json, verify=args.verify)
        if args.command == "export":
            from hpc_itc.tools.export import export_structure

            return export_structure(args.result, args.out, args.stage)
        if args.command == "export-phonopy":
            from hpc_itc.tools.export import export_phonopy_main

            return export_phonopy_main(args.result, args.part, args.out_dir)
        if args.command == "plot":
            from hpc_itc.tools.plot import plot_files

            for name, where in plot_files(args.results, args.out, args.temperature).items():
                print(f"{name}: {where}")
            return 0
        if args.command == "cohp-inputs":
            from hpc_itc.tools.cohp_inputs import cohp_inputs_main

            return cohp_inputs_main(args.result, args.outdir, args.thickness, args.vacuum)
        if args.command == "evaluate":
            from hpc_itc.tools.evaluate import main_evaluate

            return main_evaluate(args)
        if args.command == "sample":
            from hpc_itc.tools.sample import main_sample

            return main_sample(args.input)
        if args.command == "collect-vasp":
            from hpc_itc.tools.collect_vasp import main_collect

            return main_collect(args.folders, args.out, skip_unfinished=args.skip_unfinished, config_type=args.config_type)
        if args.command == "check-model":
            from hpc_itc.tools.check_model import main_check_model

            return main_check_model(args)
        if args.command == "train":
            from hpc_itc.tools.train import main_train

            return main_train(args.input, dry_run=args.dry_run, member=args.member)
        if args.command in ("sweep-point", "sweep-collect", "sweep-size"):
            from hpc_itc.tools.sweep import dispatch as sweep_dispatch

            return sweep_dispatch(args)
        if args.command == "schema":
            from hpc_itc.config import schema_markdown

            print(schema_markdown())
            return 0
    except (InputError, InvalidInput) as exc:
        print(message_line(exc), file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `inspect ... | head`: the reader left, nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit must not fail again
        return 0
    except KeyboardInterrupt:
        print("error: interrupted; finished work is checkpointed, rerun the same command to resume", file=sys.stderr)
        return 130
    return 1
