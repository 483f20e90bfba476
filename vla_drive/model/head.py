"""The DiT trajectory head: denoises 8 waypoint tokens conditioned on backbone tokens and the ego status.

Architecture: each pose (x, y, heading) is embedded and given a learned positional embedding; every block is
adaLN-Zero modulated by (diffusion-time embedding + ego-status MLP embedding) and runs self-attention over the
waypoints, cross-attention to the projected condition tokens (padding masked) and an MLP.

Branches: named LoRA adapters (``pos`` and ``neg`` by default, DIPOLE's pi+ and pi-) on every linear layer over
one shared base, B matrices zero at start so that every branch starts as the base. A :class:`Route` sends
contiguous row ranges of a batch through different adapters, so both branches run in ONE batched forward.

Condition handling: a condition batch of G rows serves an x batch of G * r rows (r consecutive samples per
condition row, the order of :meth:`Cond.repeat`). The condition tokens are projected, and every block's
cross-attention keys and values computed, once per condition row and once per ``sample`` call (not per step and
not per sample): the r samples of a scene are attended as one longer query sequence against the scene's keys.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vla_drive.model.diffusion import (
    Diffusion,
    Generators,
    ModelFn,
    PathName,
    SamplerName,
    StepScheduleName,
    TargetName,
    guidance_combine,
)
from vla_drive.model.normalizer import TrajectoryNormalizer
from vla_drive.model.types import EGO_STATUS_DIM, POSE_DIM, TRAJECTORY_POSES, Cond, Guidance, NoiseConfig, SampleOut

BASE = "base"


HEAD_KINDS: tuple[str, ...] = ("diffusion", "coupled_flow")


@dataclass
class HeadConfig:
    """Shape, diffusion and adapter settings of a :class:`TrajectoryHead` (``kind: coupled_flow``: GenPO's
    :class:`~vla_drive.model.coupled_flow.CoupledFlowHead` on the same trunk)."""

    kind: str = field(default="diffusion", metadata={"choices": HEAD_KINDS})  # diffusion | coupled_flow (GenPO)
    mixing: float = field(default=0.9, metadata={"min": 0, "strict": True})  # coupled flow: mixing p in (0, 1)
    hidden_size: int = field(default=512, metadata={"min": 1})
    depth: int = field(default=6, metadata={"min": 1})  # DiT blocks
    num_heads: int = field(default=8, metadata={"min": 1})
    mlp_ratio: float = field(default=4.0, metadata={"min": 0, "strict": True})
    cond_dim: int | None = field(default=None, metadata={"min": 1})  # the backbone's hidden size (None = from it)
    ego_dim: int = field(default=EGO_STATUS_DIM, metadata={"fixed": (EGO_STATUS_DIM, "the ego-status vector")})
    poses: int = field(default=TRAJECTORY_POSES, metadata={"fixed": (TRAJECTORY_POSES, "8 poses at 0.5 s")})
    pose_dim: int = field(default=POSE_DIM, metadata={"fixed": (POSE_DIM, "x, y, heading")})
    cond_proj: Literal["linear", "mlp", "identity"] = "linear"  # condition-token projection cond_dim -> hidden
    cond_norm: bool = True  # LayerNorm on the raw backbone states first (VLM states carry large outlier dims)
    dropout: float = field(default=0.0, metadata={"fraction": True})  # keep 0 for RL (log-probs must agree)
    time_freq_dim: int = field(default=256, metadata={"min": 2})
    path: PathName = "vp_cosine"
    # v by default: an x0 head collapses onto its conditional mean (on the proving ground its K samples spread
    # 0.5 m at 4 s against a 2.6 m error to the human, and less the longer it trains), which leaves group-relative
    # RL no signal; the v head's samples spread as far as its error. eps divides its error by alpha(1) (~0.007).
    target: TargetName = "v"
    sampler: SamplerName = "dpmpp_2m"
    step_schedule: StepScheduleName = "uniform"
    sample_steps: int = field(default=10, metadata={"min": 1})  # denoising steps of every prediction by default
    ddim_eta: float = field(default=0.0, metadata={"min": 0})  # noise of the deterministic-mode "ddim" sampler
    clip_x0: float | None = field(default=None, metadata={"min": 0, "strict": True})  # clamp x0 per step; None = off
    t_min: float = field(default=1e-3, metadata={"fraction": True})  # training times t ~ U[t_min, 1]
    branches: tuple[str, ...] = ("pos", "neg")  # LoRA adapter names; () = no adapters
    lora_rank: int = field(default=16, metadata={"min": 1})
    lora_alpha: float = field(default=16.0, metadata={"min": 0, "strict": True})

    def __post_init__(self) -> None:
        self.branches = tuple(self.branches)
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"HeadConfig: unknown kind {self.kind!r}; expected one of {', '.join(HEAD_KINDS)}")
        if not 0.0 < self.mixing < 1.0:
            raise ValueError(f"HeadConfig: mixing must be in (0, 1), got {self.mixing}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"HeadConfig: hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.cond_proj == "identity" and self.cond_dim not in (None, self.hidden_size):
            raise ValueError(
                f"HeadConfig: cond_proj 'identity' needs cond_dim == hidden_size, got {self.cond_dim} "
                f"and {self.hidden_size}"
            )
        if self.cond_proj not in ("linear", "mlp", "identity"):
            raise ValueError(f"HeadConfig: unknown cond_proj {self.cond_proj!r}; expected linear, mlp or identity")
        if BASE in self.branches or len(set(self.branches)) != len(self.branches):
            raise ValueError(f"HeadConfig: branches must be distinct and not {BASE!r}, got {self.branches}")
        if self.branches and self.lora_rank < 1:
            raise ValueError(f"HeadConfig: lora_rank must be >= 1 when branches are set, got {self.lora_rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"HeadConfig: dropout must be in [0, 1), got {self.dropout}")
        self.diffusion()  # validates path / target / sampler / schedule together

    def diffusion(self) -> Diffusion:
        """The :class:`Diffusion` these settings describe."""
        return Diffusion(
            self.path, self.target, self.sampler, self.step_schedule, self.ddim_eta, self.clip_x0, self.t_min
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["branches"] = list(self.branches)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HeadConfig:
        """Inverse of :meth:`to_dict`; names unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"HeadConfig: unknown keys {unknown}")
        return cls(**values)


