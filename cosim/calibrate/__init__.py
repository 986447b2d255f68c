"""Calibration: SPICE campaigns, the behavioural surrogate fitted to them, and its HDF5 store."""

from cosim.calibrate.surrogate import SurrogateParams, surrogate_currents, surrogate_effective_conductance

__all__ = ["SurrogateParams", "surrogate_currents", "surrogate_effective_conductance"]
