"""The adversarial probe battery (issue 16): a cluster user's accidents, each of which must end in one
clear line and a non-zero exit (or be recomputed with a warning), never a traceback, never a silently
wrong number, and never a change to an earlier results file (checked byte for byte).

Every probe runs the real command line in-process (``hpc_itc.cli.main``) against a copy of one finished
run of the small input (``finished_run``), so the battery costs a few seconds beyond that run.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import sys

import h5py
import numpy as np
import pytest
from small_input import SMALL

from hpc_itc.cli import main
from hpc_itc.tools.summary import summary


@pytest.fixture()
def run_dir(tmp_path, finished_run):
    """A folder with a copy of the finished small run (small.h5) and its input (in.toml)."""
    path, out = finished_run
    shutil.copyfile(out, tmp_path / "small.h5")
    shutil.copyfile(path, tmp_path / "in.toml")
    return tmp_path


def one_error_line(capsys, rc: int, allowed=(1, 2)) -> str:
    """The call failed with one line on stderr starting with 'error:' and no traceback."""
    captured = capsys.readouterr()
    assert rc in allowed, captured.err
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, captured.err
    return lines[0]


def write_input(folder, text: str, name: str = "probe.toml"):
    p = folder / name
    p.write_text(text)
    return str(p)


# ---- inputs that cannot be run ---------------------------------------------------------------------
BAD_INPUTS = {
    "deep_nesting": ("x = " + "[" * 3000 + "]" * 3000, "input", "nests"),
    "50MB_string": ('[run]\noutput = "' + "a" * 50_000_000 + '.h5"\n', "input", "at most"),
    "long_string_value": ('[mlip]\nmodel = "' + "m" * 5000 + '"\n', "mlip.model", "at most 4096"),
    "long_model_name": ('[mlip]\nmodel = "' + "m" * 300 + '.model"\n', "mlip.model", "255 bytes"),
    "long_output_name": ('[run]\noutput = "' + "o" * 300 + '.h5"\n', "run.output", "255 bytes"),
    "newline_in_string": ('[run]\noutput = "a\\nb.h5"\n', "run.output", "control characters"),
    "n_cells_1e20": ("[structure]\nn_cells_left = 100000000000000000000\n", "structure.n_cells_left", "<= 10000"),
    "q_mesh_2000": ("[transport]\nq_mesh = [2000, 2000, 2000]\n", "transport.q_mesh", "<= 1000"),
    "temperature_1e9": ("[transport]\ntemperatures_K = [1e9]\n", "transport.temperatures_K", "<= 10000"),
    "over_the_limits": ("[structure]\nn_cells_left = 9000\nn_cells_right = 9000\n", "run.allow_large", "slab_atoms"),
    "q_mesh_1000": ("[transport]\nq_mesh = [1000, 1000, 1000]\n", "run.allow_large", "incident_modes"),
    "sweep_mesh_2000": ('[transport]\nq_mesh_sweep = ["2000x2000x2000"]\n', "transport.q_mesh_sweep", "at most 1000"),
    "sweep_mesh_1000": ('[transport]\nq_mesh_sweep = ["1000x1000x1000"]\n', "run.allow_large", "incident_modes"),
    "device_too_short": ("[structure]\nn_cells_left = 2\n[force_constants]\ncutoff_A = 4.5\n", "structure.n_cells_left", "principal layers"),
    "output_under_proc": ('[run]\noutput = "/proc/hpc_itc_probe/r.h5"\n', "run.output", ""),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_input_is_one_line_before_any_work(run_dir, capsys, name, command):
    text, key, words = BAD_INPUTS[name]
    if command == "validate" and name == "output_under_proc":
        pytest.skip("validate does not write: the run finds /proc unwritable when it takes the lock")
    before = (run_dir / "small.h5").read_bytes()
    inp = write_input(run_dir, text)
    rc = main(["validate", inp] if command == "validate" else [inp])
    line = one_error_line(capsys, rc, allowed=(2,))
    assert line.startswith(f"error: {key}:") and words in line, line
    assert (run_dir / "small.h5").read_bytes() == before
    assert not (run_dir / "results.h5").exists()  # the probe inputs' default output was never created


def test_empty_input_says_what_defaults_it_runs(tmp_path, capsys):
    inp = write_input(tmp_path, "")
    assert main(["validate", inp]) == 0
    out = capsys.readouterr().out
    assert "defaults: [run], [structure]" in out and "cu/diamond, 6+6 device layers" in out
    assert "estimate:" in out and "slab atoms" in out


def test_allow_large_is_the_override(tmp_path, capsys):
    inp = write_input(tmp_path, "[run]\nallow_large = true\n[transport]\nq_mesh = [1000, 1000, 1000]\n")
    assert main(["validate", inp]) == 0
    assert "incident modes" in capsys.readouterr().out


def test_crafted_model_pickle_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.model").write_bytes(pickle.dumps(Payload()))
    inp = write_input(tmp_path, '[mlip]\nmodel = "evil.model"\n')
    line = one_error_line(capsys, main(["validate", inp]), allowed=(2,))
    assert line.startswith("error: mlip.model:") and "system" in line and "trust" in line
    assert not marker.exists()


def test_newline_in_an_incar_value_is_refused(tmp_path):
    from hpc_itc.errors import InputError
    from hpc_itc.tools.sample import validate_sample

    with pytest.raises(InputError) as err:
        validate_sample({"dft": {"incar": {"SYSTEM": "x\nNSW = 100"}}}, base_dir=tmp_path)
    assert err.value.key == "dft.incar.SYSTEM" and "one line" in err.value.message


# ---- the output folder fails ------------------------------------------------------------------------
def test_full_disk_while_writing_a_stage_is_one_line_and_keeps_the_file(run_dir, capsys, monkeypatch):
    from hpc_itc.store import file as file_store

    inp = str(run_dir / "in.toml")
    with h5py.File(run_dir / "small.h5", "a") as f:  # the ldos stage must run again
        del f["ldos"]
    before = (run_dir / "small.h5").read_bytes()

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(file_store.shutil, "copyfile", full)
    line = one_error_line(capsys, main([inp]), allowed=(1,))
    assert "No space left on device" in line and "rerun" in line
    assert (run_dir / "small.h5").read_bytes() == before
    assert not (run_dir / "small.h5.lock").exists()


# ---- results files that are not what they claim -----------------------------------------------------
def _flip_data_byte(path, dataset: str) -> None:
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    with open(path, "r+b") as fh:
        fh.seek(offset + 3)
        b = fh.read(1)
        fh.seek(offset + 3)
        fh.write(bytes([b[0] ^ 0x10]))


@pytest.mark.parametrize("command", ["inspect", "export", "export-phonopy", "plot", "run"])
def test_bit_flip_in_a_finished_file_is_reported_as_corrupt(run_dir, capsys, command):
    _flip_data_byte(run_dir / "small.h5", "relax/positions")
    before = (run_dir / "small.h5").read_bytes()
    out = run_dir / "out"
    argv = {"inspect": ["inspect", str(run_dir / "small.h5")],
            "export": ["export", str(run_dir / "small.h5"), str(out / "x.extxyz"), "--stage", "relax"],
            "export-phonopy": ["export-phonopy", str(run_dir / "small.h5"), str(out)],
            "plot": ["plot", str(run_dir / "small.h5"), "--out", str(out)],
            "run": [str(run_dir / "in.toml")]}[command]
    if command == "run":  # a later stage reads /relax: make the ldos stage run again
        with h5py.File(run_dir / "small.h5", "a") as f:
            del f["ldos"]
        before = (run_dir / "small.h5").read_bytes()
    line = one_error_line(capsys, main(argv), allowed=(2,))
    assert "corrupt" in line and "stage relax" in line, line
    assert (run_dir / "small.h5").read_bytes() == before


def test_inspect_verify_names_the_corrupt_stage(run_dir, capsys):
    assert main(["inspect", "--verify", str(run_dir / "small.h5")]) == 0
    out = capsys.readouterr().out
    assert out.count("ok (checksum matches)") == 5 and "verified" in out
    _flip_data_byte(run_dir / "small.h5", "transport/left_to_right/frequency")
    assert main(["inspect", "--verify", str(run_dir / "small.h5")]) == 1
    out = capsys.readouterr().out
    assert "transport        fails its checksum" in out and "CORRUPT: transport" in out


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "middle_flip"])
@pytest.mark.parametrize("command", ["export-phonopy", "inspect", "export"])
def test_damaged_file_is_one_line(run_dir, capsys, damage, command):
    path = run_dir / "small.h5"
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(1).bytes(len(data)))
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # 64 bytes in the middle of the file, wherever they fall (data or HDF5 metadata)
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 64]) + data[mid + 64 :])
    before = path.read_bytes()
    argv = {"export-phonopy": ["export-phonopy", str(path), str(run_dir / "out")],
            "inspect": ["inspect", str(path)],
            "export": ["export", str(path), str(run_dir / "x.extxyz")]}[command]
    rc = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if damage == "middle_flip" and rc == 0:  # the bytes fell where nothing reads them (free space, an unread attribute)
        pass
    else:
        assert rc == 2 and len([x for x in captured.err.splitlines() if x.startswith("error:")]) == 1, captured.err
    assert path.read_bytes() == before


# ---- labelled data that cannot be compared ------------------------------------------------------------
EXTXYZ = {
    "stress_4_components": ('Lattice="3.6 0 0 0 3.6 0 0 0 3.6" Properties=species:S:1:pos:R:3 REF_energy=-3.0 '
                            'REF_stress="1 2 3 4" pbc="T T T"\nCu 0 0 0\n', "4 components"),
    "string_energy": ('Lattice="3.6 0 0 0 3.6 0 0 0 3.6" Properties=species:S:1:pos:R:3 REF_energy=abc pbc="T T T"\nCu 0 0 0\n',
                      "REF_energy"),
    "forces_2_columns": ('Lattice="3.6 0 0 0 3.6 0 0 0 3.6" Properties=species:S:1:pos:R:3:REF_forces:R:2 pbc="T T T"\n'
                         'Cu 0 0 0 0.1 0.2\n', "shape (1, 2)"),
    "zero_atoms": ('Lattice="3.6 0 0 0 3.6 0 0 0 3.6" Properties=species:S:1:pos:R:3 REF_energy=-3.0 pbc="T T T"\n', "no atoms"),
}


@pytest.mark.parametrize("name", sorted(EXTXYZ))
def test_evaluate_on_malformed_extxyz_is_one_line(tmp_path, capsys, name):
    text, words = EXTXYZ[name]
    n_atoms = 0 if name == "zero_atoms" else 1
    (tmp_path / "d.extxyz").write_text(f"{n_atoms}\n{text}")
    line = one_error_line(capsys, main(["evaluate", "default", str(tmp_path / "d.extxyz")]), allowed=(2,))
    assert line.startswith("error: DATA:") and words in line, line


# ---- checkpoints that are not this run's ------------------------------------------------------------
def test_damaged_and_foreign_checkpoints_are_recomputed_with_a_warning(run_dir, capsys, monkeypatch, finished_run_summary):
    """Transport killed after 3 tasks; its checkpoints then truncated, emptied, overwritten with random bytes,
    replaced by another task's file and by another input's; garbage planted for the LDOS stage.  The rerun
    recomputes exactly those (one warning per stage) and reproduces the uninterrupted h."""
    from hpc_itc.store.checkpoints import StageCheckpoints

    with h5py.File(run_dir / "small.h5", "a") as f:
        del f["transport"], f["ldos"]
    real_save, saved = StageCheckpoints.save, []

    def save_then_stop(self, part, task_id, definition, **arrays):
        real_save(self, part, task_id, definition, **arrays)
        saved.append((part, task_id))
        if self.stage == "transport" and len(saved) == 8:
            raise KeyboardInterrupt

    monkeypatch.setattr(StageCheckpoints, "save", save_then_stop)
    assert main([str(run_dir / "in.toml")]) == 130
    monkeypatch.setattr(StageCheckpoints, "save", real_save)
    ck = run_dir / "small.h5.ckpt"
    files = sorted((ck / "transport").rglob("task_*.npz"))
    assert len(files) == 8
    files[0].write_bytes(files[0].read_bytes()[:200])
    files[1].write_bytes(b"")
    files[2].write_bytes(np.random.default_rng(2).bytes(3000))
    shutil.copyfile(files[4], files[3])  # another task's file in its place
    with np.load(files[5]) as d:  # same task, written by a run of another input
        arrays = {k: d[k] for k in d.files if k != "_identity"}
    StageCheckpoints(ck / "transport", "transport", "f" * 64).save(files[5].parent.name, int(files[5].stem[5:]), {}, **arrays)
    (ck / "ldos" / "left_to_right").mkdir(parents=True)
    (ck / "ldos" / "left_to_right" / "task_00000000.npz").write_bytes(b"PK\x03\x04 not a zip")
    capsys.readouterr()
    assert main([str(run_dir / "in.toml")]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    warnings = [line.split("WARNING hpc_itc.stages: ", 1)[1] for line in captured.err.splitlines() if "not reused and recomputed" in line]
    assert len(warnings) == 2, captured.err
    assert warnings[0].startswith("transport: 5 checkpoint file(s)") and "from another input" in warnings[0] and "of another task" in warnings[0]
    assert warnings[1].startswith("ldos: 1 checkpoint file(s)")
    s = summary(run_dir / "small.h5")
    for direction, values in finished_run_summary["itc_MW_m2K"].items():
        for t, h in values.items():
            assert s["itc_MW_m2K"][direction][t] == pytest.approx(h, rel=1e-9)
    assert s["overlap_factor_per_THz"] == pytest.approx(finished_run_summary["overlap_factor_per_THz"], rel=1e-9)
    assert not ck.exists()


def test_changed_key_of_a_later_stage_keeps_the_earlier_ones(run_dir, capsys, monkeypatch):
    """transport.temperatures_K changes: structure..force_constants are reused (no model call); the
    finished transport stage was made with the old value, so the file is refused naming that key."""
    inp = write_input(run_dir, SMALL.format(out="small.h5").replace("temperatures_K = [300.0]", "temperatures_K = [300.0, 400.0]"))
    before = (run_dir / "small.h5").read_bytes()
    line = one_error_line(capsys, main([inp]), allowed=(2,))
    assert "stage transport" in line and "transport.temperatures_K (file [300.0], input [300.0, 400.0])" in line
    assert (run_dir / "small.h5").read_bytes() == before
    with h5py.File(run_dir / "small.h5", "a") as f:  # without the later stages the earlier ones are reused
        del f["transport"], f["ldos"]
    from hpc_itc.core import mlip

    monkeypatch.setattr(mlip, "load_calculator", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no model call")))
    assert main([inp]) == 0
    s = summary(run_dir / "small.h5")
    assert set(s["itc_MW_m2K"]["left_to_right"]) == {"300.0", "400.0"}


# ---- two runs, one file -----------------------------------------------------------------------------
def test_a_second_run_on_a_file_in_use_refuses(run_dir, capsys):
    import json
    import socket

    lock = run_dir / "small.h5.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(), "slurm_job_id": "", "started": "now"}))
    before = (run_dir / "small.h5").read_bytes()
    line = one_error_line(capsys, main([str(run_dir / "in.toml")]), allowed=(2,))
    assert "in use by another run" in line and f"pid {os.getppid()}" in line
    assert lock.exists() and (run_dir / "small.h5").read_bytes() == before


def test_a_stale_lock_and_orphaned_checkpoints_are_cleaned_up(run_dir, capsys):
    import json
    import socket
    import subprocess

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_dir / "small.h5.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "slurm_job_id": ""}))
    orphan = run_dir / "small.h5.ckpt" / "transport" / "mesh-x"  # a SIGKILL while the finished stage's folder was removed
    orphan.mkdir(parents=True)
    (orphan / "task_00000003.npz").write_bytes(b"left behind")
    before = (run_dir / "small.h5").read_bytes()
    assert main([str(run_dir / "in.toml")]) == 0
    assert not (run_dir / "small.h5.ckpt").exists() and not (run_dir / "small.h5.lock").exists()
    assert (run_dir / "small.h5").read_bytes() == before


def test_two_simultaneous_runs_do_not_interleave(run_dir, capsys):
    """A real second process on the same file while the first computes its LDOS: the second refuses."""
    import subprocess
    import time

    with h5py.File(run_dir / "small.h5", "a") as f:
        del f["ldos"]
    first = subprocess.Popen([sys.executable, "-m", "hpc_itc", str(run_dir / "in.toml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.monotonic() + 120
    while not (run_dir / "small.h5.lock").exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    line = one_error_line(capsys, main([str(run_dir / "in.toml")]), allowed=(2,))
    assert "in use by another run" in line and f"pid {first.pid}" in line
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert "ldos" in summary(run_dir / "small.h5")["stages_complete"]


def test_read_only_output_folder_is_one_line(run_dir, capsys, monkeypatch):
    """EACCES when the run takes its lock (as root a chmod would not stop the write, so the refusal is simulated)."""
    from hpc_itc.store import lock as lock_module

    real_open = lock_module.os.open

    def read_only(path, flags, *args):
        if str(path).endswith(".lock") and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(lock_module.os, "open", read_only)
    before = (run_dir / "small.h5").read_bytes()
    line = one_error_line(capsys, main([str(run_dir / "in.toml")]), allowed=(2,))
    assert line.startswith("error: run.output: cannot write next to") and "Permission denied" in line
    assert (run_dir / "small.h5").read_bytes() == before


def test_a_failed_cohp_stage_leaves_no_file(tmp_path, capsys):
    (tmp_path / "lobster").mkdir()  # a folder without LOBSTER output
    inp = write_input(tmp_path, '[run]\noutput = "c.h5"\nstages = ["cohp"]\n[cohp]\nlobster_dir = "lobster"\n')
    line = one_error_line(capsys, main([inp]), allowed=(2,))
    assert line.startswith("error: cohp.lobster_dir:")
    assert not (tmp_path / "c.h5").exists() and not (tmp_path / "c.h5.lock").exists()


def test_a_checkout_named_hpc_itc_in_the_working_folder_gives_no_traceback(tmp_path):
    """`git clone ... hpc_itc` and `python -m hpc_itc` from its parent: either the installed package runs, or one line
    says which folder shadows it (an editable install resolves the top-level name to the folder)."""
    import subprocess

    (tmp_path / "hpc_itc" / "docs").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "hpc_itc", "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr
    if proc.returncode == 0:
        assert proc.stdout.startswith("hpc_itc ")
    else:
        assert proc.returncode == 2 and proc.stderr.startswith("error: hpc_itc: the folder") and "shadows" in proc.stderr
