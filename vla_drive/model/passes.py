"""The model passes behind the typed requests of :mod:`vla_drive.model.types`, run by ``DrivingVLA.forward``.

Objectives and rollouts call ``model(request)`` (the model, or the DeepSpeed / DDP wrapper around it) instead of a
method, so that every pass goes through a forward: ZeRO-3 gathers partitioned weights only there, and DDP
synchronises the gradients of what the forward touched. The passes whose results are compared across calls
(chain log-probabilities, flow likelihoods, ``exact`` denoising losses) run outside autocast, so that ``prepare``
(no autocast) and the loss (under the trainer's autocast) compute the same numbers at the same weights.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch

from vla_drive.model.types import (
    ChainLogProbRequest,
    Cond,
    EncodeRequest,
    FlowLikelihoodRequest,
    Guidance,
    HeadLossRequest,
    ModelRequest,
    SampleRequest,
)

if TYPE_CHECKING:
    from vla_drive.model.vla import DrivingVLA


def run_request(model: DrivingVLA, request: ModelRequest) -> Any:
    """What ``request`` asks of ``model`` (see each request's docstring for the result)."""
    if isinstance(request, EncodeRequest):
        return model.encode(request.batch)
    if isinstance(request, SampleRequest):
        return model.sample(
            request.cond.to(model.device),
            request.num_samples,
            request.steps,
            stochastic=request.stochastic,
            return_chain=request.return_chain,
            generator=request.generator,
            guidance=request.guidance,
            temperature=request.temperature,
        )
    head = model.head
    cond = _request_cond(model, request)
    if isinstance(request, HeadLossRequest):
        with _exact(model.device) if request.exact else contextlib.nullcontext():
            return head.denoise_loss_branches(
                request.x0.to(model.device), cond, request.branches, t=request.t, eps=request.eps
            )
    if isinstance(request, ChainLogProbRequest):
        with _exact(model.device):
            return head.chain_logprob(
                request.chain.to(model.device), cond, request.noise, _branch(request.branch), request.last_steps
            )
    if isinstance(request, FlowLikelihoodRequest):
        with _exact(model.device):
            return head.log_likelihood(request.pair.to(model.device), cond, request.steps, _branch(request.branch))
    raise TypeError(f"run_request: not a model request: {type(request).__name__}")


def _request_cond(model: DrivingVLA, request: Any) -> Cond:
    """The stored condition rows, or (a training backbone) the scenes of ``inputs`` encoded with gradients, one
    row per ``scene`` entry."""
    if request.cond is not None:
        return request.cond.to(model.device)
    return model.encode(request.inputs).select(request.scene.to(model.device))


def _branch(branch: str | None) -> Guidance | None:
    return Guidance("none", branch=branch) if branch not in (None, "base") else None


def _exact(device: torch.device) -> contextlib.AbstractContextManager:
    """Outside any autocast: the weights' own dtype (float32, or bf16 weights under DeepSpeed bf16)."""
    return torch.autocast(device_type=device.type, enabled=False)
