"""Checkpoints: a crash mid-write never hurts the last good one, keep-last-K, the latest pointer, consolidation."""

from __future__ import annotations

import json

import pytest
import torch

from tests.vla_drive.train.standins import StandInModel, exact_objective, regression_data, stand_in_config
from vla_drive.train import CheckpointError, Trainer, consolidate, latest_checkpoint
from vla_drive.train.checkpoint import STATE_FILE, list_checkpoints, resolve_resume


def _trainer(tmp_path, **train):
    return Trainer(StandInModel(), exact_objective, stand_in_config(tmp_path, **train), dataset=regression_data())


@pytest.mark.parametrize("where", ["model and optimizer files", "trainer state"])
def test_a_crash_mid_write_leaves_the_previous_checkpoint_and_latest(tmp_path, monkeypatch, where):
    trainer = _trainer(tmp_path, max_steps=4, checkpoint_every=2)
    checkpoints = trainer.checkpoints.directory
    save_state, write_state = trainer.accelerator.save_state, trainer.checkpoints._write_state

    def dying_save_state(output_dir, **kwargs):  # some files are written, then the process is killed
        save_state(output_dir, **kwargs)
        if trainer.state.step == 4:
            raise KeyboardInterrupt("killed while writing")

    def torn_write_state(staging, state, metadata):
        if state.step != 4:
            return write_state(staging, state, metadata)
        (staging / STATE_FILE).write_text('{"format_version": 1, "sta')
        raise OSError("disk full")

    if where == "trainer state":
        monkeypatch.setattr(trainer.checkpoints, "_write_state", torn_write_state)
    else:
        monkeypatch.setattr(trainer.accelerator, "save_state", dying_save_state)
    with pytest.raises((KeyboardInterrupt, OSError)):
        trainer.fit()
    assert (checkpoints / ".step_00000004.partial").is_dir()  # the torn write stayed out of the way
    assert (checkpoints / "latest").read_text() == "step_00000002\n"
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step_00000002"]
    assert latest_checkpoint(tmp_path).name == "step_00000002"

    monkeypatch.undo()
    resumed = _trainer(tmp_path, max_steps=4, checkpoint_every=2)  # a new run cleans up and resumes
    assert not (checkpoints / ".step_00000004.partial").exists()
    resumed.fit()
    assert resumed.resumed_from.name == "step_00000002" and resumed.state.step == 4
    assert (checkpoints / "latest").read_text() == "step_00000004\n"


def test_keep_last_k_and_the_latest_pointer(tmp_path):
    trainer = _trainer(tmp_path, max_steps=5, checkpoint_every=1, keep_checkpoints=2)
    trainer.fit()
    checkpoints = trainer.checkpoints.directory
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step_00000004", "step_00000005"]
    assert latest_checkpoint(checkpoints).name == "step_00000005"
    (checkpoints / "latest").write_text("step_00000003\n")  # stale: names a pruned checkpoint
    assert latest_checkpoint(checkpoints).name == "step_00000005"
    (checkpoints / "latest").unlink()
    assert latest_checkpoint(tmp_path).name == "step_00000005"

    everything = _trainer(tmp_path / "all", max_steps=3, checkpoint_every=1, keep_checkpoints=0)
    everything.fit()
    assert len(list_checkpoints(everything.checkpoints.directory)) == 3


def test_the_final_checkpoint_and_resume_settings(tmp_path):
    trainer = _trainer(tmp_path, max_steps=3, checkpoint_every=0)
    trainer.fit()
    assert [p.name for p in list_checkpoints(trainer.checkpoints.directory)] == ["step_00000003"]
    assert resolve_resume("never", trainer.checkpoints.directory) is None
    assert resolve_resume("auto", tmp_path / "elsewhere") is None
    assert resolve_resume(str(tmp_path), tmp_path / "elsewhere").name == "step_00000003"
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        resolve_resume(str(tmp_path / "nowhere"), trainer.checkpoints.directory)
    again = _trainer(tmp_path, max_steps=3, checkpoint_every=0)  # already done: resumes, trains nothing
    assert again.fit() == [] and again.state.step == 3

    state_file = latest_checkpoint(tmp_path) / STATE_FILE  # as if written by 2 ranks under ZeRO-2
    meta = json.loads(state_file.read_text())
    meta["zero_stage"], meta["state"]["world_size"] = 2, 2
    state_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="ZeRO-2 shards of 2 ranks cannot be loaded by 1"):
        _trainer(tmp_path, max_steps=4).fit()


def test_consolidate_a_plain_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit()
    final = latest_checkpoint(tmp_path)
    model = consolidate(final, StandInModel)
    for left, right in zip(model.parameters(), trainer.model.parameters(), strict=True):
        assert torch.equal(left, right)

    class Wider(StandInModel):
        def __init__(self):
            super().__init__()
            self.extra = torch.nn.Linear(2, 2)

    with pytest.raises(CheckpointError, match=r"missing \['extra.weight', 'extra.bias'\]"):
        consolidate(final, Wider)
    with pytest.raises(CheckpointError, match="no model weights"):
        consolidate(tmp_path, StandInModel)


class TiedModel(StandInModel):
    """A stand-in whose output layer shares its weight with an input embedding, as HF VLMs tie lm_head."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.embed = torch.nn.Linear(16, 16, bias=False)
        self.lm_head = torch.nn.Linear(16, 16, bias=False)
        self.lm_head.weight = self.embed.weight


def test_tied_weights_are_checkpointed_without_a_warning_and_stay_tied(tmp_path, caplog):
    trainer = Trainer(TiedModel(), exact_objective, stand_in_config(tmp_path, max_steps=2), dataset=regression_data())
    with caplog.at_level("WARNING"):
        trainer.fit()
    shared = [r.getMessage() for r in caplog.records if "shared tensor" in r.getMessage()]
    assert not shared, f"checkpointing printed {shared}"
    trained = trainer.model.embed.weight.detach().clone()
    saved = latest_checkpoint(tmp_path)
    resumed = Trainer(TiedModel(5), exact_objective, stand_in_config(tmp_path, max_steps=2), dataset=regression_data())
    with caplog.at_level("WARNING"):
        resumed.resume(saved)
    assert resumed.model.lm_head.weight is resumed.model.embed.weight, "the tie survives the resume"
    assert torch.equal(resumed.model.embed.weight, trained) and not torch.equal(TiedModel(5).embed.weight, trained)
    assert not [r for r in caplog.records if "shared tensor" in r.getMessage() or "missing" in r.getMessage()]
    consolidated = consolidate(saved, TiedModel)
    assert torch.equal(consolidated.lm_head.weight, resumed.model.embed.weight)
