"""``/committee``: h(T) of every member of a model committee, their mean and spread.

Each member's own results (force constants and transport on the relaxed interface of ``mlip.model``)
are a results file of their own, ``<output>.committee/member_<k>.h5``; this group holds what is
needed to quote h with an error bar, and where each number came from (model file and sha256).
The spread is the sample standard deviation over members (ddof = 1): the members are draws of
the model, and with few of them the population formula would understate it.  See docs/results.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hpc_itc.store.h5 import group_complete, read_str_array, write_array

GROUP = "committee"
SPREAD_DOC = "sample standard deviation over the members (ddof = 1)"


@dataclass(frozen=True)
class MemberResult:
    """One member's h(T) per direction, read from its results file."""

    model: str  # the model file
    model_sha256: str
    results_file: str  # relative to the main results file's folder
    itc_MW_m2K: dict[str, np.ndarray]  # direction -> h at the committee's temperatures
    n_force_evaluations: int


def committee_table(members: list[MemberResult], directions: list[str]) -> np.ndarray:
    """h of every member, direction and temperature: shape (members, directions, temperatures), MW/(m^2 K)."""
    return np.array([[m.itc_MW_m2K[d] for d in directions] for m in members], dtype=float)


def write_committee(g, members: list[MemberResult], directions: list[str], temperatures_K: np.ndarray,
                    main_itc_MW_m2K: dict[str, np.ndarray]) -> None:
    """Fill ``/committee``; ``main_itc_MW_m2K``: /transport's h of mlip.model, kept beside for comparison."""
    itc = committee_table(members, directions)
    write_array(g, "temperatures", np.asarray(temperatures_K, dtype=float), "K")
    write_array(g, "directions", np.array(directions))
    write_array(g, "member_model", np.array([m.model for m in members]))
    write_array(g, "member_model_sha256", np.array([m.model_sha256 for m in members]))
    write_array(g, "member_results_file", np.array([m.results_file for m in members]),
                doc="each member's results file (force constants, transport), relative to this file's folder")
    write_array(g, "member_force_evaluations", np.array([m.n_force_evaluations for m in members]))
    write_array(g, "itc", itc, "MW/(m^2 K)", doc="rows: members; then directions (as 'directions'), temperatures")
    write_array(g, "itc_mean", itc.mean(axis=0), "MW/(m^2 K)", doc="mean over the members: (directions, temperatures)")
    write_array(g, "itc_spread", itc.std(axis=0, ddof=1), "MW/(m^2 K)", doc=SPREAD_DOC)
    write_array(g, "itc_main_model", np.array([main_itc_MW_m2K[d] for d in directions]), "MW/(m^2 K)",
                doc="h of mlip.model (/transport), which relaxed the interface every member uses")
    g.attrs["n_members"] = len(members)
    g.attrs["spread"] = SPREAD_DOC


def is_complete(f) -> bool:
    return group_complete(f, GROUP)


@dataclass(frozen=True)
class CommitteeItc:
    """``/committee`` as read back: h (members, directions, temperatures) and where it came from."""

    temperatures_K: np.ndarray
    directions: list[str]
    itc_MW_m2K: np.ndarray
    member_model: list[str]
    member_results_file: list[str]

    @property
    def mean(self) -> np.ndarray:
        return self.itc_MW_m2K.mean(axis=0)

    @property
    def spread(self) -> np.ndarray:
        return self.itc_MW_m2K.std(axis=0, ddof=1)

    def at(self, direction: str, temperature_K: float) -> np.ndarray:
        """h of every member for one direction and stored temperature."""
        t = int(np.argmin(np.abs(self.temperatures_K - temperature_K)))
        return self.itc_MW_m2K[:, self.directions.index(direction), t]


def read_committee(f) -> CommitteeItc | None:
    """The committee of a results file, or None when it has none."""
    if not is_complete(f):
        return None
    g = f[GROUP]
    return CommitteeItc(g["temperatures"][()], read_str_array(g["directions"]), g["itc"][()],
                        read_str_array(g["member_model"]), read_str_array(g["member_results_file"]))


def paired_ratio(a: CommitteeItc, b: CommitteeItc, direction: str, temperature_K: float) -> tuple[float, float]:
    """(mean, spread) over members of h_b / h_a for the same members (e.g. N-terminated over bare): the model
    uncertainty of a gain, with what the members share cancelling.  The member model files must agree."""
    if [m.rsplit("/", 1)[-1] for m in a.member_model] != [m.rsplit("/", 1)[-1] for m in b.member_model]:
        raise ValueError("the two committees have different members; a paired ratio needs the same models")
    ratio = b.at(direction, temperature_K) / a.at(direction, temperature_K)
    return float(ratio.mean()), float(ratio.std(ddof=1))


def summary(f) -> dict[str, Any]:
    """The committee entries of ``inspect``: per direction and temperature the mean, spread and members' h."""
    c = read_committee(f)
    if c is None:
        return {}
    g = f[GROUP]
    out: dict[str, Any] = {}
    for i, d in enumerate(c.directions):
        out[d] = {f"{t:.1f}": {"mean": float(c.mean[i, j]), "spread": float(c.spread[i, j]),
                               "members": [float(x) for x in c.itc_MW_m2K[:, i, j]]}
                  for j, t in enumerate(c.temperatures_K)}
    return {"committee_itc_MW_m2K": out, "committee_members": [m.rsplit("/", 1)[-1] for m in c.member_model],
            "committee_spread": str(g.attrs["spread"])}
