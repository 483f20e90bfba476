"""Training objectives: imitation (bc) and the diffusion RL algorithms, behind one interface."""
