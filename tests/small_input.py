"""A small but complete input for end-to-end tests (about a minute on 2 cores)."""

SMALL = """
[run]
output = "{out}"

[structure]
n_cells_left = 3
n_cells_right = 3
buffer_cells = 2

[relax]
fmax_eV_A = 0.05
lattice = "model"

[force_constants]
cutoff_A = 3.0

[transport]
q_mesh = [3, 3, 3]
temperatures_K = [300.0]
block_size = 2

[ldos]
q_mesh = [3, 3, 3]
"""
