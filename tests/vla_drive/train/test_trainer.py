"""The trainer in one process: exact resume, accumulation, schedule, parameter groups, data order, hooks, logging."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from tests.vla_drive.train.standins import (
    StandInModel,
    exact_objective,
    imitation_objective,
    noisy_objective,
    regression_data,
    stand_in_config,
    tiny_vla_builder,
)
from vla_drive.config import TrainConfig
from vla_drive.train import ShardedBatchSampler, Trainer, TrainerError, consolidate, lr_factor
from vla_drive.train.trainer import TrainingInterrupted, parameter_groups

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def _losses(history):
    return [m["loss"] for m in history]


def _optimizer_state(trainer):
    return {k: v for k, v in trainer.optimizer.state_dict()["state"].items()}


def test_resume_after_a_crash_continues_bit_for_bit(tmp_path):
    """20 samples, 2 x 2 per step: the run crosses an epoch; the crash comes after the step-4 checkpoint."""
    data = regression_data(20)
    kwargs = dict(batch_size=2, grad_accumulation=2, checkpoint_every=4, eval_every=5)
    reference = Trainer(StandInModel(), noisy_objective, stand_in_config(tmp_path / "a", **kwargs), dataset=data)
    expected = _losses(reference.fit())

    def crash(trainer, step):
        raise RuntimeError(f"simulated crash at step {step}")

    config = stand_in_config(tmp_path / "b", **kwargs)
    crashed = Trainer(StandInModel(), noisy_objective, config, dataset=data, on_eval=crash)
    with pytest.raises(RuntimeError, match="crash at step 5"):
        crashed.fit()
    resumed = Trainer(StandInModel(seed=99), noisy_objective, config, dataset=data)  # other init: weights load
    continued = _losses(resumed.fit())

    assert resumed.resumed_from.name == "step_00000004"
    assert continued == expected[4:]  # exact, not allclose
    for left, right in zip(reference.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(left, right)
    for key, state in _optimizer_state(reference).items():
        for name, value in state.items():
            assert torch.equal(value, _optimizer_state(resumed)[key][name])
    state = resumed.state  # 16 micro-batches of 2, 10 per epoch: the resumed part crossed into epoch 1
    assert (state.step, state.epoch, state.epoch_batches) == (8, 1, 6)
    records = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))  # step 5 of the crashed run was dropped
    assert [r["train/loss"] for r in records] == pytest.approx(expected)


def test_ctrl_c_reports_the_step_reached_and_the_checkpoint_to_resume_from(tmp_path):
    data = regression_data(20)
    config = stand_in_config(tmp_path, batch_size=2, checkpoint_every=2, eval_every=0, max_steps=10)

    def interrupted_at_step_5(trainer, step):
        if step == 5:
            raise KeyboardInterrupt

    config.train.eval_every = 1
    trainer = Trainer(StandInModel(), noisy_objective, config, dataset=data, on_eval=interrupted_at_step_5)
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    assert (info.value.step, info.value.max_steps) == (5, 10)
    assert info.value.checkpoint.name == "step_00000004"
    resumed = Trainer(
        StandInModel(), noisy_objective, stand_in_config(tmp_path, batch_size=2, max_steps=10), dataset=data
    )
    resumed.fit()
    assert resumed.resumed_from.name == "step_00000004" and resumed.state.step == 10


def test_accumulation_and_batch_size_give_the_same_updates(tmp_path):
    data = regression_data()
    whole = Trainer(StandInModel(), exact_objective, stand_in_config(tmp_path / "a", batch_size=4), dataset=data)
    split = Trainer(
        StandInModel(),
        exact_objective,
        stand_in_config(tmp_path / "b", batch_size=2, grad_accumulation=2),
        dataset=data,
    )
    np.testing.assert_allclose(_losses(split.fit()), _losses(whole.fit()), rtol=1e-5)
    for left, right in zip(whole.model.parameters(), split.model.parameters(), strict=True):
        torch.testing.assert_close(left, right, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_trains(tmp_path):
    config = stand_in_config(tmp_path, max_steps=3, mixed_precision="bf16", checkpoint_every=0)
    history = Trainer(StandInModel(), noisy_objective, config, dataset=regression_data()).fit()
    assert len(history) == 3 and all(math.isfinite(m["loss"]) for m in history)


def test_learning_rate_schedules():
    train = TrainConfig(max_steps=10, warmup_steps=2, lr_schedule="cosine")
    assert [lr_factor(s, train) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert lr_factor(6, train) == pytest.approx(0.5)
    assert lr_factor(10, train) == pytest.approx(0.0)
    linear = TrainConfig(max_steps=10, warmup_steps=0, lr_schedule="linear")
    assert [lr_factor(s, linear) for s in (0, 5)] == [1.0, 0.5]
    constant = TrainConfig(max_steps=10, warmup_steps=4, lr_schedule="constant")
    assert [lr_factor(s, constant) for s in (0, 3, 9)] == [0.25, 1.0, 1.0]
    with pytest.raises(TrainerError, match=r"train\.lr_schedule must be one of"):
        lr_factor(0, TrainConfig(lr_schedule="step"))


def test_the_optimizer_rate_follows_the_schedule(tmp_path):
    config = stand_in_config(tmp_path, max_steps=4, warmup_steps=2, lr_schedule="linear", checkpoint_every=0)
    trainer = Trainer(StandInModel(), noisy_objective, config, dataset=regression_data())
    lrs = [m["lr"] for m in trainer.fit()]
    assert lrs == pytest.approx([0.005, 0.01, 0.01, 0.005])  # warm-up, then linear to 0 at step 4
    backbone_group = next(g for g in trainer.optimizer.param_groups if g["group"] == "backbone")
    assert backbone_group["lr"] == pytest.approx(1.5e-3) and backbone_group["base_lr"] == 3e-3


def test_parameter_groups_split_backbone_and_decay():
    model = StandInModel()
    model.backbone[2].weight.requires_grad_(False)  # a frozen parameter is left out
    groups = {g["group"]: g for g in parameter_groups(model, TrainConfig(learning_rate=1.0, weight_decay=0.1))}
    assert set(groups) == {"model", "model/no_decay", "backbone", "backbone/no_decay"}
    assert groups["backbone"]["lr"] == 1.0  # backbone_learning_rate None = learning_rate
    assert groups["model/no_decay"]["weight_decay"] == 0.0 and groups["model"]["weight_decay"] == 0.1
    counted = sum(len(g["params"]) for g in groups.values())
    assert counted == sum(1 for p in model.parameters() if p.requires_grad)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(TrainerError, match="no trainable parameters"):
        parameter_groups(model, TrainConfig())


def test_sharded_sampler_splits_one_global_order():
    one = ShardedBatchSampler(22, batch_size=4, world_size=1, seed=5)
    ranks = [ShardedBatchSampler(22, batch_size=2, rank=r, world_size=2, seed=5) for r in range(2)]
    take = 11  # two epochs of 5 global batches, and one more
    whole = [b for _, b in zip(range(take), one, strict=False)]
    parts = [[b for _, b in zip(range(take), s, strict=False)] for s in ranks]
    assert [parts[0][i] + parts[1][i] for i in range(take)] == whole
    first_epoch = sorted(i for batch in whole[:5] for i in batch)
    assert len(set(first_epoch)) == 20 and whole[5:10] != whole[:5]  # no repeats; a new order each epoch
    resumed = ShardedBatchSampler(22, batch_size=4, seed=5, start_epoch=1, start_batch=2)
    assert next(iter(resumed)) == whole[7]
    with pytest.raises(TrainerError, match="fewer than one global micro-batch"):
        ShardedBatchSampler(3, batch_size=2, world_size=2)


def test_batch_source_eval_hook_and_logs(tmp_path):
    data = regression_data(12)
    batches = [(data.tensors[0][i : i + 4], data.tensors[1][i : i + 4]) for i in (0, 4, 8)]
    evaluated = []

    def on_eval(trainer, step):
        evaluated.append(step)
        return {"pdm_score": 0.5 + step / 100}

    config = stand_in_config(tmp_path, max_steps=5, eval_every=2, log_every=2, loggers=("jsonl", "tensorboard"))
    trainer = Trainer(
        StandInModel(), exact_objective, config, batch_source=lambda trainer: iter(batches), on_eval=on_eval
    )
    history = trainer.fit()
    assert len(history) == 3 and evaluated == [2]  # the source ran out after 3 batches
    assert trainer.checkpoints.directory.joinpath("latest").read_text().strip() == "step_00000003"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 2 and records[0]["train/loss"] == pytest.approx(np.mean(_losses(history[:2])))
    assert {"step": 2, "eval/pdm_score": 0.52}.items() <= records[1].items()
    assert records[2]["step"] == 3 and "train/samples_per_s" in records[2]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_bad_arguments_are_named(tmp_path):
    data = regression_data()
    config = stand_in_config(tmp_path)
    with pytest.raises(TrainerError, match="either dataset"):
        Trainer(StandInModel(), exact_objective, config)
    with pytest.raises(TrainerError, match="plain callable"):
        Trainer(StandInModel(), nn.Linear(2, 2), config, dataset=data)
    with pytest.raises(TrainerError, match=r"train\.grad_accumulation must be >= 1"):
        Trainer(StandInModel(), exact_objective, stand_in_config(tmp_path, grad_accumulation=0), dataset=data)
    trainer = Trainer(StandInModel(), exact_objective, config, dataset=data)
    with pytest.raises(TrainerError, match="got 2 micro-batches"):
        trainer.train_step([data[:4], data[4:8]])


@pytest.mark.slow
def test_real_driving_vla_resumes_and_consolidates(tmp_path, vla_samples):
    """One process, no DeepSpeed: a tiny DrivingVLA with a LoRA backbone trains, resumes exactly, and its checkpoint
    consolidates into a model that saves and loads."""
    from vla_drive.model.processor import Collator
    from vla_drive.model.vla import DrivingVLA

    build = tiny_vla_builder(vla_samples)
    collate = Collator(build().backbone.processor)
    kwargs = dict(max_steps=4, batch_size=2, checkpoint_every=2)
    reference = Trainer(
        build(), imitation_objective, stand_in_config(tmp_path / "a", **kwargs), dataset=vla_samples, collate_fn=collate
    )
    expected = _losses(reference.fit())
    resumed_config = stand_in_config(tmp_path / "b", resume=str(tmp_path / "a/checkpoints/step_00000002"), **kwargs)
    resumed = Trainer(build(), imitation_objective, resumed_config, dataset=vla_samples, collate_fn=collate)
    assert _losses(resumed.fit()) == expected[2:]

    model = consolidate(tmp_path / "a/checkpoints/step_00000004", build, output_dir=tmp_path / "model")
    live = dict(reference.model.named_parameters())
    for name, param in model.named_parameters():
        assert torch.equal(param, live[name]), name
    loaded = DrivingVLA.from_pretrained(tmp_path / "model")
    np.testing.assert_allclose(
        loaded.predict(vla_samples[:1], num_samples=2, steps=2, seed=0),
        reference.model.predict(vla_samples[:1], num_samples=2, steps=2, seed=0),
        atol=1e-5,
    )


class _Hooks:
    """Step hooks that halve the learning rate after every step and record what they saw."""

    def __init__(self) -> None:
        self.scale, self.seen = 1.0, []

    def lr_scale(self) -> float:
        return self.scale

    def after_step(self, metrics):
        self.seen.append(dict(metrics))
        self.scale *= 0.5


def test_step_hooks_scale_the_scheduled_rate_and_see_every_step(tmp_path):
    config = stand_in_config(tmp_path, max_steps=4, warmup_steps=0, lr_schedule="constant", checkpoint_every=0)
    hooks = _Hooks()
    history = Trainer(StandInModel(), exact_objective, config, dataset=regression_data(), step_hooks=hooks).fit()
    assert [m["lr"] for m in history] == [1e-2, 5e-3, 2.5e-3, 1.25e-3]  # the schedule's rate x the hook's scale
    assert [m["loss"] for m in hooks.seen] == [m["loss"] for m in history]


class _Skippable:
    def __init__(self, batch, skip: bool) -> None:
        self.batch, self.skip = batch, skip


def test_skipped_steps_count_without_running(tmp_path):
    config = stand_in_config(tmp_path, max_steps=4, warmup_steps=0, checkpoint_every=0, grad_accumulation=2)
    data = regression_data()
    micro = [_Skippable(data[i : i + 2], False) for i in range(0, 4, 2)]

    def objective(model, batch):
        return exact_objective(model, batch.batch)

    trainer = Trainer(StandInModel(), objective, config, batch_source=lambda trainer: iter(()))
    live = trainer.train_step(micro)
    after_live = [p.detach().clone() for p in trainer.model.parameters()]
    skipped = trainer.train_step([_Skippable(m.batch, True) for m in micro])
    assert "loss" in live and skipped == {"skipped_step": 1.0} and trainer.state.step == 2
    assert all(torch.equal(a, b) for a, b in zip(after_live, trainer.model.parameters(), strict=True))
    with pytest.raises(TrainerError, match="mixes skipped and live"):
        trainer.train_step([micro[0], _Skippable(micro[1].batch, True)])
