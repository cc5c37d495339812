"""Second-order force constants by finite displacements (phonopy), forces from the MLIP.

Three parts are computed: ``left_lead`` and ``right_lead`` (bulk layer cells on a
supercell) and ``device`` (the relaxed slab on an in-plane supercell).  The numerical
core is phonopy's: symmetry-reduced displacements, the force-constant solve, and the
symmetrisation that imposes Phi_ij = Phi_ji^T and the acoustic sum rule.  This module
chooses supercells and the displacements to evaluate, turns forces into force constants,
measures what the cutoff and the sum rule change, and the interface's stability.  Forces come
from :func:`hpc_itc.core.mlip.evaluate_forces`; the stage shell
(:mod:`hpc_itc.stages.force_constants`) distributes the displaced supercells over MPI ranks and
checkpoints them, and :mod:`hpc_itc.store.force_constants` stores the result.

Device routes (``force_constants.device_route``):

* ``"full"``: every symmetry-independent displacement of the slab is evaluated.
* ``"interface"``: only atoms within ``interface_radius_A`` of the interface plane (and their
  symmetry images) are displaced; 0 (the default) takes the MLIP's receptive field,
  r_max x num_interactions (10 Å for the shipped model).  For the other displacements phonopy gets *bulk* forces,
  F_j = -u . Phi_bulk(i, j), from the lead force constants, mapped pair by pair with the slab's
  (side, layer, in-plane cell, basis) bookkeeping; phonopy's solve and symmetrisation then
  join the two kinds of rows (Phi_ij = Phi_ji^T, sum rule restored).  Atoms farther than the
  MLIP's reach from the interface see a bulk environment, so their rows are bulk rows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from hpc_itc import log as logmod
from hpc_itc.config import ForceConstantsSettings
from hpc_itc.core.harmonic import RealSpaceIFC
from hpc_itc.core.mlip import evaluate_forces
from hpc_itc.errors import InvalidInput

_log = logmod.get("force_constants")

PARTS = ("left_lead", "right_lead", "device")
LEADS = ("left_lead", "right_lead")
DEVICE_ROUTES = ("full", "interface")

# ---- phonopy core -----------------------------------------------------------------------------
def to_phonopy_atoms(atoms: Atoms) -> PhonopyAtoms:
    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.array(atoms.cell),
                        scaled_positions=atoms.get_scaled_positions(wrap=False), masses=atoms.get_masses())


def make_phonopy(unitcell: Atoms, supercell: tuple[int, int, int], displacement_A: float, symprec: float,
                 plusminus: bool | str = "auto") -> Phonopy:
    """A phonopy object with symmetry-reduced displacements generated."""
    phonon = Phonopy(to_phonopy_atoms(unitcell), supercell_matrix=np.diag(supercell), primitive_matrix="P",
                     symprec=symprec, log_level=0)
    phonon.generate_displacements(distance=displacement_A, is_plusminus=plusminus)
    return phonon


def displaced_atoms(phonon: Phonopy, index: int) -> Atoms:
    sc = phonon.supercells_with_displacements[index]
    return Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)


def inplane_supercell_for(cutoff_A: float, inplane_A: float, requested: int) -> int:
    """Smallest in-plane supercell whose half width exceeds the cutoff, or check the requested one."""
    needed = math.floor(2.0 * cutoff_A / inplane_A) + 1
    if requested == 0:
        return needed
    if requested * inplane_A <= 2.0 * cutoff_A:
        raise InvalidInput("supercell_inplane", f"{requested} x {inplane_A:.3f} Å does not exceed 2 x cutoff_A = {2 * cutoff_A:.2f} Å; allowed: >= {needed}, or 0 for automatic")
    return requested


def z_supercell_for(cutoff_A: float, layer_step_A: float) -> int:
    """Layers along a3 so that pairs within the cutoff have a unique shortest image."""
    return math.floor(2.0 * cutoff_A / layer_step_A) + 1


@dataclass
class PartPlan:
    """What one part needs: its unit cell (unwrapped), supercell and phonopy object.

    ``tasks`` are the displacement indices evaluated with the MLIP (None: all of them);
    ``zone`` marks the unit-cell atoms whose rows come from MLIP forces (None: all).
    """

    name: str
    unitcell: Atoms
    supercell: tuple[int, int, int]
    phonon: Phonopy
    tasks: list[int] | None = None
    zone: np.ndarray | None = None
    radius_A: float | None = None  # interface zone radius (interface route)

    @property
    def n_displacements(self) -> int:
        """Symmetry-reduced displacements of the whole part (phonopy's count)."""
        return len(self.phonon.supercells_with_displacements)

    @property
    def task_ids(self) -> list[int]:
        return list(range(self.n_displacements)) if self.tasks is None else list(self.tasks)

    @property
    def n_force_evaluations(self) -> int:
        return len(self.task_ids)

    @property
    def n_displacements_naive(self) -> int:
        """6 x atoms of the unit cell: +/- x, y, z for every atom, no symmetry."""
        return 6 * len(self.unitcell)


def plan_parts(left_cell: Atoms, right_cell: Atoms, slab: Atoms, inplane_repeat: tuple[int, int],
               left_step_A: float, right_step_A: float, inplane_A: float, settings: ForceConstantsSettings) -> list[PartPlan]:
    """Phonopy objects for the two leads and the device slab (deterministic on every rank)."""
    cutoff, disp, symprec = settings.cutoff_A, settings.displacement_A, settings.symprec
    n, m = inplane_repeat
    s_prim = inplane_supercell_for(cutoff, inplane_A, 0)
    s_dev_req = settings.supercell_inplane
    s_dev = inplane_supercell_for(cutoff, inplane_A * min(n, m), s_dev_req)
    plans = []
    for name, cell, step in (("left_lead", left_cell, left_step_A), ("right_lead", right_cell, right_step_A)):
        sc = (s_prim, s_prim, z_supercell_for(cutoff, step))
        plans.append(PartPlan(name, cell, sc, make_phonopy(cell, sc, disp, symprec, "auto")))
    # the relaxed slab has small residual forces: +/- displacements cancel them to first order
    sc = (s_dev, s_dev, 1)
    plans.append(PartPlan("device", slab, sc, make_phonopy(slab, sc, disp, symprec, True)))
    return plans


def interface_radius(settings: ForceConstantsSettings, model: str | None = None) -> float:
    """The interface zone's radius (Å): the setting, or for 0 the MLIP's receptive field.

    A MACE model with ``num_interactions`` message-passing layers of cutoff ``r_max`` sees
    ``r_max x num_interactions`` far (10 Å for the shipped model); an atom that far from the
    interface has (nearly) bulk force constants.  Without a model 0 means 10 Å.
    """
    radius = settings.interface_radius_A
    if radius > 0:
        return radius
    if model is None:
        return 10.0
    from hpc_itc.core import mlip

    summary = mlip.model_summary(model)
    return float(summary.r_max_A * summary.num_interactions)


def plans_for(het, settings: ForceConstantsSettings, model: str | None = None) -> list[PartPlan]:
    """Plans of a heterostructure, with the device restricted to the interface zone if asked."""
    left, right = het.left_lead, het.right_lead
    plans = plan_parts(left.atoms(), right.atoms(), het.atoms, het.inplane_repeat, left.layer_step_A,
                       right.layer_step_A, left.inplane_A, settings)
    if settings.device_route == "interface":
        device = plans[2]
        device.radius_A = interface_radius(settings, model)
        device.tasks, device.zone, _ = interface_zone(het, device.phonon, device.radius_A)
    return plans


def produce(phonon: Phonopy, forces: np.ndarray) -> dict[str, float]:
    """Force constants from forces; phonopy symmetrisation imposes the sum rule.

    Returns the sum-rule violation before and after (max |sum_j Phi_ij|, eV/Å^2).
    """
    phonon.forces = forces
    phonon.produce_force_constants(calculate_full_force_constants=False)
    before = _asr_violation(phonon.force_constants)
    phonon.symmetrize_force_constants(show_drift=False)
    after = _asr_violation(phonon.force_constants)
    return {"asr_violation_before_eV_A2": before, "asr_violation_after_eV_A2": after}


def _asr_violation(fc: np.ndarray) -> float:
    return float(np.abs(fc.sum(axis=1)).max())


def real_space_ifc(phonon: Phonopy, unitcell: Atoms) -> RealSpaceIFC:
    """Pairs in the unwrapped frame of ``unitcell`` (the frame the builder used)."""
    frac = np.linalg.solve(np.array(unitcell.cell).T, unitcell.positions.T).T
    return RealSpaceIFC.from_phonopy(phonon, frac, unitcell.get_masses())


def cutoff_correction(ifc: RealSpaceIFC, cutoff_A: float, atoms: np.ndarray | None = None) -> dict[str, float]:
    """Size of the sum-rule correction that imposing the cutoff applies.

    :meth:`RealSpaceIFC.truncated` adds what it drops from each row to that atom's on-site block.
    Returns max |dropped row sum| (eV/Å^2, over ``atoms`` or all atoms and the 3 x 3 elements), the
    same relative to the largest on-site element, and the sum-rule violation left afterwards.
    """
    dist = np.linalg.norm(ifc.pair_vectors(), axis=1)
    onsite = (ifc.i == ifc.j) & ~ifc.shift.any(axis=1)
    dropped_mask = (dist > cutoff_A + 1e-9) & ~onsite
    dropped = np.zeros((ifc.n_atoms, 3, 3))
    np.add.at(dropped, ifc.i[dropped_mask], ifc.phi[dropped_mask])
    onsite_blocks = np.zeros((ifc.n_atoms, 3, 3))
    np.add.at(onsite_blocks, ifc.i[onsite], ifc.phi[onsite])
    sel = np.arange(ifc.n_atoms) if atoms is None else np.asarray(atoms)
    biggest = float(np.abs(dropped[sel]).max()) if len(sel) else 0.0
    scale = float(np.abs(onsite_blocks[sel]).max()) if len(sel) else 1.0
    _, after = ifc.truncated(cutoff_A)
    return {"cutoff_correction_max_eV_A2": biggest, "cutoff_correction_relative": biggest / scale if scale > 0 else 0.0,
            "asr_violation_after_cutoff_eV_A2": float(after)}


# ---- interface route ---------------------------------------------------------------------------
def _supercell_map(phonon: Phonopy) -> tuple[np.ndarray, np.ndarray]:
    """Unit-cell atom of every supercell atom and the unit-cell lattice translation that carries it there."""
    sc = phonon.supercell
    u_of_s = np.array([sc.u2u_map[k] for k in sc.s2u_map], dtype=int)
    unit_pos = np.asarray(phonon.unitcell.positions, float)
    cell = np.asarray(phonon.unitcell.cell, float)
    shift = np.linalg.solve(cell.T, (np.asarray(sc.positions, float) - unit_pos[u_of_s]).T).T
    return u_of_s, np.rint(shift).astype(int)


def interface_plane_z(het) -> float:
    """z of the interface plane: midway between the last atomic plane on the left and the first on the right."""
    z = het.atoms.positions[:, 2]
    return 0.5 * (float(z[het.side == 0].max()) + float(z[het.side == 1].min()))


def interface_zone(het, phonon: Phonopy, radius_A: float) -> tuple[list[int], np.ndarray, float]:
    """Displacements to evaluate for the interface route.

    An independent atom (phonopy's displaced atom) is kept when any of its symmetry images lies
    within ``radius_A`` of the interface plane; returns (kept displacement indices, mask of the
    unit-cell atoms whose rows those displacements give, z of the plane).
    """
    z_plane = interface_plane_z(het)
    near_unit = np.abs(het.atoms.positions[:, 2] - z_plane) <= radius_A + 1e-9
    u_of_s, _ = _supercell_map(phonon)
    rep = np.asarray(phonon.symmetry.get_map_atoms(), dtype=int)  # supercell atom -> its independent atom
    kept = set(rep[near_unit[u_of_s]].tolist())
    tasks = [k for k, d in enumerate(phonon.displacements) if int(d[0]) in kept]
    zone = np.zeros(len(het.atoms), bool)
    zone[u_of_s[np.isin(rep, list(kept))]] = True
    return tasks, zone, z_plane


def bulk_site_deviation(het) -> np.ndarray:
    """Displacement (Å) of every slab atom from its ideal bulk site, relative to its side's fixed buffer.

    Ideal sites come from the bookkeeping (basis + layer a3 + c1 a1 + c2 a2 of the side's lead cell);
    the buffers are held at bulk sites during the relaxation, so their offset defines each side's origin.
    Rows taken from the bulk leads are exact only where this is ~0.
    """
    pos = het.atoms.positions
    out = np.zeros(len(pos))
    for side, lead in ((0, het.left_lead), (1, het.right_lead)):
        sel = np.flatnonzero(het.side == side)
        lat = lead.lattice
        ideal = (lead.positions[het.basis_index[sel]] + het.layer[sel, None] * lat[2]
                 + het.cell_index[sel, 0, None] * lat[0] + het.cell_index[sel, 1, None] * lat[1])
        dev = pos[sel] - ideal
        buffer = het.region[sel] != 1
        ref = dev[buffer].mean(axis=0) if buffer.any() else dev.mean(axis=0)
        out[sel] = np.linalg.norm(dev - ref, axis=1)
    return out


def _pair_table(ifc: RealSpaceIFC, periods: tuple[int, int]) -> dict[tuple, np.ndarray]:
    """Bulk pair force constants keyed by (i, j, shift1 mod P1, shift2 mod P2, shift3)."""
    table: dict[tuple, np.ndarray] = {}
    p1, p2 = periods
    for i, j, s, phi in zip(ifc.i, ifc.j, ifc.shift, ifc.phi):
        key = (int(i), int(j), int(s[0]) % p1, int(s[1]) % p2, int(s[2]))
        table[key] = table[key] + phi if key in table else phi.copy()
    return table


def bulk_forces(plan: PartPlan, het, lead_ifcs: dict[int, RealSpaceIFC], indices: Sequence[int]) -> dict[int, np.ndarray]:
    """Forces the bulk leads predict for device displacements ``indices``: F_j = -u . Phi_bulk(i, j).

    Pairs are mapped with the slab's bookkeeping: atoms on the same side as the displaced atom
    couple with the bulk pair constant of (basis_i, basis_j, in-plane cell difference modulo the
    supercell, layer difference); atoms on the other side get no force.
    """
    phonon = plan.phonon
    n, m = het.inplane_repeat
    periods = (n * plan.supercell[0], m * plan.supercell[1])
    u_of_s, t = _supercell_map(phonon)
    c1 = het.cell_index[u_of_s, 0] + n * t[:, 0]
    c2 = het.cell_index[u_of_s, 1] + m * t[:, 1]
    layer, side, basis = het.layer[u_of_s], het.side[u_of_s], het.basis_index[u_of_s]
    tables = {s: _pair_table(ifc, periods) for s, ifc in lead_ifcs.items()}
    n_sc = len(u_of_s)
    out = {}
    for k in indices:
        d = phonon.displacements[k]
        r, vec = int(d[0]), np.array(d[1:4], float)
        forces = np.zeros((n_sc, 3))
        table = tables[int(side[r])]
        for j in np.flatnonzero(side == side[r]):
            key = (int(basis[r]), int(basis[j]), int(c1[j] - c1[r]) % periods[0], int(c2[j] - c2[r]) % periods[1], int(layer[j] - layer[r]))
            phi = table.get(key)
            if phi is not None:
                forces[j] = -vec @ phi
        out[k] = forces
    return out


def part_forces(plan: PartPlan, computed: dict[int, np.ndarray], het=None, lead_ifcs: dict[int, RealSpaceIFC] | None = None) -> np.ndarray:
    """All displacement forces of a part: MLIP forces where computed, bulk forces elsewhere (interface route)."""
    missing = [k for k in range(plan.n_displacements) if k not in computed]
    if missing:
        if plan.tasks is None or het is None or lead_ifcs is None:
            raise RuntimeError(f"{plan.name}: forces of displacements {missing[:5]}... are missing")
        computed = {**computed, **bulk_forces(plan, het, lead_ifcs, missing)}
    return np.array([computed[k] for k in range(plan.n_displacements)])


# ---- serial driver (tests, benchmarks) ---------------------------------------------------------
def compute_parts(plans: list[PartPlan], calc, het=None, batch_size: int = 1,
                  cutoff_A: float | None = None) -> dict[str, dict]:
    """Evaluate and produce every part in one process (leads first, then the device).

    Returns per part the produce statistics plus ``n_force_evaluations`` and ``seconds``.
    """
    stats: dict[str, dict] = {}
    lead_ifcs: dict[int, RealSpaceIFC] = {}
    for plan in sorted(plans, key=lambda p: PARTS.index(p.name)):
        t0 = time.perf_counter()
        ids = plan.task_ids
        forces = evaluate_forces(calc, [displaced_atoms(plan.phonon, k) for k in ids], batch_size)
        seconds = time.perf_counter() - t0
        all_forces = part_forces(plan, dict(zip(ids, forces)), het, lead_ifcs)
        s = produce(plan.phonon, all_forces)
        s.update(n_force_evaluations=len(ids), seconds=seconds)
        if plan.name in LEADS:
            lead_ifcs[LEADS.index(plan.name)] = real_space_ifc(plan.phonon, plan.unitcell)
        if cutoff_A is not None:
            s.update(cutoff_correction(real_space_ifc(plan.phonon, plan.unitcell), cutoff_A))
        stats[plan.name] = s
    return stats


def interface_stability(het, device_ifc: RealSpaceIFC, lead_ifcs: dict[int, RealSpaceIFC], registry_given: bool) -> dict:
    """Interface stiffness, lead interplanar stiffness, lowest device Gamma frequency and warnings (logged)."""
    from hpc_itc.core import interface as itf

    area = itf.interface_area_A2(het.atoms)
    k = itf.interface_stiffness(device_ifc, het.side, area)
    lead_zz = [float(itf.lead_interplanar_stiffness(lead_ifcs[s], lead.inplane_A**2)[2, 2])
               for s, lead in ((0, het.left_lead), (1, het.right_lead))]
    freqs = itf.gamma_frequencies_THz(device_ifc)
    warnings = itf.stiffness_warnings(k, min(lead_zz), float(freqs[0]), registry_given)
    _log.info("interface stiffness per area (xx, yy, zz) = (%.3f, %.3f, %.3f) eV/Å^4 (lead interplanar zz: left %.3f, right %.3f); "
              "lowest device Gamma frequencies %s THz", k[0, 0], k[1, 1], k[2, 2], lead_zz[0], lead_zz[1], np.round(freqs[:4], 3).tolist())
    for w in warnings:
        _log.warning("%s", w)
    return {"interface_stiffness_eV_A4": k, "lead_interplanar_stiffness_zz_eV_A4": np.array(lead_zz),
            "lowest_gamma_frequency_THz": float(freqs[0]), "gamma_frequencies_lowest_THz": freqs[:6],
            "interface_warnings": list(warnings)}


@dataclass(frozen=True)
class StandardCellExport:
    """A bulk lead's force constants on the crystal's own lattice, for phonopy (see :func:`on_standard_cell`)."""

    phonon: Phonopy  # unit cell: spglib's conventional cell; primitive: phonopy's 'auto'; compact force constants set
    spacegroup: str  # international symbol (number), e.g. "Fd-3m (227)"
    layer_from_standard: np.ndarray  # (3, 3): layer-cell rows = this @ standard-cell rows
    supercell_size: int  # the standard cell repeated k x k x k
    longest_pair_A: float  # every force-constant pair is shorter than half the supercell's width


def on_standard_cell(ifc, symbols: list[str], symprec: float = 1e-5, margin_A: float = 0.1) -> StandardCellExport:
    """The force constants of a bulk crystal (``ifc``: a RealSpaceIFC of its layer cell) on spglib's conventional
    cell, in the same Cartesian frame, with a cubic (k x k x k) supercell whose half width exceeds the longest pair.

    The layer cell that hpc_itc uses for transport (a1, a2 in the interface plane, a3 to the next layer) is a valid
    but unusual cell: phonopy then finds supercell and primitive point groups that differ and draws a band path
    of the wrong lattice.  On the standard cell, ``phonopy.load(...).auto_band_structure()`` follows the real
    lattice (fcc for the unstrained lead, body-centred tetragonal for the strained one).  The pair list is copied
    onto the new supercell; since every pair is shorter than half its width, each has one shortest image and the
    dynamical matrix is the same as the layer cell's at every q.
    """
    import spglib
    from phonopy.structure.atoms import PhonopyAtoms

    lattice = np.asarray(ifc.lattice, float)
    frac = np.linalg.solve(lattice.T, np.asarray(ifc.positions, float).T).T
    kinds = {s: k + 1 for k, s in enumerate(dict.fromkeys(symbols))}
    numbers = [kinds[s] for s in symbols]
    cell = (lattice, np.mod(frac, 1.0), numbers)
    dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    std_lattice, std_frac, std_numbers = spglib.standardize_cell(cell, to_primitive=False, no_idealize=True, symprec=symprec)
    layer_from_standard = lattice @ np.linalg.inv(std_lattice)
    if not np.allclose(np.linalg.inv(layer_from_standard), np.rint(np.linalg.inv(layer_from_standard)), atol=1e-6):
        raise ValueError("spglib's standard cell is not a sublattice of the layer cell in the same frame")
    # each standard-cell atom is a layer-cell atom plus a lattice translation: its basis index
    std_cart = np.asarray(std_frac) @ std_lattice
    basis = [_basis_index(r, ifc.positions, lattice) for r in std_cart]
    by_number = {v: k for k, v in kinds.items()}
    unit = PhonopyAtoms(symbols=[by_number[n] for n in std_numbers], cell=std_lattice, scaled_positions=std_frac,
                        masses=np.asarray(ifc.masses)[basis])
    vectors = ifc.pair_vectors()
    longest = float(np.linalg.norm(vectors, axis=1).max()) if len(vectors) else 0.0
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(std_lattice), axis=0)  # distances between lattice planes
    k = max(1, math.ceil(2.0 * (longest + margin_A) / spacing.min()))
    from phonopy.structure.cells import get_primitive_matrix_by_centring

    # the conventional cell's centring (F, I, C, P ...) gives the primitive matrix (what 'auto' would find, stated)
    primitive_matrix = get_primitive_matrix_by_centring(dataset.international[0])
    phonon = Phonopy(unit, supercell_matrix=np.eye(3, dtype=int) * k, primitive_matrix=primitive_matrix, symprec=symprec, log_level=0)
    sc = phonon.supercell
    sc_lattice = np.asarray(sc.cell, float)
    sc_frac = np.mod(np.asarray(sc.scaled_positions, float), 1.0)
    lookup = {tuple(np.rint(x * 1e4).astype(int) % 10000): n for n, x in enumerate(sc_frac)}
    p2s = phonon.primitive.p2s_map
    fc = np.zeros((len(p2s), len(sc_frac), 3, 3))
    for row, s in enumerate(p2s):
        r_s = sc_frac[s] @ sc_lattice
        b = _basis_index(r_s, ifc.positions, lattice)
        sel = np.flatnonzero(ifc.i == b)
        targets = np.mod(np.linalg.solve(sc_lattice.T, (r_s + vectors[sel]).T).T, 1.0)
        for pair, x in zip(sel, targets):
            fc[row, lookup[tuple(np.rint(x * 1e4).astype(int) % 10000)]] += ifc.phi[pair]
    phonon.force_constants = fc
    return StandardCellExport(phonon, f"{dataset.international} ({dataset.number})", layer_from_standard, k, longest)


def _basis_index(r_cart: np.ndarray, positions: np.ndarray, lattice: np.ndarray, tol: float = 1e-5) -> int:
    """The layer-cell atom of which r_cart is a lattice translate."""
    d = np.linalg.solve(lattice.T, (np.asarray(r_cart)[None, :] - np.asarray(positions)).T).T
    hits = np.flatnonzero(np.abs(d - np.rint(d)).max(axis=1) < tol)
    if len(hits) != 1:
        raise ValueError(f"position {np.round(r_cart, 4).tolist()} is not a lattice translate of exactly one layer-cell atom")
    return int(hits[0])