# --------------------------------------------------------------------------------------------------------- routing
@dataclass(frozen=True)
class Route:
    """Which adapter each contiguous part of a batch goes through.

    ``segments`` are (branch, units) in batch order; a tensor of R rows splits them in proportion (R must be a
    multiple of the total units), so one route serves the condition rows (scene x branch) and the sample rows
    (scene x branch x samples) alike. Branch None means the base."""

    segments: tuple[tuple[str | None, int], ...] = ((None, 1),)

    @classmethod
    def single(cls, branch: str | None) -> Route:
        return cls(((None if branch == BASE else branch, 1),))

    @classmethod
    def stacked(cls, branches: Sequence[str | None], rows_each: int) -> Route:
        """Branches applied to consecutive equal blocks (a batch concatenated once per branch)."""
        return cls(tuple((None if b == BASE else b, rows_each) for b in branches))

    @classmethod
    def per_row(cls, branches: Sequence[str | None]) -> Route:
        """One branch per row, run-length encoded (e.g. a training batch mixing pos and neg samples)."""
        segments: list[tuple[str | None, int]] = []
        for b in branches:
            b = None if b == BASE else b
            if segments and segments[-1][0] == b:
                segments[-1] = (b, segments[-1][1] + 1)
            else:
                segments.append((b, 1))
        return cls(tuple(segments))

    @property
    def branches(self) -> set[str]:
        return {b for b, _ in self.segments if b is not None}

    def spans(self, rows: int) -> list[tuple[str | None, int, int]]:
        """(branch, start, stop) over ``rows`` rows."""
        units = sum(n for _, n in self.segments)
        if rows % units:
            raise ValueError(f"Route: {rows} rows cannot be split over {units} route units {self.segments}")
        per = rows // units
        spans, start = [], 0
        for branch, n in self.segments:
            spans.append((branch, start, start + n * per))
            start += n * per
        return spans


