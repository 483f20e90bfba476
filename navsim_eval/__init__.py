"""navsim_eval: a faithful, fast re-implementation of NAVSIM scoring (PDMS v1.1 and EPDMS v2).

Usable on its own: a team with its own planner can score trajectories without importing torch.
"""

__version__ = "0.1.0"
