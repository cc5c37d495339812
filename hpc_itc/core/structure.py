"""Cu/N_x/diamond heterostructures along [001] and the bulk leads that match them.

Frame: x along [110], y along [-110], z along [001] of the cubic crystals, so the
in-plane primitive (001) cell is square with side s = a/sqrt(2).  A *layer cell*
is the lead's primitive cell written with a1 = (s,0,0), a2 = (0,s,0) in the plane
and a3 = (s/2, s/2, d) the shortest lattice vector to the next layer of primitive
cells (d = a/2 for cubic fcc Cu and diamond).  One layer holds 1 Cu atom or 2 C
atoms (two atomic planes d/2 apart).  Its reciprocal vector b3 is normal to the
interface, which is what lets the transport stage factorise the q mesh.

The slab used for relaxation and device force constants is

    [left buffer | left device layers | right device layers | right buffer] + vacuum

with atoms in layer-major order (layer, in-plane cell c1, c2, basis atom), never
wrapped into the cell: the same (layer, cell, basis) bookkeeping is used by the
leads' principal layers, so Bloch phases of leads and device agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from hpc_itc.config import StructureSettings

# fractional basis of one layer cell in (a1, a2, a3); unwrapped on purpose (see module doc)
_BASIS = {
    "cu": (("Cu", (0.0, 0.0, 0.0)),),
    "diamond": (("C", (0.0, 0.0, 0.0)), ("C", (0.25, -0.25, 0.5))),
}
EXPERIMENTAL_LATTICE_A = {"cu": 3.615, "diamond": 3.567}


@dataclass(frozen=True)
class LayerCell:
    """Primitive cell of a lead, as one (001) layer: lattice rows a1, a2, a3 in Å."""

    material: str
    inplane_A: float  # s, side of the square in-plane cell
    layer_step_A: float  # d, z distance between consecutive layers

    @property
    def lattice(self) -> np.ndarray:
        s, d = self.inplane_A, self.layer_step_A
        return np.array([[s, 0.0, 0.0], [0.0, s, 0.0], [0.5 * s, 0.5 * s, d]])

    @property
    def symbols(self) -> list[str]:
        return [sym for sym, _ in _BASIS[self.material]]

    @property
    def frac(self) -> np.ndarray:
        return np.array([f for _, f in _BASIS[self.material]], dtype=float)

    @property
    def positions(self) -> np.ndarray:
        return self.frac @ self.lattice

    @property
    def volume_A3(self) -> float:
        return float(abs(np.linalg.det(self.lattice)))

    @property
    def n_basis(self) -> int:
        return len(_BASIS[self.material])

    def atoms(self) -> Atoms:
        return Atoms(self.symbols, positions=self.positions, cell=self.lattice, pbc=True)

    def conventional(self) -> Atoms:
        """Tetragonal conventional cell (s, s, 2d) with 2 (Cu) or 4 (C) atoms, for cell relaxations."""
        lat = self.lattice
        pos = np.vstack([self.positions, self.positions + lat[2]])
        cell = np.diag([self.inplane_A, self.inplane_A, 2 * self.layer_step_A])
        atoms = Atoms(self.symbols * 2, positions=pos, cell=cell, pbc=True)
        atoms.wrap()
        return atoms

    def with_steps(self, inplane_A: float | None = None, layer_step_A: float | None = None) -> "LayerCell":
        return LayerCell(self.material, inplane_A or self.inplane_A, layer_step_A or self.layer_step_A)


DISPLAY_NAMES = {"cu": "Cu", "diamond": "diamond"}  # how figures, inspect and logs name the materials


def display_name(material: str) -> str:
    """'Cu' for 'cu', 'diamond' for 'diamond' (any other name as given)."""
    return DISPLAY_NAMES.get(material, material)


def cubic_layer_cell(material: str, a_A: float) -> LayerCell:
    """Unstrained cubic crystal with lattice constant ``a_A``."""
    return LayerCell(material, a_A / np.sqrt(2.0), a_A / 2.0)


@dataclass(frozen=True)
class InterfaceSpec:
    """Everything that defines the geometry, as given in the [structure] input table."""

    left_material: str
    right_material: str
    n_cells_left: int
    n_cells_right: int
    buffer_cells: int
    inplane_repeat: tuple[int, int]
    strained_side: str
    interface_spacing_A: float
    interface_shift_frac: tuple[float, float]
    n_fraction: float
    n_seed: int
    vacuum_A: float

    @property
    def registry_given(self) -> bool:
        return len(self.interface_shift_frac) == 2

    @property
    def spacing_given(self) -> bool:
        return self.interface_spacing_A > 0

    @classmethod
    def from_config(cls, s: StructureSettings) -> "InterfaceSpec":
        """The spec of the validated ``[structure]`` table (:class:`hpc_itc.config.StructureSettings`)."""
        return cls(
            s.left_material, s.right_material, s.n_cells_left, s.n_cells_right, s.buffer_cells,
            tuple(s.inplane_repeat), s.strained_side, s.interface_spacing_A, tuple(s.interface_shift_frac),
            s.n_fraction, s.n_seed, s.vacuum_A,
        )


def lead_cells(spec: InterfaceSpec, a_left_A: float, a_right_A: float,
               strained_layer_step_A: float | None = None) -> tuple[LayerCell, LayerCell, dict]:
    """The two leads on one shared in-plane lattice.

    The unstrained side keeps its cubic lattice; the strained side takes the
    other's in-plane side s.  Its layer step is ``strained_layer_step_A`` when
    given (e.g. relaxed with the MLIP), else its own cubic a/2 (no Poisson
    response).  Returns (left, right, record of the strain).
    """
    left = cubic_layer_cell(spec.left_material, a_left_A)
    right = cubic_layer_cell(spec.right_material, a_right_A)
    if spec.strained_side == "left":
        strained, reference = left, right
    else:
        strained, reference = right, left
    s = reference.inplane_A
    new = strained.with_steps(inplane_A=s, layer_step_A=strained_layer_step_A or strained.layer_step_A)
    record = {
        "strained_side": spec.strained_side,
        "inplane_strain": s / strained.inplane_A - 1.0,
        "out_of_plane_strain": new.layer_step_A / strained.layer_step_A - 1.0,
        "shared_inplane_A": s,
    }
    if spec.strained_side == "left":
        return new, right, record
    return left, new, record


@dataclass
class Heterostructure:
    """The slab and its bookkeeping.  Per-atom arrays are in the slab's atom order."""

    atoms: Atoms
    left_lead: LayerCell
    right_lead: LayerCell
    inplane_repeat: tuple[int, int]
    side: np.ndarray  # 0 left material, 1 right material
    region: np.ndarray  # 0 left buffer, 1 device, 2 right buffer
    layer: np.ndarray  # layer index counted from the outer end of its side (0 = outermost)
    layer_from_interface: np.ndarray  # -1, -2, ... on the left; +1, +2, ... on the right
    cell_index: np.ndarray  # (N, 2) in-plane cell (c1, c2)
    basis_index: np.ndarray  # basis atom within the layer cell
    n_sites: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # indices of N atoms
    meta: dict = field(default_factory=dict)

    REGION_NAMES = ("buffer_left", "device", "buffer_right")

    @property
    def device_indices(self) -> np.ndarray:
        return np.flatnonzero(self.region == 1)


