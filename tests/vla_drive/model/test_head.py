"""The DiT trajectory head on a tiny configuration: API shapes, LoRA branches, guidance, log-probs, gradients."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vla_drive.model.head import HeadConfig, LoRALinear, Route, TrajectoryHead
from vla_drive.model.normalizer import TrajectoryNormalizer
from vla_drive.model.types import Cond, Guidance, NoiseConfig

COND_DIM = 24
OMEGAS = (0.0, 0.5, 1.0, 3.0)


def tiny_config(**overrides: object) -> HeadConfig:
    values: dict[str, object] = {
        "hidden_size": 32,
        "depth": 2,
        "num_heads": 4,
        "cond_dim": COND_DIM,
        "time_freq_dim": 32,
        "lora_rank": 4,
        "sample_steps": 4,
    }
    values.update(overrides)
    return HeadConfig(**values)  # type: ignore[arg-type]


def tiny_head(seed: int = 0, **overrides: object) -> TrajectoryHead:
    """A tiny head whose base weights are all random (DiT zero-inits would make every output 0); adapters as
    initialised (B = 0)."""
    torch.manual_seed(seed)
    head = TrajectoryHead(tiny_config(**overrides))
    with torch.no_grad():
        for p in head.base_parameters():
            p.normal_(0.0, 0.1)
    return head


def perturb_adapters(head: TrajectoryHead, seed: int = 1, scale: float = 0.1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for branch in head.branches:
            for p in head.adapter_parameters(branch):
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def make_cond(batch: int = 2, tokens: int = 6, seed: int = 0) -> Cond:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[0, tokens // 2 :] = False  # the first scene is padded
    return Cond(torch.randn(batch, tokens, COND_DIM, generator=g), mask, torch.randn(batch, 8, generator=g))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shapes() -> None:
    head, cond = tiny_head(), make_cond()
    x, t = torch.randn(6, 8, 3), torch.rand(6)
    assert head.predict(x, t, cond).shape == (6, 8, 3)  # per-scene cond, 3 samples per scene
    assert head.predict(x, 0.5, cond.repeat(3), branch="pos").shape == (6, 8, 3)
    assert head.predict_branches(x, t, cond).shape == (2, 6, 8, 3)
    assert head.denoise_loss(x, cond, branch="neg").shape == (6,)
    assert head.denoise_loss_branches(x, cond).shape == (2, 6)
    out = head.sample(cond, n=3, steps=5)
    assert out.traj.shape == out.x0.shape == (6, 8, 3) and out.chain is None and out.step_logp is None
    out = head.sample(cond, n=3, steps=5, guidance=Guidance("dichotomous", 1.0), return_chain=True)
    assert out.chain is not None and out.chain.shape == (6, 6, 8, 3) and torch.equal(out.chain[:, -1], out.x0)
    out = head.sample(cond, n=3, steps=5, stochastic=NoiseConfig(), generator=gen())
    assert out.chain is not None and out.chain.shape == (6, 6, 8, 3)
    assert out.step_logp is not None and out.step_logp.shape == (6, 5) and torch.isfinite(out.step_logp).all()
    assert head.chain_logprob(out.chain, cond, NoiseConfig()).shape == (6, 5)


def test_traj_is_the_denormalised_sample() -> None:
    head, cond = tiny_head(), make_cond()
    rng = np.random.default_rng(0)
    head.normalizer = TrajectoryNormalizer.fit(rng.normal(size=(50, 8, 3)) * [10.0, 2.0, 0.1] + [20.0, 0.0, 0.0])
    out = head.sample(cond, n=2, generator=gen())
    torch.testing.assert_close(out.traj, head.normalizer.denormalize(out.x0))
    head.normalizer = None
    assert torch.equal(head.sample(cond, n=2, generator=gen()).traj, out.x0)


@pytest.mark.parametrize("stochastic", [None, NoiseConfig(eta=1.0, min_std=0.05)])
def test_zero_adapters_guided_sampling_equals_the_base(stochastic: NoiseConfig | None) -> None:
    head, cond = tiny_head(), make_cond()
    base = head.sample(cond, n=3, steps=4, stochastic=stochastic, generator=gen(5))
    for omega in OMEGAS:
        guided = head.sample(
            cond, n=3, steps=4, guidance=Guidance("dichotomous", omega), stochastic=stochastic, generator=gen(5)
        )
        torch.testing.assert_close(guided.x0, base.x0, rtol=1e-5, atol=1e-5)
        if stochastic is not None:
            torch.testing.assert_close(guided.step_logp, base.step_logp, rtol=1e-5, atol=1e-4)


def test_omega_zero_is_the_pos_branch_and_guidance_matters_once_adapters_differ() -> None:
    head, cond = tiny_head(), make_cond()
    perturb_adapters(head)
    pos = head.sample(cond, n=3, guidance=Guidance(branch="pos"), generator=gen(2))
    zero = head.sample(cond, n=3, guidance=Guidance("dichotomous", 0.0), generator=gen(2))
    assert torch.equal(zero.x0, pos.x0)
    base = head.sample(cond, n=3, generator=gen(2))
    strong = head.sample(cond, n=3, guidance=Guidance("dichotomous", 2.0), generator=gen(2))
    assert not torch.allclose(pos.x0, base.x0, atol=1e-3)
    assert not torch.allclose(strong.x0, pos.x0, atol=1e-3)


def test_batched_two_branch_forward_equals_separate_forwards() -> None:
    head, cond = tiny_head(), make_cond()
    perturb_adapters(head)
    x, t = torch.randn(6, 8, 3), torch.rand(6)
    both = head.predict_branches(x, t, cond, ("pos", "neg"))
    pos, neg = head.predict(x, t, cond, "pos"), head.predict(x, t, cond, "neg")
    torch.testing.assert_close(both[0], pos, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(both[1], neg, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(pos, neg, atol=1e-3)
    for omega in OMEGAS:
        guided = head.predict_guided(x, t, cond, Guidance("dichotomous", omega))
        torch.testing.assert_close(guided, (1 + omega) * pos - omega * neg, rtol=1e-5, atol=1e-5)
    # three branches, base included, in one forward
    three = head.predict_branches(x, t, cond, ("neg", None, "pos"))
    torch.testing.assert_close(three[1], head.predict(x, t, cond), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(three[2], pos, rtol=1e-5, atol=1e-5)
    # a per-row route (a training batch mixing branches) through the low-level API
    rows = ["pos", "pos", None, "neg", "neg", "pos"]
    ctx = head.context(cond.repeat(3), Route.per_row(rows))
    mixed = head.denoise(x, t, ctx)
    for i, branch in enumerate(rows):
        expected = {"pos": pos, "neg": neg, None: head.predict(x, t, cond)}[branch][i]
        torch.testing.assert_close(mixed[i], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("guidance", [None, Guidance(branch="neg"), Guidance("dichotomous", 1.5)])
def test_chain_logprob_recomputes_the_stored_log_probs(guidance: Guidance | None) -> None:
    head, cond = tiny_head(), make_cond()
    perturb_adapters(head)
    noise = NoiseConfig(eta=1.0, min_std=0.02)
    out = head.sample(cond, n=4, steps=5, guidance=guidance, stochastic=noise, generator=gen(3))
    assert out.chain is not None and out.step_logp is not None
    recomputed = head.chain_logprob(out.chain, cond, noise, guidance)
    torch.testing.assert_close(recomputed, out.step_logp, rtol=0, atol=1e-5)
    assert recomputed.requires_grad  # usable as the new log-prob of a PPO ratio
    # a per-sample (already repeated) condition runs other batch shapes: equal up to float32 rounding
    torch.testing.assert_close(
        head.chain_logprob(out.chain, cond.repeat(4), noise, guidance), out.step_logp, rtol=1e-5, atol=1e-3
    )


def test_determinism_under_a_seed() -> None:
    head, cond = tiny_head(), make_cond()
    perturb_adapters(head)
    for kwargs in ({}, {"stochastic": NoiseConfig()}, {"guidance": Guidance("dichotomous", 1.0)}):
        a = head.sample(cond, n=2, generator=gen(11), **kwargs)  # type: ignore[arg-type]
        b = head.sample(cond, n=2, generator=gen(11), **kwargs)  # type: ignore[arg-type]
        c = head.sample(cond, n=2, generator=gen(12), **kwargs)  # type: ignore[arg-type]
        assert torch.equal(a.x0, b.x0) and not torch.equal(a.x0, c.x0)
    # sampling does not depend on train/eval mode and leaves the mode as it was
    head.train()
    assert torch.equal(head.sample(cond, n=2, generator=gen(11)).x0, head.sample(cond, n=2, generator=gen(11)).x0)
    assert head.training


def _grads(head: TrajectoryHead) -> dict[str, bool]:
    """Which parameter groups received a non-zero gradient."""

    def hit(params: list[torch.nn.Parameter]) -> bool:
        return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)

    return {
        "base": hit(head.base_parameters()),
        "pos": hit(head.adapter_parameters("pos")),
        "neg": hit(head.adapter_parameters("neg")),
    }


@pytest.mark.parametrize(
    ("branch", "frozen", "expected"),
    [
        (None, False, {"base": True, "pos": False, "neg": False}),
        ("pos", False, {"base": True, "pos": True, "neg": False}),
        ("neg", False, {"base": True, "pos": False, "neg": True}),
        ("pos", True, {"base": False, "pos": True, "neg": False}),
    ],
)
def test_gradients_reach_only_the_intended_parameters(
    branch: str | None, frozen: bool, expected: dict[str, bool]
) -> None:
    head, cond = tiny_head(), make_cond()
    perturb_adapters(head)  # with B = 0 the A matrices would get no gradient
    head.freeze_base(frozen)
    head.denoise_loss(torch.randn(6, 8, 3), cond, branch=branch, generator=gen()).mean().backward()
    assert _grads(head) == expected
    if branch is not None:  # every adapter matrix of the branch trains
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.adapter_parameters(branch))


def test_dichotomous_loss_in_one_forward_trains_each_adapter_on_its_own_weight() -> None:
    head, cond = tiny_head(), make_cond()
    perturb_adapters(head)
    head.freeze_base()
    losses = head.denoise_loss_branches(torch.randn(6, 8, 3), cond, ("pos", "neg"), generator=gen())
    w_pos = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    (w_pos * losses[0]).mean().backward()  # only the pos half of the batched forward is in the loss
    assert _grads(head) == {"base": False, "pos": True, "neg": False}


def test_adapters_disabled_evaluates_the_base() -> None:
    head, cond = tiny_head(), make_cond()
    perturb_adapters(head)
    x, t = torch.randn(6, 8, 3), torch.rand(6)
    base = head.predict(x, t, cond)
    with head.adapters_disabled():
        torch.testing.assert_close(head.predict(x, t, cond, "pos"), base)
        guided = head.sample(cond, n=3, guidance=Guidance("dichotomous", 2.0), generator=gen())
    torch.testing.assert_close(guided.x0, head.sample(cond, n=3, generator=gen()).x0, rtol=1e-5, atol=1e-5)
    assert head.adapters_enabled
    assert not torch.allclose(head.predict(x, t, cond, "pos"), base, atol=1e-3)


def test_adapter_parameters_are_disjoint_and_complete() -> None:
    head = tiny_head()
    ids = {name: {id(p) for p in head.adapter_parameters(name)} for name in ("pos", "neg")}
    base = {id(p) for p in head.base_parameters()}
    assert not (ids["pos"] & ids["neg"]) and not (base & (ids["pos"] | ids["neg"]))
    assert base | ids["pos"] | ids["neg"] == {id(p) for p in head.parameters()}
    layers = list(head.lora_layers())
    assert len(ids["pos"]) == 2 * len(layers) and len(layers) == 8 + 8 * head.config.depth
    assert all(
        torch.equal(layer.lora_B["pos"], torch.zeros_like(layer.lora_B["pos"]))
        for _, layer in TrajectoryHead(tiny_config()).lora_layers()
    )
    with pytest.raises(ValueError, match="unknown branch"):
        head.adapter_parameters("neutral")
    with pytest.raises(ValueError, match="unknown branch"):
        head.predict(torch.randn(2, 8, 3), 0.5, make_cond(), branch="neutral")


def test_adapter_save_load(tmp_path) -> None:
    source, cond = tiny_head(), make_cond()
    perturb_adapters(source)
    target = copy.deepcopy(source)
    with torch.no_grad():
        for p in target.adapter_parameters("pos") + target.adapter_parameters("neg"):
            p.zero_()
    source.save_adapter("pos", tmp_path / "pos.safetensors")
    target.load_adapter("pos", tmp_path / "pos.safetensors")
    x, t = torch.randn(6, 8, 3), torch.rand(6)
    torch.testing.assert_close(target.predict(x, t, cond, "pos"), source.predict(x, t, cond, "pos"))
    # an adapter's weights may be loaded into another branch (e.g. initialise neg from pos)
    target.load_adapter_state_dict("neg", source.adapter_state_dict("pos"))
    torch.testing.assert_close(target.predict(x, t, cond, "neg"), source.predict(x, t, cond, "pos"))
    with pytest.raises(ValueError, match="missing"):
        target.load_adapter_state_dict("neg", {})
    bigger = tiny_head(lora_rank=8)
    with pytest.raises(ValueError, match="expected shape"):
        bigger.load_adapter("pos", tmp_path / "pos.safetensors")


def test_merge_adapter_for_export() -> None:
    head, cond = tiny_head(), make_cond()
    perturb_adapters(head)
    x, t = torch.randn(6, 8, 3), torch.rand(6)
    expected = head.predict(x, t, cond, "pos")
    merged = copy.deepcopy(head).merge_adapter("pos")
    assert merged.branches == () and not any(".lora_" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(merged.predict(x, t, cond), expected, rtol=1e-5, atol=1e-5)
    plain = TrajectoryHead(merged.config)  # an adapter-free head has the same state-dict layout
    plain.load_state_dict(merged.state_dict())
    torch.testing.assert_close(plain.predict(x, t, cond), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown branch"):
        merged.predict(x, t, cond, "pos")


def test_condition_rows_padding_and_validation() -> None:
    head, cond = tiny_head(), make_cond()
    perturb_adapters(head)
    x, t = torch.randn(6, 8, 3), torch.rand(6)
    # per-scene cond (grouped cross-attention) equals the repeated per-sample cond
    torch.testing.assert_close(
        head.predict(x, t, cond, "pos"), head.predict(x, t, cond.repeat(3), "pos"), rtol=1e-5, atol=1e-5
    )
    # padded tokens are ignored
    noisy = Cond(cond.tokens.clone(), cond.mask, cond.ego)
    noisy.tokens[0, 3:] = 100.0
    torch.testing.assert_close(head.predict(x, t, noisy), head.predict(x, t, cond))
    # ego status and real tokens do matter
    assert not torch.allclose(head.predict(x, t, Cond(cond.tokens, cond.mask, cond.ego + 1)), head.predict(x, t, cond))
    with pytest.raises(ValueError, match="cond_dim"):
        head.predict(x, t, Cond(torch.randn(2, 6, 7), cond.mask, cond.ego))
    with pytest.raises(ValueError, match="ego_dim"):
        head.predict(x, t, Cond(cond.tokens, cond.mask, torch.randn(2, 5)))
    with pytest.raises(ValueError, match="at least one real"):
        head.predict(x, t, Cond(cond.tokens, torch.zeros_like(cond.mask), cond.ego))
    with pytest.raises(ValueError, match="cannot be split"):
        head.predict(torch.randn(5, 8, 3), 0.5, cond)


@pytest.mark.parametrize(
    "overrides",
    [
        {"path": "flow", "target": "v", "sampler": "euler"},
        {"path": "flow", "target": "x0", "sampler": "dpmpp_2m"},
        {"path": "vp_linear", "target": "x0", "sampler": "ddpm"},
        {"path": "vp_cosine", "target": "v", "sampler": "ddim", "ddim_eta": 0.5, "clip_x0": 3.0},
        {"path": "vp_cosine", "target": "eps", "sampler": "dpmpp_2m", "step_schedule": "logsnr", "cond_proj": "mlp"},
    ],
)
def test_configurations_sample_and_train(overrides: dict[str, object]) -> None:
    head, cond = tiny_head(**overrides), make_cond()
    out = head.sample(cond, n=2, steps=3, guidance=Guidance("dichotomous", 1.0), generator=gen())
    assert torch.isfinite(out.x0).all()
    if overrides.get("clip_x0"):
        assert out.x0.abs().max() <= 3.0 + 1e-6
    loss = head.denoise_loss(torch.randn(4, 8, 3), cond, generator=gen())
    assert loss.shape == (4,) and torch.isfinite(loss).all()


def test_denoise_loss_is_the_mse_to_the_target() -> None:
    head, cond = tiny_head(), make_cond()
    x0, t, eps = torch.randn(4, 8, 3), torch.rand(4), torch.randn(4, 8, 3)
    manual = (head.predict(head.forward_noise(x0, t, eps), t, cond) - head.target(x0, eps, t)).square().mean((1, 2))
    torch.testing.assert_close(head.denoise_loss(x0, cond, t=t, eps=eps), manual)


@pytest.mark.parametrize("target", ["x0", "v"])
def test_the_head_fits_two_trajectories(target: str) -> None:
    """Behaviour cloning from the standard initialisation halves the loss on a fixed set of times and noises."""
    cond, x0 = make_cond(), torch.randn(2, 8, 3, generator=gen(3))
    torch.manual_seed(0)
    fresh = TrajectoryHead(tiny_config(target=target))
    times = torch.linspace(0.05, 0.95, 16).repeat(2)  # every time for each scene (Cond.repeat is per scene)
    noise = torch.randn(32, 8, 3, generator=gen(1))

    def held_loss() -> float:
        with torch.no_grad():
            return float(fresh.denoise_loss(x0.repeat_interleave(16, 0), cond.repeat(16), t=times, eps=noise).mean())

    before = held_loss()
    optimizer = torch.optim.Adam(fresh.base_parameters(), lr=3e-3)
    g = gen(9)
    for _ in range(200):
        loss = fresh.denoise_loss(x0, cond, generator=g).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_loss()
    assert after < 0.5 * before, f"{target} loss {before:.4f} -> {after:.4f} after 200 steps"


def test_config_round_trip_and_validation() -> None:
    config = tiny_config(path="flow", target="v", sampler="euler")
    assert HeadConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown keys"):
        HeadConfig.from_dict({"hidden": 3})
    with pytest.raises(ValueError, match="divisible"):
        tiny_config(hidden_size=30)
    with pytest.raises(ValueError, match="singular"):
        tiny_config(path="flow", target="eps")
    with pytest.raises(ValueError, match="identity"):
        tiny_config(cond_proj="identity")
    with pytest.raises(ValueError, match="branches"):
        tiny_config(branches=("pos", "pos"))
    with pytest.raises(ValueError, match="guidance kind"):
        tiny_head().sample(make_cond(), guidance=Guidance("cfg", 1.0))  # type: ignore[arg-type]
    no_adapters = TrajectoryHead(tiny_config(branches=()))
    assert not any(isinstance(m, LoRALinear) and m.lora_A for m in no_adapters.modules())
    with pytest.raises(ValueError, match="unknown branch"):
        no_adapters.sample(make_cond(), guidance=Guidance("dichotomous", 1.0))
