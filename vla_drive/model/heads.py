"""The trajectory head a :class:`~vla_drive.model.head.HeadConfig` describes (``kind``), for building and loading."""

from __future__ import annotations

from vla_drive.model.coupled_flow import CoupledFlowHead
from vla_drive.model.head import HeadConfig, TrajectoryHead


def build_head(config: HeadConfig) -> TrajectoryHead:
    """A freshly initialised head: the diffusion DiT, or GenPO's coupled flow on the same trunk."""
    if config.kind == "coupled_flow":
        return CoupledFlowHead(config)
    return TrajectoryHead(config)