# ---- the bonded registry -------------------------------------------------------------------
# A surface scientist builds a metal/diamond(001) interface by continuing the covalent crystal: each
# terminal C of the unreconstructed (1x1) surface has two dangling bonds pointing to the bulk sites of
# its missing neighbours, and the metal atoms go onto those sites (in-plane).  On Cu(001)/C(001) with
# one Cu per cell that puts the terminal C (or N) on the bridge between two Cu atoms along the dangling
# bonds' direction, with two Cu neighbours: what the vendored PBEsol configurations show (nearest Cu-C
# 1.97-2.09 Å, each N bonded to exactly two Cu).  Continuing the metal's lattice instead would put the
# terminal atom on the four-fold hollow, which does not bond.  A junction of one material with itself
# continues its bulk lattice (the same rule applied to its own terminal atom).


def facing_basis(cell: LayerCell, facing_up: bool) -> int:
    """Basis atom of ``cell`` on the plane that faces the interface (top plane when ``facing_up``)."""
    z = cell.positions[:, 2]
    return int(np.argmax(z) if facing_up else np.argmin(z))


def missing_neighbours(cell: LayerCell, facing_up: bool) -> np.ndarray:
    """Vectors (Å) from the terminal atom of ``cell`` to its bulk nearest neighbours beyond the surface plane.

    The terminal atom is the basis atom of the facing plane; its nearest neighbours in the infinite crystal
    that lie on the far side of that plane are the bonds the surface lacks (2 for diamond(001), 4 for fcc).
    """
    t = cell.positions[facing_basis(cell, facing_up)]
    lat = cell.lattice
    images = np.array([(i, j, k) for i in range(-2, 3) for j in range(-2, 3) for k in range(-2, 3)], float) @ lat
    others = (cell.positions[None, :, :] + images[:, None, :]).reshape(-1, 3) - t
    beyond = others[others[:, 2] > 1e-6] if facing_up else others[others[:, 2] < -1e-6]
    dist = np.linalg.norm(beyond, axis=1)
    return beyond[dist < dist.min() + 1e-6]  # the nearest shell across the plane (robust to tetragonal strain)


