"""Training objectives behind one interface: imitation (``bc``) and the diffusion RL algorithms, by name in
:mod:`vla_drive.algorithms.registry`."""
