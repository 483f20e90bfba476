"""Loading from the Hugging Face cache as the hub lays it out, offline: no waiting on an unreachable network, LoRA
adapters that name the hub id (a moved cache still loads with plain peft), remote-code checkpoints, attention
implementations and dtypes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.vla_drive.model.test_backbone import make_inputs, perturb_lora
from vla_drive.model.backbone import BackboneError, VLMBackbone
from vla_drive.model.presets import save_preset
from vla_drive.model.processor import ModelSourceError, resolve_source

REPO_ID = "tiny-org/tiny-qwen2.5-vl"
pytestmark = [
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),  # PaliGemmaProcessor
]


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch):
    """Networking configured but unreachable: every connection attempt fails at once and is recorded."""
    attempts: list[object] = []

    def refuse(sock: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError(f"network unreachable ({address})")

    def no_dns(host: object, *args: object, **kwargs: object) -> None:
        attempts.append(host)
        raise OSError(f"no DNS ({host})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return attempts


def hub_cache(cache: Path, repo_id: str, checkpoint: Path, commit: str = "a" * 40) -> Path:
    """``checkpoint``'s files in ``cache`` as the hub client stores a download: content-addressed blobs, a snapshot
    of symlinks per commit, ``refs/main`` naming the commit. Returns the snapshot directory."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for path in sorted(checkpoint.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / path.relative_to(checkpoint)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def cached_repo(tmp_path, monkeypatch):
    """A tiny Qwen2.5-VL saved by transformers' own writers, laid out in a hub cache that HF_HUB_CACHE points at."""
    import huggingface_hub.constants

    checkpoint = save_preset("tiny-qwen2.5-vl", tmp_path / "checkpoint")
    cache = tmp_path / "hf_cache"
    snapshot = hub_cache(cache, REPO_ID, checkpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache, snapshot


def test_a_cached_hub_id_loads_without_touching_the_network(cached_repo, network):
    _, snapshot = cached_repo
    source = resolve_source(REPO_ID)
    assert (source.name, Path(source.location)) == (REPO_ID, snapshot)
    backbone = VLMBackbone.from_pretrained(REPO_ID)
    assert backbone.source == REPO_ID and backbone.family == "qwen2_5_vl"
    reference = VLMBackbone.from_pretrained(snapshot)
    inputs = make_inputs(reference)
    assert torch.equal(backbone.encode(inputs)[0], reference.encode(inputs)[0])
    assert not network, f"a cached model contacted the network: {network}"


def test_an_uncached_hub_id_fails_fast_with_what_to_do(tmp_path, monkeypatch, network):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(ModelSourceError, match=r"cannot download 'org/absent'.*HF_HUB_OFFLINE=1"):
        resolve_source("org/absent")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(network)
    with pytest.raises(BackboneError, match=r"not in the local Hugging Face cache.*no network request was made"):
        VLMBackbone.from_pretrained("org/absent")
    assert len(network) == before, "offline: no connection attempt"


def test_a_lora_adapter_names_the_hub_id_and_loads_from_a_moved_cache_with_plain_peft(
    cached_repo, tmp_path, monkeypatch, network
):
    import huggingface_hub.constants
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    cache, _ = cached_repo
    backbone = VLMBackbone.from_pretrained(REPO_ID, trainable="lora")
    perturb_lora(backbone)
    inputs = make_inputs(backbone)
    reference = backbone.eval().encode(inputs)[0]
    backbone.save_pretrained(tmp_path / "adapter")
    adapter = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == REPO_ID, "the hub id, not this machine's cache path"
    assert adapter["task_type"] == "CAUSAL_LM"
    assert not (tmp_path / "adapter" / "base").exists(), "a hub base is referenced, not copied"

    moved = tmp_path / "elsewhere" / "hf_cache"  # another machine: the cache lives somewhere else
    shutil.move(cache, moved)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(moved))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # that machine's user says offline
    base = AutoModelForImageTextToText.from_pretrained(
        adapter["base_model_name_or_path"], cache_dir=moved, local_files_only=True
    )
    plain = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    hidden = plain.get_base_model().model(**inputs, output_hidden_states=True, use_cache=False).hidden_states[-1]
    mask = inputs["attention_mask"].bool()[..., None]
    torch.testing.assert_close(hidden * mask, reference)
    ours = VLMBackbone.from_pretrained(tmp_path / "adapter")
    assert ours.source == REPO_ID and torch.equal(ours.eval().encode(inputs)[0], reference)
    assert not network


