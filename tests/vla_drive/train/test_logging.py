"""RunLogger: W&B follows the user's own settings, images reach TensorBoard and W&B, a run without TensorBoard
says so."""

from __future__ import annotations

import sys
import types

import numpy as np
from PIL import Image

from vla_drive.train.logging import RunLogger


class FakeWandb(types.ModuleType):
    """Records what RunLogger asks of wandb (the package is not installed here)."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.init_kwargs: dict = {}
        self.logged: list[tuple[dict, int]] = []
        self.util = types.SimpleNamespace(generate_id=lambda: "run123")
        test = self

        class Image:
            def __init__(self, path: str) -> None:
                self.path = path

        class Run:
            def log(self, record: dict, step: int) -> None:
                test.logged.append((record, step))

            def finish(self) -> None:
                pass

        self.Image, self._run = Image, Run()

    def init(self, **kwargs):
        self.init_kwargs = kwargs
        return self._run


def test_wandb_follows_the_users_settings_and_gets_images(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    plot = tmp_path / "plot.png"
    Image.fromarray(np.full((8, 12, 3), 200, dtype=np.uint8)).save(plot)
    with RunLogger(tmp_path / "run", loggers=("wandb",), total_steps=1, progress=False) as log:
        log.log_images(3, {"eval/worst/00": plot})
    assert "mode" not in fake.init_kwargs, "WANDB_MODE and the user's other settings decide, not the logger"
    ((record, step),) = fake.logged
    assert step == 3 and record["eval/worst/00"].path == str(plot)


def test_images_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plot = tmp_path / "plot.png"
    Image.fromarray(np.zeros((8, 12, 3), dtype=np.uint8)).save(plot)
    with RunLogger(tmp_path / "run", loggers=("tensorboard",), total_steps=1, progress=False) as log:
        log.log_images(0, {"sweep/plot": plot})
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    (image,) = events.Images("sweep/plot")
    assert (image.width, image.height) == (12, 8)


def test_a_run_without_tensorboard_says_so(tmp_path, capsys):
    with RunLogger(tmp_path / "run", loggers=("jsonl",), total_steps=2):
        pass
    assert "TensorBoard is off (train.loggers: [jsonl])" in capsys.readouterr().err


def test_the_progress_line_shows_the_rl_reward_and_the_last_validation_score(tmp_path, capsys):
    with RunLogger(tmp_path / "run", loggers=("jsonl",), total_steps=4, log_every=2) as log:
        log.log_step(1, {"loss": 0.5, "lr": 1e-4, "rl/reward_mean": 0.8})
        log.log_step(2, {"loss": 0.3, "lr": 1e-4, "rl/reward_mean": 0.9})
        log.log(2, {"score": 0.91, "ego_progress": 0.8}, prefix="eval/")
        log.log_step(3, {"loss": 0.2, "lr": 1e-4, "rl/reward_mean": 0.95})
        log.log_step(4, {"loss": 0.2, "lr": 1e-4, "rl/reward_mean": 0.95})
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step ")]
    assert lines[0] == "step 2/4 loss=0.4 reward=0.85 lr=0.0001", lines
    assert lines[-1].endswith("loss=0.2 reward=0.95 lr=0.0001 val=0.91"), lines