def _anchor_is_left(spec: InterfaceSpec) -> bool:
    """The side whose dangling bonds fix the registry: the diamond side of a metal/diamond pair, else left."""
    return not (spec.right_material == "diamond" and spec.left_material != "diamond")


def bonded_registry(spec: InterfaceSpec, left: LayerCell, right: LayerCell) -> tuple[tuple[float, float], float]:
    """(interface_shift_frac, interface_spacing_A) of the bonded registry (see the comment above).

    The facing atom of the other side sits on a missing-neighbour site of the anchor side's terminal atom.
    The gap: for one material, the bulk's own plane spacing; for a pair, the height at which the terminal
    atom's bond to that site equals the sum of covalent radii (ASE's table) for its in-plane distance
    (Cu-C 2.08 Å, Cu-N 2.03 Å), averaged over the termination (fraction x of N).
    """
    anchor_left = _anchor_is_left(spec)
    anchor = left if anchor_left else right
    v = missing_neighbours(anchor, facing_up=anchor_left)[0]
    top, bottom = left.positions[facing_basis(left, True)], right.positions[facing_basis(right, False)]
    # origin_right = last left layer origin + shift; facing atoms at their basis offsets from the origins
    shift_xy = (top + v - bottom) if anchor_left else (top - v - bottom)
    frac = np.linalg.solve(left.lattice[:2, :2].T, shift_xy[:2])
    frac = np.round(frac - np.floor(frac + 1e-9), 9) % 1.0
    if spec.left_material == spec.right_material:
        gap = abs(float(v[2]))
    else:
        metal = (right if anchor_left else left).symbols[0]
        rho = float(np.linalg.norm(v[:2]))
        gaps = {}
        for terminal in ("C", "N"):
            bond = covalent_radii[atomic_numbers[metal]] + covalent_radii[atomic_numbers[terminal]]
            gaps[terminal] = float(np.sqrt(max(bond**2 - rho**2, 0.25 * bond**2)))
        gap = (1.0 - spec.n_fraction) * gaps["C"] + spec.n_fraction * gaps["N"]
    return (float(frac[0]), float(frac[1])), gap


def resolve_registry(spec: InterfaceSpec, left: LayerCell, right: LayerCell) -> InterfaceSpec:
    """``spec`` with the bonded registry and covalent gap filled in where the input left them open."""
    if spec.registry_given and spec.spacing_given:
        return spec
    shift, gap = bonded_registry(spec, left, right)
    return replace(spec, interface_shift_frac=tuple(spec.interface_shift_frac) if spec.registry_given else shift,
                   interface_spacing_A=spec.interface_spacing_A if spec.spacing_given else gap)


