"""Adversarial simulation of the mesh on the real protocol engine (``meshbench sim``)."""

from meshbench.sim.simulator import BEHAVIOURS, SimConfig, SimReport, Simulation, run_simulation

__all__ = ["BEHAVIOURS", "SimConfig", "SimReport", "Simulation", "run_simulation"]
