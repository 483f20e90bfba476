"""Simulation of planned trajectories: 10 Hz interpolation, the batched LQR tracker and the kinematic bicycle."""