def build(spec: InterfaceSpec, left: LayerCell, right: LayerCell) -> Heterostructure:
    """Build the slab for ``spec`` from the two lead layer cells (sharing a1, a2).

    An empty ``interface_shift_frac`` or a zero ``interface_spacing_A`` takes the bonded registry
    (:func:`bonded_registry`); ``het.meta`` records the values used.
    """
    if not np.isclose(left.inplane_A, right.inplane_A, rtol=0, atol=1e-9):
        raise ValueError("leads must share the in-plane lattice")
    spec = resolve_registry(spec, left, right)
    n, m = spec.inplane_repeat
    s = left.inplane_A
    a1, a2 = np.array([s, 0.0, 0.0]), np.array([0.0, s, 0.0])
    nb = spec.buffer_cells
    n_left_layers = nb + spec.n_cells_left
    n_right_layers = spec.n_cells_right + nb

    symbols: list[str] = []
    rows: list[tuple] = []  # (position, side, region, layer, layer_from_interface, c1, c2, b)
    z0 = 0.5 * spec.vacuum_A
    origin_left = np.array([0.0, 0.0, z0])
    for j in range(n_left_layers):
        region = 0 if j < nb else 1
        for c1 in range(n):
            for c2 in range(m):
                for b, (sym, pos) in enumerate(zip(left.symbols, left.positions)):
                    r = origin_left + pos + j * left.lattice[2] + c1 * a1 + c2 * a2
                    symbols.append(sym)
                    rows.append((r, 0, region, j, j - n_left_layers, c1, c2, b))
    last_layer_origin = origin_left + (n_left_layers - 1) * left.lattice[2]
    top_plane_z = last_layer_origin[2] + left.positions[:, 2].max()
    shift = spec.interface_shift_frac[0] * a1 + spec.interface_shift_frac[1] * a2
    origin_right = np.array([last_layer_origin[0] + shift[0], last_layer_origin[1] + shift[1],
                             top_plane_z + spec.interface_spacing_A - right.positions[:, 2].min()])
    for j in range(n_right_layers):
        region = 1 if j < spec.n_cells_right else 2
        for c1 in range(n):
            for c2 in range(m):
                for b, (sym, pos) in enumerate(zip(right.symbols, right.positions)):
                    r = origin_right + pos + j * right.lattice[2] + c1 * a1 + c2 * a2
                    symbols.append(sym)
                    rows.append((r, 1, region, j, j + 1, c1, c2, b))

    positions = np.array([row[0] for row in rows])
    lz = positions[:, 2].max() + 0.5 * spec.vacuum_A
    cell = np.array([n * a1, m * a2, [0.0, 0.0, lz]])
    het = Heterostructure(
        atoms=Atoms(symbols, positions=positions, cell=cell, pbc=True),
        left_lead=left,
        right_lead=right,
        inplane_repeat=(n, m),
        side=np.array([r[1] for r in rows]),
        region=np.array([r[2] for r in rows]),
        layer=np.array([r[3] for r in rows]),
        layer_from_interface=np.array([r[4] for r in rows]),
        cell_index=np.array([(r[5], r[6]) for r in rows]),
        basis_index=np.array([r[7] for r in rows]),
    )
    het.n_sites = _terminate_with_nitrogen(het, spec)
    het.meta = {"interface_plane_gap_A": spec.interface_spacing_A, "interface_shift_frac": list(spec.interface_shift_frac),
                "n_fraction": spec.n_fraction}
    return het


def terminal_diamond_plane(het: Heterostructure) -> np.ndarray:
    """Indices of the diamond atomic plane facing the interface (empty if no diamond side)."""
    materials = (het.left_lead.material, het.right_lead.material)
    if materials[1] == "diamond" and materials[0] != "diamond":
        return np.flatnonzero((het.side == 1) & (het.layer_from_interface == 1) & (het.basis_index == 0))
    if materials[0] == "diamond" and materials[1] != "diamond":
        return np.flatnonzero((het.side == 0) & (het.layer_from_interface == -1) & (het.basis_index == 1))
    return np.zeros(0, dtype=int)


def _terminate_with_nitrogen(het: Heterostructure, spec: InterfaceSpec) -> np.ndarray:
    """Replace a fraction x of the terminal C plane by N, reproducibly from n_seed."""
    if spec.n_fraction <= 0:
        return np.zeros(0, dtype=int)
    plane = terminal_diamond_plane(het)
    count = int(round(spec.n_fraction * len(plane)))
    if count == len(plane):
        chosen = plane
    else:
        rng = np.random.default_rng(spec.n_seed)
        chosen = np.sort(rng.choice(plane, size=count, replace=False))
    symbols = het.atoms.get_chemical_symbols()
    for i in chosen:
        symbols[i] = "N"
    het.atoms.set_chemical_symbols(symbols)
    return np.asarray(chosen, dtype=int)


def elements_needed(spec: InterfaceSpec) -> set[str]:
    needed = {sym for mat in (spec.left_material, spec.right_material) for sym, _ in _BASIS[mat]}
    if spec.n_fraction > 0:
        needed.add("N")
    return needed
