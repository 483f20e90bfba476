"""Processor factory: preset processors, save / load from a directory (AutoProcessor falls short), no_video, errors."""

from __future__ import annotations

import inspect
import json
import pickle
import socket

import numpy as np
import pytest
import torch
import transformers as T
from PIL import Image

from vla_drive.data.prompt import format_prompt
from vla_drive.model.presets import PRESETS, build_processor, get_preset
from vla_drive.model.processor import (
    ModelSourceError,
    ProcessorLoadError,
    hub_offline,
    image_placeholder,
    load_processor,
    no_video,
    prepare_inputs,
    resolve_source,
    save_processor,
)

TINY = [name for name in PRESETS if name.startswith("tiny-")]
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch):
    """Offline switch on; any connection attempt fails the test."""
    attempts: list[object] = []

    def refuse(sock: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError(f"test tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    assert not attempts, f"network connections attempted: {attempts}"


def sample_batch(processor, side: int):
    rng = np.random.default_rng(1)
    images = [
        [Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)) for _ in range(n)] for n in (1, 2)
    ]
    texts = [format_prompt(processor, "Driving command: turn right.", ("CAM_F0", "CAM_B0")[:n]) for n in (1, 2)]
    return prepare_inputs(processor, images, texts)


@pytest.mark.parametrize("name", TINY)
def test_saved_processor_loads_back_identical(name: str, tmp_path) -> None:
    processor = build_processor(name)
    save_processor(processor, tmp_path)
    loaded = load_processor(tmp_path)
    assert type(loaded).__name__ == type(processor).__name__
    assert loaded.chat_template == processor.chat_template
    assert type(loaded.image_processor).__name__.endswith("Pil")
    expected, got = (
        sample_batch(processor, get_preset(name).image_size),
        sample_batch(loaded, get_preset(name).image_size),
    )
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_auto_processor_alone_is_not_enough(tmp_path) -> None:
    """Why load_processor exists: AutoProcessor cannot build these processors without torchvision."""
    save_processor(build_processor("tiny-smolvlm"), tmp_path)
    try:
        auto = T.AutoProcessor.from_pretrained(tmp_path, local_files_only=True)
    except (OSError, AttributeError, ValueError):
        auto = None
    assert not isinstance(auto, T.ProcessorMixin)
    assert isinstance(load_processor(tmp_path), T.ProcessorMixin)


def test_no_video_keeps_the_other_arguments(tmp_path) -> None:
    cls = no_video(T.SmolVLMProcessor)
    assert cls.__name__ == "SmolVLMProcessor" and no_video(cls) is cls is no_video(T.SmolVLMProcessor)
    parameters = inspect.signature(cls.__init__).parameters
    assert "video_processor" not in parameters and "image_seq_len" in parameters
    assert no_video(T.LlavaProcessor) is T.LlavaProcessor  # nothing to remove
    processor = build_processor("tiny-smolvlm")
    save_processor(processor, tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == "SmolVLMProcessor" and saved["image_seq_len"] == 4
    assert load_processor(tmp_path).image_seq_len == 4
    restored = pickle.loads(pickle.dumps(processor))  # DataLoader workers may pickle it
    assert type(restored) is cls and restored.image_seq_len == 4


def test_placeholders_per_family() -> None:
    expected = {"qwen2_5_vl": "<|image_pad|>", "smolvlm": "<image>", "internvl": "<IMG_CONTEXT>", "llava": "<image>"}
    for name in TINY:
        family = get_preset(name).family
        if family in expected:
            assert image_placeholder(build_processor(name)) == expected[family]


def test_missing_directory_and_unknown_id(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProcessorLoadError, match="does not exist"):
        load_processor(tmp_path / "nothing")
    with pytest.raises(ProcessorLoadError, match="no network request was made"):
        load_processor("vla-drive-test/no-such-model", local_files_only=True)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelSourceError, match="is a file"):
        resolve_source(tmp_path / "file.txt")
    with pytest.raises(ProcessorLoadError, match="names a processor class"):
        load_processor(tmp_path)  # a directory without any processor file


def test_offline_switch_decides_hub_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hub_offline()
    with pytest.raises(ModelSourceError, match=r"not in the local Hugging Face cache.*no network request was made"):
        resolve_source("org/model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub_offline()
    with pytest.raises(ModelSourceError, match="no network request was made"):
        resolve_source("org/model", local_files_only=True)
    with pytest.raises(ModelSourceError, match="not a hub id"):
        resolve_source("./relative/missing")


def test_prepare_rejects_mismatched_images() -> None:
    processor = build_processor("tiny-internvl")
    image = Image.new("RGB", (64, 64))
    text = format_prompt(processor, "Driving command: turn left.", ("CAM_F0", "CAM_L0"))
    with pytest.raises(ValueError, match=r"sample 0: the prompt has 2 image placeholder.*1 image"):
        prepare_inputs(processor, [[image]], [text])
    batch = prepare_inputs(processor, [[image, image]], [text])
    assert batch["pixel_values"].shape[0] == 2 and "labels" not in batch