class LoRALinear(nn.Linear):
    """nn.Linear plus named low-rank adapters: y = W x + b + (alpha / r) B_k A_k x for the rows routed to k.

    Subclassing nn.Linear keeps the base keys (``weight``, ``bias``) those of a plain linear layer, so merged or
    adapter-free heads share one state-dict layout."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        branches: Sequence[str] = (),
        rank: int = 16,
        alpha: float = 16.0,
        bias: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.rank = rank
        self.scaling = alpha / rank if rank > 0 else 0.0
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        for name in branches:
            a = nn.Parameter(torch.empty(rank, in_features))
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.lora_A[name] = a
            self.lora_B[name] = nn.Parameter(torch.zeros(out_features, rank))

    def delta(self, x: Tensor, branch: str) -> Tensor:
        """The adapter's contribution (alpha / r) B A x."""
        return F.linear(F.linear(x, self.lora_A[branch]), self.lora_B[branch]) * self.scaling

    def forward(self, x: Tensor, route: Route | None = None) -> Tensor:
        out = F.linear(x, self.weight, self.bias)
        if route is None or not self.lora_A:
            return out
        for branch, start, stop in route.spans(x.shape[0]):
            if branch is None:
                continue
            # in place on the rows of this branch: no zero padding, no concatenation, no full-size temporary
            low = F.linear(x[start:stop], self.lora_A[branch]).reshape(-1, self.rank)
            rows = out[start:stop].view(-1, self.out_features)
            rows.addmm_(low, self.lora_B[branch].t(), alpha=self.scaling)
        return out

    @torch.no_grad()
    def merge(self, branch: str) -> None:
        """Fold one adapter into the base weight and drop every adapter."""
        self.weight += (self.lora_B[branch] @ self.lora_A[branch]) * self.scaling
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, branches={list(self.lora_A.keys())}, rank={self.rank}"


