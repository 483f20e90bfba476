"""The per-scene seeding rule: the noise of a scene's samples comes from its token and the run's seed only.

Every prediction path (validation, ``vla-drive eval`` / ``sweep`` / ``submit`` and the navsim agent run by the
official scripts) seeds each scene this way, so a scene gets the same trajectories whatever batch, order, rank or
worker it is predicted in (up to the last bits that CPU BLAS may change between batch sizes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def scene_seed(token: str, seed: int) -> int:
    """A 63-bit seed from a scene token and a run seed."""
    digest = hashlib.sha256(f"{int(seed)}:{token}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def scene_generators(tokens: Sequence[str], seed: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per scene, seeded by :func:`scene_seed`."""
    return [torch.Generator(device=device).manual_seed(scene_seed(token, seed)) for token in tokens]
