"""The algorithm registry: every training objective by its config name (``algorithm.name``).

The config loader reads the names and each algorithm's config class from here, so an unknown name or a field the
chosen algorithm does not have is refused when the config is read, before any model or data is built.
"""

from __future__ import annotations

from vla_drive.algorithms.awr import AWR, RWR
from vla_drive.algorithms.base import Algorithm, AlgorithmConfig
from vla_drive.algorithms.bc import BehaviorCloning
from vla_drive.algorithms.diffgrpo import DiffGRPO
from vla_drive.algorithms.dipole import Dipole
from vla_drive.algorithms.dppo import DPPO
from vla_drive.algorithms.fpo import FPO
from vla_drive.algorithms.genpo import GenPO

ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls for cls in (BehaviorCloning, Dipole, AWR, RWR, DiffGRPO, DPPO, FPO, GenPO)
}


def algorithm_class(name: str) -> type[Algorithm]:
    """The algorithm registered as ``name``; an unknown name raises a KeyError listing the registered ones."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; available: {', '.join(ALGORITHMS)}") from None


def config_class(name: str) -> type[AlgorithmConfig]:
    """The config dataclass of the algorithm ``name``."""
    return algorithm_class(name).config_class


def make_algorithm(config: AlgorithmConfig) -> Algorithm:
    """The algorithm that ``config`` (an instance of its config class) describes."""
    return algorithm_class(config.name)(config)
