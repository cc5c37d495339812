"""``python -m hpc_itc collect-vasp FOLDER... --out OUT.extxyz``: finished VASP runs -> labelled extxyz."""

from __future__ import annotations

import sys

from hpc_itc.core.dft import collect
from hpc_itc.errors import InvalidInput, message_line


def main_collect(folders: list[str], out: str, skip_unfinished: bool = False, config_type: str | None = None) -> int:
    """``python -m hpc_itc collect-vasp FOLDER... --out OUT.extxyz``: 0 ok, 2 an unfinished folder or bad argument."""
    try:
        frames, skipped = collect(folders, out, skip_unfinished=skip_unfinished, config_type=config_type)
    except InvalidInput as exc:
        print(message_line(exc), file=sys.stderr)
        return 2
    for key, message in skipped:
        print(f"warning: skipped {key}: {message}", file=sys.stderr)
    counts: dict[str, int] = {}
    for a in frames:
        counts[a.info["config_type"]] = counts.get(a.info["config_type"], 0) + 1
    print(f"wrote {len(frames)} labelled configuration(s) to {out} ("
          + ", ".join(f"{k} {v}" for k, v in counts.items())
          + "); keys REF_energy eV, REF_forces eV/Å, REF_stress eV/Å^3 (9, ASE sign: positive = tensile)"
          + (f"; {len(skipped)} unfinished folder(s) skipped" if skipped else ""))
    return 0