def _remote_code_checkpoint(directory: Path) -> Path:
    """A tiny InternVL whose config.json points at the checkpoint's own model code (``auto_map``), as InternVL's
    original repositories do."""
    save_preset("tiny-internvl", directory)
    config = json.loads((directory / "config.json").read_text())
    config["model_type"] = "my_internvl"
    config["architectures"] = ["MyInternVLForConditionalGeneration"]
    config["auto_map"] = {
        "AutoConfig": "configuration_my_internvl.MyInternVLConfig",
        "AutoModelForImageTextToText": "modeling_my_internvl.MyInternVLForConditionalGeneration",
    }
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "configuration_my_internvl.py").write_text(
        "from transformers import InternVLConfig\n\n\n"
        "class MyInternVLConfig(InternVLConfig):\n    model_type = 'my_internvl'\n"
    )
    (directory / "modeling_my_internvl.py").write_text(
        "from transformers import InternVLForConditionalGeneration\n\n"
        "from .configuration_my_internvl import MyInternVLConfig\n\n\n"
        "class MyInternVLForConditionalGeneration(InternVLForConditionalGeneration):\n"
        "    config_class = MyInternVLConfig\n"
    )
    return directory


def test_a_remote_code_checkpoint_asks_for_trust_remote_code_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    checkpoint = _remote_code_checkpoint(tmp_path / "internvl-remote")
    with pytest.raises(BackboneError, match=r"ships its own model code.*trust_remote_code=true") as error:
        VLMBackbone.from_pretrained(checkpoint)
    assert "not in the local Hugging Face cache" not in str(error.value)
    backbone = VLMBackbone.from_pretrained(checkpoint, trust_remote_code=True)
    assert type(backbone.hf_model).__name__ == "MyInternVLForConditionalGeneration"
    native = VLMBackbone.from_pretrained(save_preset("tiny-internvl", tmp_path / "native"))
    inputs = make_inputs(native)
    assert torch.equal(backbone.encode(inputs)[0], native.encode(inputs)[0])


@pytest.mark.parametrize("name", ["tiny-qwen2.5-vl", "tiny-smolvlm", "tiny-paligemma"])
def test_sdpa_and_eager_attention_are_passed_through_and_agree(name, tmp_path):
    eager = VLMBackbone.from_preset(name, attn_implementation="eager")
    sdpa = VLMBackbone.from_preset(name, attn_implementation="sdpa")
    assert eager.config.text_config._attn_implementation == "eager"
    assert sdpa.config.text_config._attn_implementation == "sdpa"
    inputs = make_inputs(eager)
    torch.testing.assert_close(eager.encode(inputs)[0], sdpa.encode(inputs)[0], atol=1e-5, rtol=1e-4)
    loaded = VLMBackbone.from_pretrained(save_preset(name, tmp_path / "ckpt"), attn_implementation="eager")
    assert loaded.config.text_config._attn_implementation == "eager"
    with pytest.raises(BackboneError, match=r"flash_attention_2.*sdpa"):
        VLMBackbone.from_preset(name, attn_implementation="flash_attention_2")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_backbone_dtype(dtype, tmp_path):
    backbone = VLMBackbone.from_pretrained(save_preset("tiny-qwen2.5-vl", tmp_path / "ckpt"), torch_dtype=dtype)
    assert backbone.dtype == dtype
    tokens, mask = backbone.encode(make_inputs(backbone))
    assert tokens.dtype == dtype and torch.isfinite(tokens[mask]).all()


def test_qwen_pixel_budgets_set_the_visual_tokens_per_camera():
    backbone = VLMBackbone.from_preset("tiny-qwen2.5-vl")
    grid = 28  # patch 14 x merge 2
    sizing = backbone.image_sizing(max_pixels=(8 * 8 * grid * grid, 3 * 5 * grid * grid))
    camera = Image.fromarray(np.zeros((1080, 1920, 3), dtype=np.uint8))
    front, side = sizing.fit(camera, 0), sizing.fit(camera, 1)
    assert front.width % grid == 0 and front.height % grid == 0
    assert backbone.visual_tokens(front) == (front.width // grid) * (front.height // grid) <= 64
    assert backbone.visual_tokens(side) == (side.width // grid) * (side.height // grid) <= 15
    assert backbone.visual_tokens(front) > 2 * backbone.visual_tokens(side)
