"""hpc_itc: interfacial thermal conductance of solid/solid interfaces from machine-learned potentials.

Pipeline stages, one module each:
structure -> relax -> force_constants -> transport -> ldos -> cohp
"""

__version__ = "0.1.0"
