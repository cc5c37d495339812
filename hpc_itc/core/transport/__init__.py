"""Phonon scattering across an interface: lead modes, device solve, Landauer sums."""