# ------------------------------------------------------------------------------------------------------ the network
def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of t in [0, 1] (scaled by 1000, the DDPM step range): [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (1000.0 * t.float())[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class _MLP(nn.Module):
    """Two routed linear layers with an activation between them."""

    def __init__(
        self, d_in: int, d_hidden: int, d_out: int, lora: dict[str, Any], act: nn.Module, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1 = LoRALinear(d_in, d_hidden, **lora)
        self.act = act
        self.drop = nn.Dropout(dropout)
        self.fc2 = LoRALinear(d_hidden, d_out, **lora)

    def forward(self, x: Tensor, route: Route | None) -> Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x, route))), route)


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x * (1 + scale) + shift, fused."""
    return torch.addcmul(shift, x, 1.0 + scale)


class DiTBlock(nn.Module):
    """adaLN-Zero block: modulated self-attention, cross-attention to the condition tokens, and MLP."""

    def __init__(self, d: int, heads: int, mlp_ratio: float, dropout: float, lora: dict[str, Any]) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = LoRALinear(d, 3 * d, **lora)
        self.attn_out = LoRALinear(d, d, **lora)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.cross_q = LoRALinear(d, d, **lora)
        self.cross_kv = LoRALinear(d, 2 * d, **lora)
        self.cross_out = LoRALinear(d, d, **lora)
        self.norm3 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = _MLP(d, int(d * mlp_ratio), d, lora, nn.GELU(approximate="tanh"), dropout)
        self.modulation = LoRALinear(d, 9 * d, **lora)
        self.drop = nn.Dropout(dropout)

    def keys_values(self, tokens: Tensor, route: Route | None) -> tuple[Tensor, Tensor]:
        """Cross-attention keys and values of the projected condition tokens [G, M, d]: 2 x [G, heads, M, dh]."""
        g, m, d = tokens.shape
        kv = self.cross_kv(tokens, route).view(g, m, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return kv[0], kv[1]

    def forward(
        self, x: Tensor, silu_c: Tensor, kv: tuple[Tensor, Tensor], attn_mask: Tensor, route: Route | None
    ) -> Tensor:
        b, n, d = x.shape
        h, dh = self.heads, d // self.heads
        mod = self.modulation(silu_c, route).unsqueeze(1).chunk(9, dim=-1)
        # self-attention over the waypoints of each sample
        y = _modulate(self.norm1(x), mod[0], mod[1])
        q, k, v = self.qkv(y, route).view(b, n, 3, h, dh).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = torch.addcmul(x, mod[2], self.drop(self.attn_out(y, route)))
        # cross-attention: the r samples of one condition row form one query sequence of r * n tokens
        y = _modulate(self.norm2(x), mod[3], mod[4])
        keys, values = kv
        g = keys.shape[0]
        q = self.cross_q(y, route).view(g, (b // g) * n, h, dh).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask)
        y = y.transpose(1, 2).reshape(b, n, d)
        x = torch.addcmul(x, mod[5], self.drop(self.cross_out(y, route)))
        y = _modulate(self.norm3(x), mod[6], mod[7])
        return torch.addcmul(x, mod[8], self.drop(self.mlp(y, route)))


@dataclass
class _Context:
    """Per-condition-row state shared by every denoising step: cross-attention K/V per block, mask, ego embedding."""

    kv: list[tuple[Tensor, Tensor]]
    attn_mask: Tensor  # [G, 1, 1, M] bool, True = attend
    ego_emb: Tensor  # [G, d]
    route: Route = field(default_factory=Route)

    @property
    def rows(self) -> int:
        return self.ego_emb.shape[0]


class TrajectoryHead(nn.Module):
    """DiT denoiser over waypoint tokens with LoRA branches; the head API of algorithms.md section 7.2."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        if config.cond_dim is None:
            raise ValueError(
                "TrajectoryHead: HeadConfig.cond_dim is not set; give the backbone's hidden size "
                "(DrivingVLA.build fills it from the backbone)"
            )
        self.config = config
        self.diffusion = config.diffusion()
        self.param: TargetName = config.target  # what ``predict`` returns (eps, v or x0)
        self.normalizer: TrajectoryNormalizer | None = None  # set by the owner; None = model space is env space
        self.adapters_enabled = True
        d = config.hidden_size
        lora = {"branches": config.branches, "rank": config.lora_rank, "alpha": config.lora_alpha}
        self.x_embed = LoRALinear(config.pose_dim, d, **lora)
        self.pos_embed = nn.Parameter(torch.zeros(config.poses, d))
        self.time_mlp = _MLP(config.time_freq_dim, d, d, lora, nn.SiLU())
        self.ego_mlp = _MLP(config.ego_dim, d, d, lora, nn.SiLU())
        self.cond_norm = nn.LayerNorm(config.cond_dim) if config.cond_norm else nn.Identity()
        self.cond_proj: LoRALinear | _MLP | None
        if config.cond_proj == "linear":
            self.cond_proj = LoRALinear(config.cond_dim, d, **lora)
        elif config.cond_proj == "mlp":
            self.cond_proj = _MLP(config.cond_dim, d, d, lora, nn.GELU(approximate="tanh"))
        else:
            self.cond_proj = None
        self.blocks = nn.ModuleList(
            DiTBlock(d, config.num_heads, config.mlp_ratio, config.dropout, lora) for _ in range(config.depth)
        )
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_mod = LoRALinear(d, 2 * d, **lora)
        self.final_out = LoRALinear(d, config.pose_dim, **lora)
        self._init_weights()

    def _init_weights(self) -> None:
        """DiT initialisation: xavier linears, zero adaLN modulation and output (each block starts as identity)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.pos_embed, std=0.02)
        for mlp in (self.time_mlp, self.ego_mlp):
            nn.init.normal_(mlp.fc1.weight, std=0.02)
            nn.init.normal_(mlp.fc2.weight, std=0.02)
        zero = [block.modulation for block in self.blocks] + [self.final_mod, self.final_out]
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # ------------------------------------------------------------------------------------------------ core network
    def _check_branch(self, branch: str | None) -> None:
        if branch not in (None, BASE) and branch not in self.config.branches:
            raise ValueError(f"TrajectoryHead: unknown branch {branch!r}; this head has {[BASE, *self.branches]}")

    def _route(self, route: Route) -> Route | None:
        for branch in route.branches:
            self._check_branch(branch)
        return route if self.adapters_enabled and route.branches else None

    def context(self, cond: Cond, route: Route | None = None) -> _Context:
        """Project the condition tokens and compute every block's cross-attention K/V, once per condition row."""
        cfg = self.config
        if cond.tokens.ndim != 3 or cond.tokens.shape[-1] != cfg.cond_dim:
            raise ValueError(
                f"Cond.tokens: expected [B, M, {cfg.cond_dim}] (HeadConfig.cond_dim), got {tuple(cond.tokens.shape)}"
            )
        if tuple(cond.mask.shape) != tuple(cond.tokens.shape[:2]):
            raise ValueError(f"Cond.mask: expected {tuple(cond.tokens.shape[:2])}, got {tuple(cond.mask.shape)}")
        if cond.ego.shape != (cond.tokens.shape[0], cfg.ego_dim):
            raise ValueError(
                f"Cond.ego: expected [{cond.tokens.shape[0]}, {cfg.ego_dim}] (HeadConfig.ego_dim), got "
                f"{tuple(cond.ego.shape)}"
            )
        mask = cond.mask.bool()
        if not bool(mask.any(dim=1).all()):
            raise ValueError("Cond.mask: every row needs at least one real (True) token")
        route = route or Route()
        active = self._route(route)
        tokens = self.cond_norm(cond.tokens.to(self.pos_embed.dtype))
        if self.cond_proj is not None:
            tokens = self.cond_proj(tokens, active)
        kv = [block.keys_values(tokens, active) for block in self.blocks]
        ego_emb = self.ego_mlp(cond.ego.to(tokens.dtype), active)
        return _Context(kv=kv, attn_mask=mask[:, None, None, :], ego_emb=ego_emb, route=route)

    def denoise(self, x_t: Tensor, t: Tensor | float, ctx: _Context) -> Tensor:
        """Network output for x_t [R, H, D] at t against a prepared context of G rows (R a multiple of G)."""
        rows = x_t.shape[0]
        if rows % ctx.rows:
            raise ValueError(f"TrajectoryHead: {rows} samples cannot be split over {ctx.rows} condition rows")
        if not isinstance(t, Tensor):
            t = torch.full((rows,), float(t), device=x_t.device)
        elif t.ndim == 0:
            t = t.expand(rows)
        active = self._route(ctx.route)
        x = self.x_embed(x_t.to(self.pos_embed.dtype), active) + self.pos_embed
        c = self.time_mlp(timestep_embedding(t, self.config.time_freq_dim).to(x.dtype), active)
        c = c + ctx.ego_emb.repeat_interleave(rows // ctx.rows, dim=0)
        silu_c = F.silu(c)
        for block, kv in zip(self.blocks, ctx.kv, strict=True):
            x = block(x, silu_c, kv, ctx.attn_mask, active)
        shift, scale = self.final_mod(silu_c, active).unsqueeze(1).chunk(2, dim=-1)
        return self.final_out(_modulate(self.final_norm(x), shift, scale), active)

    # ------------------------------------------------------------------------------------------------- head API
    def predict(self, x_t: Tensor, t: Tensor | float, cond: Cond, branch: str | None = None) -> Tensor:
        """The prediction (``self.param``: eps, v or x0) of one branch (None / 'base' = the base)."""
        return self.denoise(x_t, t, self.context(cond, Route.single(branch)))

    def predict_branches(
        self, x_t: Tensor, t: Tensor | float, cond: Cond, branches: Sequence[str | None] = ("pos", "neg")
    ) -> Tensor:
        """Predictions of several branches in ONE batched forward: [len(branches), B, H, D]."""
        ctx = self._stacked_context(cond, branches)
        nb = len(branches)
        t_rep = torch.cat([t] * nb) if isinstance(t, Tensor) and t.ndim == 1 else t
        return self.denoise(torch.cat([x_t] * nb), t_rep, ctx).unflatten(0, (nb, x_t.shape[0]))

    def predict_guided(self, x_t: Tensor, t: Tensor | float, cond: Cond, guidance: Guidance | None) -> Tensor:
        """The guided prediction used by the sampler (dichotomous: both branches in one forward)."""
        return self._guided_model(cond, guidance)[0](x_t, t, None)

    def forward_noise(self, x0: Tensor, t: Tensor | float, eps: Tensor) -> Tensor:
        """a_t on the configured path (VP or rectified flow)."""
        return self.diffusion.forward_noise(x0, t, eps)

    def target(self, x0: Tensor, eps: Tensor, t: Tensor | float) -> Tensor:
        """The regression target (eps / v / x0) for (x0, eps) at t."""
        return self.diffusion.target(x0, eps, t)

    def denoise_loss(
        self,
        x0: Tensor,
        cond: Cond,
        branch: str | None = None,
        t: Tensor | None = None,
        eps: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-sample denoising MSE [B] (mean over poses and dims) of one branch; t ~ U[t_min, 1], eps ~ N(0, I)."""
        t, eps = self._loss_noise(x0, t, eps, generator)
        pred = self.predict(self.forward_noise(x0, t, eps), t, cond, branch)
        return (pred - self.target(x0, eps, t)).square().flatten(1).mean(1)

    def denoise_loss_branches(
        self,
        x0: Tensor,
        cond: Cond,
        branches: Sequence[str | None] = ("pos", "neg"),
        t: Tensor | None = None,
        eps: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-sample losses of several branches on shared (t, eps), ONE batched forward: [len(branches), B].

        With M pairs per sample (t [B, M], eps [B, M, H, D]) the M noised copies of a sample share its condition
        row (r = M samples per row): [len(branches), B, M]."""
        if t is not None and t.ndim == 2:
            pairs = t.shape[1]
            if eps is None or eps.shape[:2] != t.shape:
                raise ValueError(f"denoise_loss_branches: t {tuple(t.shape)} needs eps [B, M, ...] of the same M")
            flat = self.denoise_loss_branches(
                x0.repeat_interleave(pairs, dim=0), cond, branches, t.flatten(), eps.flatten(0, 1)
            )
            return flat.unflatten(1, (x0.shape[0], pairs))
        t, eps = self._loss_noise(x0, t, eps, generator)
        pred = self.predict_branches(self.forward_noise(x0, t, eps), t, cond, branches)
        return (pred - self.target(x0, eps, t)).square().flatten(2).mean(2)

    def imitation_loss(self, x0: Tensor, cond: Cond, branch: str | None = None) -> Tensor:
        """The per-sample loss [B] that imitation minimises: the denoising loss (fresh t and noise)."""
        return self.denoise_loss(x0, cond, branch=branch)

    def _loss_noise(
        self, x0: Tensor, t: Tensor | None, eps: Tensor | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        if t is None:
            t = self.diffusion.sample_t(x0.shape[0], x0.device, generator)
        if eps is None:
            eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return t, eps

    def sample(
        self,
        cond: Cond,
        n: int = 1,
        steps: int | None = None,
        guidance: Guidance | None = None,
        stochastic: NoiseConfig | None = None,
        return_chain: bool = False,
        generator: Generators = None,
        temperature: float = 1.0,
    ) -> SampleOut:
        """n samples per condition row (consecutive, as :meth:`Cond.repeat`) with the configured sampler, or the
        stochastic DDIM-eta sampler (chain + per-step log-probs) when ``stochastic`` is given; ``temperature``
        scales the sampler's noise (:meth:`Diffusion.sample`).

        Runs in eval mode (no dropout) and under the caller's grad mode. ``traj`` is ``x0`` denormalised by the
        attached normaliser (identity if none)."""
        if n < 1:
            raise ValueError(f"TrajectoryHead.sample: n must be >= 1, got {n}")
        steps = self.config.sample_steps if steps is None else steps
        was_training = self.training
        self.eval()
        try:
            model_fn, _ = self._guided_model(cond, guidance)
            shape = (cond.batch_size * n, self.config.poses, self.config.pose_dim)
            out = self.diffusion.sample(
                model_fn,
                None,
                shape,
                steps,
                stochastic=stochastic,
                return_chain=return_chain or stochastic is not None,
                generator=generator,
                device=cond.tokens.device,
                dtype=self.pos_embed.dtype,
                temperature=temperature,
            )
        finally:
            self.train(was_training)
        traj = self.normalizer.denormalize(out.x0) if self.normalizer is not None else out.x0
        return SampleOut(traj=traj, x0=out.x0, chain=out.chain, step_logp=out.step_logp)

    def chain_logprob(
        self,
        chain: Tensor,
        cond: Cond,
        noise: NoiseConfig,
        guidance: Guidance | None = None,
        last_steps: int | None = None,
    ) -> Tensor:
        """Per-step Gaussian log-probabilities [B, K'] (float32) of a stored chain [B, N+1, H, D] under the current
        weights, for the last K' = ``last_steps`` transitions (None = all N).

        Pass the cond and guidance used at sampling: with the same weights this equals the sampled ``step_logp``
        (up to the batch layout, which changes float rounding only)."""
        model_fn, _ = self._guided_model(cond, guidance)
        return self.diffusion.chain_logprob(model_fn, chain, None, noise, last_steps)

    # ------------------------------------------------------------------------------------------------- guidance
    def _stacked_context(self, cond: Cond, branches: Sequence[str | None]) -> _Context:
        """Context of a condition batch repeated once per branch, each block routed through its branch."""
        nb = len(branches)
        stacked = Cond(torch.cat([cond.tokens] * nb), torch.cat([cond.mask] * nb), torch.cat([cond.ego] * nb))
        return self.context(stacked, Route.stacked(branches, cond.batch_size))

    def _guided_model(self, cond: Cond, guidance: Guidance | None) -> tuple[ModelFn, _Context]:
        """A model_fn(x, t, _) for the sampler, with the condition context computed once."""
        if guidance is None or guidance.kind == "none":
            branch = guidance.branch if guidance is not None else None
            ctx = self.context(cond, Route.single(branch))
            return (lambda x, t, _: self.denoise(x, t, ctx)), ctx
        if guidance.kind != "dichotomous":
            raise ValueError(f"TrajectoryHead: unknown guidance kind {guidance.kind!r}; expected none or dichotomous")
        for branch in ("pos", "neg"):
            self._check_branch(branch)
        omega = float(guidance.omega)
        if omega == 0.0:  # (1 + 0) pos - 0 neg: the pos branch alone, half the compute
            ctx = self.context(cond, Route.single("pos"))
            return (lambda x, t, _: self.denoise(x, t, ctx)), ctx
        ctx = self._stacked_context(cond, ("pos", "neg"))

        def guided(x: Tensor, t: Tensor, _: Any) -> Tensor:
            t2 = torch.cat([t, t]) if isinstance(t, Tensor) and t.ndim == 1 else t
            pos, neg = self.denoise(torch.cat([x, x]), t2, ctx).chunk(2)
            return guidance_combine(pos, neg, omega)

        return guided, ctx

    # ------------------------------------------------------------------------------------------------- adapters
    @property
    def branches(self) -> tuple[str, ...]:
        """Adapter names currently on the head (empty after a merge)."""
        return self.config.branches

    def lora_layers(self) -> Iterator[tuple[str, LoRALinear]]:
        for name, module in self.named_modules():
            if isinstance(module, LoRALinear):
                yield name, module

    def adapter_parameters(self, branch: str) -> list[nn.Parameter]:
        """Every LoRA A and B matrix of one branch (for its optimizer group)."""
        self._check_branch(branch)
        if branch in (None, BASE):
            raise ValueError("TrajectoryHead.adapter_parameters: the base has no adapter; use base_parameters()")
        return [p for _, layer in self.lora_layers() for p in (layer.lora_A[branch], layer.lora_B[branch])]

    def base_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not a LoRA adapter."""
        return [p for name, p in self.named_parameters() if ".lora_A." not in name and ".lora_B." not in name]

    def freeze_base(self, frozen: bool = True) -> None:
        """Stop (or restart) gradients into the shared base; adapters keep training."""
        for p in self.base_parameters():
            p.requires_grad_(not frozen)

    def train_only(self, branches: Sequence[str]) -> None:
        """Gradients into the adapters of ``branches`` only (the base and every other branch frozen)."""
        for branch in branches:
            self._check_branch(branch)
        keep = {id(p) for branch in branches for p in self.adapter_parameters(branch)}
        for p in self.parameters():
            p.requires_grad_(id(p) in keep)

    @torch.no_grad()
    def add_branches(self, names: Sequence[str], seed: int = 0) -> None:
        """New LoRA adapters on every layer (A from a generator seeded by ``seed``, so every rank draws the same;
        B zero, so each new branch starts as the base). Names the head has already are left as they are."""
        new = [name for name in names if name not in self.config.branches]
        if not new:
            return
        if BASE in new:
            raise ValueError(f"TrajectoryHead.add_branches: {BASE!r} is the base, not a branch")
        generator = torch.Generator().manual_seed(seed)
        for _, layer in self.lora_layers():
            for name in new:
                a = torch.empty(layer.rank, layer.in_features)
                bound = 1.0 / math.sqrt(layer.in_features)  # kaiming_uniform_(a=sqrt(5)), as at construction
                a.uniform_(-bound, bound, generator=generator)
                like = layer.weight
                layer.lora_A[name] = nn.Parameter(a.to(like.device, like.dtype))
                layer.lora_B[name] = nn.Parameter(torch.zeros(layer.out_features, layer.rank).to(like))
        self.config = HeadConfig.from_dict({**self.config.to_dict(), "branches": [*self.config.branches, *new]})

    def set_adapters_enabled(self, enabled: bool) -> None:
        """With adapters disabled every branch evaluates as the base."""
        self.adapters_enabled = bool(enabled)

    @contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        """Evaluate the base only inside the block (e.g. the IL reference policy)."""
        previous = self.adapters_enabled
        self.adapters_enabled = False
        try:
            yield
        finally:
            self.adapters_enabled = previous

    def adapter_state_dict(self, branch: str) -> dict[str, Tensor]:
        """One branch's adapter weights keyed ``<layer>.lora_A`` / ``<layer>.lora_B`` (detached clones)."""
        self._check_branch(branch)
        out: dict[str, Tensor] = {}
        for name, layer in self.lora_layers():
            out[f"{name}.lora_A"] = layer.lora_A[branch].detach().clone()
            out[f"{name}.lora_B"] = layer.lora_B[branch].detach().clone()
        return out

    @torch.no_grad()
    def load_adapter_state_dict(self, branch: str, state: dict[str, Tensor]) -> None:
        """Load one branch's adapter weights (as from :meth:`adapter_state_dict`, possibly of another branch)."""
        self._check_branch(branch)
        expected = {f"{name}.lora_{m}" for name, _ in self.lora_layers() for m in "AB"}
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(
                f"TrajectoryHead.load_adapter_state_dict({branch!r}): missing {missing[:4]}"
                f"{'...' if len(missing) > 4 else ''}, unexpected {unexpected[:4]}"
            )
        for name, layer in self.lora_layers():
            for m, params in (("A", layer.lora_A), ("B", layer.lora_B)):
                value = state[f"{name}.lora_{m}"]
                if value.shape != params[branch].shape:
                    raise ValueError(
                        f"adapter {branch!r} layer {name}.lora_{m}: expected shape "
                        f"{tuple(params[branch].shape)}, got {tuple(value.shape)}"
                    )
                params[branch].copy_(value)

    def save_adapter(self, branch: str, path: str | Path) -> None:
        """Write one branch's adapter weights as safetensors."""
        from safetensors.torch import save_file

        save_file(
            {k: v.contiguous().cpu() for k, v in self.adapter_state_dict(branch).items()},
            str(path),
            metadata={"branch": branch, "rank": str(self.config.lora_rank), "alpha": str(self.config.lora_alpha)},
        )

    def load_adapter(self, branch: str, path: str | Path) -> None:
        """Read adapter weights written by :meth:`save_adapter` into ``branch``."""
        from safetensors.torch import load_file

        self.load_adapter_state_dict(branch, load_file(str(path), device=str(self.pos_embed.device)))

    @torch.no_grad()
    def merge_adapter(self, branch: str) -> TrajectoryHead:
        """Fold one branch into the base weights for export and drop all adapters (the others were trained
        against the old base). In place; returns self. ``copy.deepcopy`` first to keep the original."""
        self._check_branch(branch)
        if branch in (None, BASE):
            raise ValueError("TrajectoryHead.merge_adapter: name a branch, not the base")
        for _, layer in self.lora_layers():
            layer.merge(branch)
        self.config = HeadConfig.from_dict({**self.config.to_dict(), "branches": ()})
        return self
