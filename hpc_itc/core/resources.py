"""What an input will cost, from the input alone (no model, no structure build): atoms, degrees of
freedom, force calls, incident modes, memory, and the principal-layer check of the transport device.

Everything here is arithmetic on the lattice of the two leads, so it is instantaneous for any input,
including absurd ones (10^4 layers, a 1000^3 mesh): the driver and ``validate`` call it before any
work and refuse an input over :data:`LIMITS` (``run.allow_large = true`` overrides), so no input
hangs the structure stage or runs out of memory hours into a job.

Conventions: counts are for one results file; "memory" is the largest single allocation a rank makes
that grows with the input (phonopy's force-constant array on rank 0, or the device matrices of one
k_par solve), in bytes; the finite-displacement count is an upper bound (phonopy's symmetry usually
reduces it by the in-plane repeat and the site symmetry).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from hpc_itc.core.structure import LayerCell
from hpc_itc.core.transport.qz_sampling import MAX_AUTO_REFINE

# documented in docs/resources.md; a change there must change here
LIMITS = {
    "slab_atoms": 20_000,
    "supercell_atoms": 200_000,
    "force_calls": 1_000_000,
    "incident_modes": 500_000_000,
    "memory_bytes": 64_000_000_000,
}
BYTES_PER_STORED_MODE = 80  # /transport/<direction> per-mode table rows (inputs/quick.toml: 74.0 B per mode, both directions)


def principal_layer_reach(cell: LayerCell, cutoff_A: float) -> int:
    """Layers of primitive cells along a3 that the bulk couplings within ``cutoff_A`` reach.

    The same number :meth:`hpc_itc.core.harmonic.PrincipalLayerLead.from_bulk` takes from the force
    constants (largest layer offset of a kept pair, distance <= cutoff + 1e-9), here from the geometry.
    """
    lat, pos = cell.lattice, cell.positions
    d = cell.layer_step_A
    n3_max = int(math.ceil((cutoff_A + 2 * d) / d)) + 1
    s_min = min(np.linalg.norm(lat[0]), np.linalg.norm(lat[1]))
    n12 = int(math.ceil(cutoff_A / s_min)) + 2
    reach = 0
    for n3 in range(1, n3_max + 1):
        n12_range = np.arange(-n12 - n3, n12 + n3 + 1)
        n1, n2 = (a.ravel() for a in np.meshgrid(n12_range, n12_range))
        shifts = n1[:, None] * lat[0] + n2[:, None] * lat[1] + n3 * lat[2]  # (S, 3)
        dist = np.linalg.norm(pos[None, None, :, :] + shifts[:, None, None, :] - pos[None, :, None, :], axis=-1)
        if (dist <= cutoff_A + 1e-9).any():
            reach = n3
    return max(reach, 1)


@dataclass(frozen=True)
class ResourceEstimate:
    slab_atoms: int
    device_atoms: int
    device_dof: int
    supercell_atoms: int  # atoms in one displaced device supercell (one force call)
    force_calls: int  # upper bound: 6 per atom of the slab and of the two lead cells
    incident_modes: int  # per direction, main mesh and sweep meshes (largest automatic q_z refinement when qz_refine = 0)
    principal_layers: tuple[int, int]  # (left, right) layers of primitive cells a principal layer needs
    memory_bytes: int  # largest input-dependent allocation of one rank
    transport_output_bytes: int

    def over(self, limits: dict[str, int] = LIMITS) -> list[str]:
        """"name = value > limit" for each limit this estimate exceeds."""
        values = asdict(self)
        return [f"{k} {_human(k, values[k])} > {_human(k, v)}" for k, v in limits.items() if values[k] > v]

    def line(self) -> str:
        return (f"{self.slab_atoms} slab atoms ({self.device_atoms} in the device, {self.device_dof} dof), "
                f"<= {self.force_calls} force calls of {self.supercell_atoms} atoms, <= {self.incident_modes} incident modes per direction, "
                f"principal layers {self.principal_layers[0]}/{self.principal_layers[1]}, largest allocation {_human('memory_bytes', self.memory_bytes)} per rank, "
                f"transport tables {_human('memory_bytes', self.transport_output_bytes)}")


def _human(name: str, value: int) -> str:
    if name.endswith("bytes"):
        for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
            if value >= size:
                return f"{value / size:.3g} {unit}"
        return f"{value / 1e3:.3g} kB"
    return f"{value:.3g}" if value >= 1e6 else str(int(value))


def estimate(left: LayerCell, right: LayerCell, n_cells: tuple[int, int], buffer_cells: int, inplane_repeat: tuple[int, int],
             cutoff_A: float, supercell_inplane: int, q_mesh: tuple[int, int, int], qz_refine: int, n_directions: int,
             solver: str, sweep_meshes: tuple = ()) -> ResourceEstimate:
    """The estimate for the leads ``left``/``right`` (strained to their shared in-plane lattice);
    ``sweep_meshes`` (transport.q_mesh_sweep) add their incident modes to the main mesh's."""
    repeat = int(inplane_repeat[0]) * int(inplane_repeat[1])
    nl, nr = left.n_basis * repeat, right.n_basis * repeat
    slab = nl * (n_cells[0] + buffer_cells) + nr * (n_cells[1] + buffer_cells)
    device = nl * n_cells[0] + nr * n_cells[1]
    side = left.inplane_A * min(inplane_repeat)
    n_sc = supercell_inplane or (int(2 * cutoff_A // side) + 1)
    supercell = slab * n_sc * n_sc
    calls = 6 * (slab + left.n_basis + right.n_basis)
    m = qz_refine or MAX_AUTO_REFINE  # qz_refine = 0: at most the largest automatic refinement
    # half the branches x q points move towards the interface (inputs/quick.toml: 191,762 of 384,000 Cu modes,
    # 383,727 of 768,000 diamond modes on 20 x 20 x 320)
    modes = sum(int(q[0]) * int(q[1]) * int(q[2]) for q in {tuple(q_mesh), *map(tuple, sweep_meshes)}) * m * 3 * max(left.n_basis, right.n_basis) // 2
    p = (principal_layer_reach(left, cutoff_A), principal_layer_reach(right, cutoff_A))
    fc_bytes = supercell * supercell * 72  # phonopy's (N, N, 3, 3) float64 array of the device supercell
    dof = 3 * device
    if solver == "dense":
        solve_bytes = 3 * 16 * dof * dof
    else:  # block-tridiagonal: a few blocks of one principal layer's dof per layer
        pl = 3 * max(nl * p[0], nr * p[1])
        solve_bytes = 4 * 16 * pl * pl * max(1, (n_cells[0] + n_cells[1]))
    return ResourceEstimate(slab, device, dof, supercell, calls, modes, p, int(max(fc_bytes, solve_bytes)),
                            int(modes * n_directions * BYTES_PER_STORED_MODE))
