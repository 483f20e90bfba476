"""VLMBackbone on every tiny preset: shapes, trainable modes, save / load round trips, Qwen M-RoPE inputs, errors."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from vla_drive.data.prompt import format_prompt
from vla_drive.model.backbone import BackboneError, LoraSettings, VLMBackbone
from vla_drive.model.presets import (
    PRESETS,
    UnknownPresetError,
    build_config,
    build_processor,
    get_preset,
    save_preset,
)

TINY = [name for name in PRESETS if name.startswith("tiny-")]
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),  # PaliGemmaProcessor
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),  # peft
]
INSTRUCTION = "Driving command: turn left. Ego speed 4.2 m/s. Plan the trajectory for the next 4 seconds."


@pytest.fixture(autouse=True)
def _offline_single_thread(monkeypatch: pytest.MonkeyPatch):
    """No network: offline switch on, and any connection attempt fails the test. One intra-op thread (tiny models:
    a second thread only adds spin-waits on a busy host)."""
    attempts: list[object] = []

    def refuse(sock: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError(f"test tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    assert not attempts, f"network connections attempted: {attempts}"


def make_inputs(backbone: VLMBackbone, cameras_per_sample: tuple[int, ...] = (1, 2)):
    """Processor outputs of len(cameras_per_sample) prompts with random images at the preset size."""
    rng = np.random.default_rng(0)
    side = backbone.image_size or 64
    images, texts = [], []
    for count in cameras_per_sample:
        cameras = ("CAM_F0", "CAM_L0", "CAM_R0")[:count]
        images.append([Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)) for _ in cameras])
        texts.append(format_prompt(backbone.processor, INSTRUCTION, cameras))
    return backbone.prepare(images, texts)


def perturb_lora(backbone: VLMBackbone, seed: int = 0) -> None:
    """LoRA B starts at zero (a no-op adapter): give it values so that round trips and merges are meaningful."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in backbone.named_parameters():
            if "lora_B" in name:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))


@pytest.mark.parametrize("name", TINY)
def test_forward_gives_tokens_and_mask(name: str) -> None:
    backbone = VLMBackbone.from_preset(name)
    inputs = make_inputs(backbone)
    tokens, mask = backbone.encode(inputs)
    assert backbone.family == get_preset(name).family
    assert tokens.ndim == 3 and tokens.shape[0] == 2 and tokens.shape[2] == backbone.hidden_size == 64
    assert mask.dtype == torch.bool and mask.shape == tokens.shape[:2]
    assert torch.equal(mask, inputs["attention_mask"].bool())
    assert mask[0].sum() < mask[1].sum()  # the second prompt has a second image
    assert torch.isfinite(tokens).all() and not tokens[~mask].any()  # padding is zeroed
    assert not tokens.requires_grad


@pytest.mark.parametrize("name", TINY)
def test_trainable_modes_route_gradients(name: str) -> None:
    lora = VLMBackbone.from_preset(name, trainable="lora")
    lora.train()
    tokens, _ = lora.encode(make_inputs(lora))
    tokens.square().mean().backward()
    trainable = lora.trainable_parameters()
    assert trainable and all("lora_" in n for n in trainable)
    assert all((".language_model." in n) or (".text_model." in n) for n in trainable), "LoRA must stay on the LM"
    assert all(p.grad is not None for p in trainable.values())
    assert all(p.grad.abs().sum() > 0 for n, p in trainable.items() if "lora_B" in n)  # A's grad is 0 while B = 0
    assert all(p.grad is None for n, p in lora.named_parameters() if n not in trainable)

    frozen = VLMBackbone.from_preset(name, trainable="frozen")
    frozen.train()
    assert not frozen.model.training, "a frozen backbone stays in eval mode"
    tokens, _ = frozen.encode(make_inputs(frozen))
    assert not frozen.trainable_parameters() and not tokens.requires_grad

    full = VLMBackbone.from_preset(name, trainable="full")
    tokens, _ = full.encode(make_inputs(full))
    tokens.square().mean().backward()
    params = dict(full.named_parameters())
    assert full.trainable_parameters().keys() == params.keys()
    reached = {n for n, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith("model.model.language_model") or ".text_model." in n for n in reached)
    assert any(key in n for n in reached for key in ("visual", "vision_tower", "vision_model"))


@pytest.mark.parametrize("name", TINY)
def test_saved_preset_loads_through_from_pretrained(name: str, tmp_path) -> None:
    save_preset(name, tmp_path / "ckpt")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "ckpt").iterdir()}
    loaded = VLMBackbone.from_pretrained(tmp_path / "ckpt")
    built = VLMBackbone.from_preset(name)
    assert type(loaded.processor).__name__ == type(built.processor).__name__
    inputs = make_inputs(built)
    assert torch.equal(make_inputs(loaded)["input_ids"], inputs["input_ids"])
    assert torch.equal(loaded.encode(inputs)[0], built.encode(inputs)[0])


@pytest.mark.parametrize("name", TINY)
def test_lora_adapter_round_trip_and_merge(name: str, tmp_path) -> None:
    backbone = VLMBackbone.from_preset(name, trainable="lora", lora=LoraSettings(r=4, alpha=8))
    perturb_lora(backbone)
    inputs = make_inputs(backbone)
    reference, _ = backbone.eval().encode(inputs)
    backbone.save_pretrained(tmp_path / "lora")
    files = {p.name for p in (tmp_path / "lora").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "vla_backbone.json", "base"} <= files

    loaded = VLMBackbone.from_pretrained(tmp_path / "lora")
    assert loaded.trainable == "lora" and loaded.lora == LoraSettings(r=4, alpha=8)
    assert loaded.trainable_parameters().keys() == backbone.trainable_parameters().keys()
    assert torch.equal(loaded.eval().encode(inputs)[0], reference)

    merged, _ = loaded.merge_lora().encode(inputs)
    assert loaded.trainable == "frozen" and not loaded.trainable_parameters()
    torch.testing.assert_close(merged, reference, atol=1e-5, rtol=1e-5)


def test_lora_on_a_saved_base_references_it(tmp_path) -> None:
    base = save_preset("tiny-smolvlm", tmp_path / "base_ckpt")
    backbone = VLMBackbone.from_pretrained(base, trainable="lora")
    perturb_lora(backbone, seed=1)
    backbone.save_pretrained(tmp_path / "adapter")
    assert not (tmp_path / "adapter" / "base").exists(), "a loadable base is referenced, not copied"
    assert json.loads((tmp_path / "adapter" / "vla_backbone.json").read_text())["base"] == str(base)
    inputs = make_inputs(backbone)
    loaded = VLMBackbone.from_pretrained(tmp_path / "adapter", trainable="frozen")
    assert loaded.trainable == "frozen" and not loaded.trainable_parameters()
    reference = backbone.eval().encode(inputs)[0]
    assert torch.equal(loaded.encode(inputs)[0], reference)
    full = VLMBackbone.from_pretrained(tmp_path / "adapter", trainable="full")  # adapters merged, all trainable
    assert full.trainable_parameters().keys() == dict(full.named_parameters()).keys()
    assert not any("lora_" in name for name in full.trainable_parameters())
    torch.testing.assert_close(full.encode(inputs)[0], reference, atol=1e-5, rtol=1e-5)


def test_full_mode_round_trip_keeps_settings(tmp_path) -> None:
    backbone = VLMBackbone.from_preset("tiny-internvl", trainable="full", hidden_layers=(-1, 1), layer_combine="mean")
    with torch.no_grad():
        backbone.hf_model.model.language_model.norm.weight.mul_(1.5)  # differs from the preset's random init
    inputs = make_inputs(backbone)
    backbone.save_pretrained(tmp_path / "full")
    loaded = VLMBackbone.from_pretrained(tmp_path / "full")
    assert (loaded.trainable, loaded.hidden_layers, loaded.layer_combine) == ("full", (-1, 1), "mean")
    assert loaded.image_size == get_preset("tiny-internvl").image_size
    assert loaded.source == str(tmp_path / "full")  # a later LoRA save references these fine-tuned weights
    assert torch.equal(loaded.encode(inputs)[0], backbone.encode(inputs)[0])


def test_hidden_layer_selection() -> None:
    last = VLMBackbone.from_preset("tiny-qwen3-vl")
    inputs = make_inputs(last)
    inner = last.hf_model.model(**inputs, output_hidden_states=True, use_cache=False)
    mask = inputs["attention_mask"].bool()[..., None]
    concat = VLMBackbone.from_preset("tiny-qwen3-vl", hidden_layers=(-1, 1))
    mean = VLMBackbone.from_preset("tiny-qwen3-vl", hidden_layers=(-1, 1), layer_combine="mean")
    assert (concat.hidden_size, mean.hidden_size) == (128, 64)
    expected = torch.cat([inner.hidden_states[-1], inner.hidden_states[1]], dim=-1) * mask
    torch.testing.assert_close(concat.encode(inputs)[0], expected)
    expected = (inner.hidden_states[-1] + inner.hidden_states[1]) / 2 * mask
    torch.testing.assert_close(mean.encode(inputs)[0], expected)
    with pytest.raises(BackboneError, match="hidden states"):
        VLMBackbone.from_preset("tiny-qwen3-vl", hidden_layers=(3,))


def test_qwen25_uses_mm_token_type_ids() -> None:
    """Without mm_token_type_ids Qwen2.5-VL silently uses 1-D RoPE: encode must always pass it (building it)."""
    backbone = VLMBackbone.from_preset("tiny-qwen2.5-vl")
    inputs = make_inputs(backbone)
    assert "mm_token_type_ids" in inputs
    with_ids, _ = backbone.encode(inputs)
    without = {k: v for k, v in inputs.items() if k != "mm_token_type_ids"}
    assert torch.equal(backbone.encode(without)[0], with_ids)  # rebuilt from the image token id
    one_d = backbone.hf_model.model(**without, output_hidden_states=True, use_cache=False).last_hidden_state
    assert (one_d * inputs["attention_mask"][..., None] - with_ids).abs().max() > 1e-4


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    grads = []
    for checkpointing in (False, True):
        backbone = VLMBackbone.from_preset("tiny-llava", trainable="lora", gradient_checkpointing=checkpointing)
        perturb_lora(backbone)
        backbone.train()
        tokens, _ = backbone.encode(make_inputs(backbone))
        tokens.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in backbone.trainable_parameters().values()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_bfloat16_backbone() -> None:
    backbone = VLMBackbone.from_preset("tiny-paligemma", torch_dtype=torch.bfloat16)
    tokens, _ = backbone.encode(make_inputs(backbone))
    assert backbone.dtype == tokens.dtype == torch.bfloat16 and torch.isfinite(tokens.float()).all()


def test_preset_name_and_config_entry_points() -> None:
    assert VLMBackbone.from_pretrained("tiny-idefics3").family == "idefics3"
    processor = build_processor("tiny-qwen3-vl")
    backbone = VLMBackbone.from_config(build_config("tiny-qwen3-vl", processor), processor, trainable="lora")
    assert backbone.family == "qwen3_vl" and backbone.trainable_parameters()
    assert backbone.encode(make_inputs(backbone))[0].shape[-1] == 64


def test_hub_id_loads_from_the_local_cache_offline(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub-id path (not a directory) resolves through the Hugging Face cache layout, with HF_HUB_OFFLINE=1."""
    import huggingface_hub

    repo = tmp_path / "models--vla-drive-test--tiny-smolvlm"
    save_preset("tiny-smolvlm", repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    loaded = VLMBackbone.from_pretrained("vla-drive-test/tiny-smolvlm")
    assert loaded.source == "vla-drive-test/tiny-smolvlm" and type(loaded.processor).__name__ == "SmolVLMProcessor"
    built = VLMBackbone.from_preset("tiny-smolvlm")
    inputs = make_inputs(built)
    assert torch.equal(loaded.encode(inputs)[0], built.encode(inputs)[0])


def test_unknown_model_id_and_missing_directory(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackboneError, match="no network request was made"):
        VLMBackbone.from_pretrained("vla-drive-test/no-such-model", local_files_only=True)
    with pytest.raises(BackboneError, match="no network request was made"):
        VLMBackbone.from_pretrained("vla-drive-test/no-such-model")  # HF_HUB_OFFLINE=1 (autouse fixture)
    with pytest.raises(BackboneError, match=r"does not exist.*no download attempted"):
        VLMBackbone.from_pretrained(tmp_path / "missing")
    with pytest.raises(BackboneError, match=r"did you mean the preset 'tiny-qwen2\.5-vl'"):
        VLMBackbone.from_pretrained("tiny-qwen25-vl")
    with pytest.raises(UnknownPresetError, match="did you mean 'tiny-llava'"):
        VLMBackbone.from_preset("tiny-lava")
    with pytest.raises(BackboneError, match="trainable must be one of"):
        VLMBackbone.from_preset("tiny-llava", trainable="partial")  # type: ignore[arg-type]


def test_text_only_model_is_rejected(tmp_path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    with pytest.raises(BackboneError, match=r"text-only model.*'llama'"):
        VLMBackbone.from_pretrained(tmp_path / "llama")
    with pytest.raises(BackboneError, match="text-only"):
        VLMBackbone.from_config(config, processor=None)


def test_images_must_match_placeholders() -> None:
    backbone = VLMBackbone.from_preset("tiny-smolvlm")
    image = Image.new("RGB", (64, 64))
    text = format_prompt(backbone.processor, INSTRUCTION, ("CAM_F0",))
    with pytest.raises(ValueError, match=r"sample 1: the prompt has 1 image placeholder.*2 image"):
        backbone.prepare([[image], [image, image]], [text, text])
    with pytest.raises(ValueError, match="2 prompts but 1 image lists"):
        backbone.prepare([[image]], [text, text])


def test_lora_target_must_match_something() -> None:
    with pytest.raises(BackboneError, match="matches no linear layer"):
        VLMBackbone.from_preset("tiny-llava", trainable="lora", lora=LoraSettings(target_modules=r"^nothing$"))


FIXED_TOKENS = {"smolvlm": 4, "idefics3": 4, "paligemma": 16, "llava": 16}  # tokens per image, any size


@pytest.mark.parametrize("name", TINY)
def test_visual_tokens_per_family_follow_the_pixel_budget(name: str) -> None:
    """Qwen: the budget is the token count (pixels / (patch x merge)^2, aspect kept); InternVL tiles the image
    (crop_to_patches), so a larger image gets more tiles of 4 tokens; the fixed-resolution families resize to their
    input size, so the budget changes the pixels but not the count."""
    backbone = VLMBackbone.from_preset(name)
    camera = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8))
    counts = {}
    for tokens in (6, 24):
        sizing = backbone.image_sizing(max_pixels=(tokens * 32 * 32,))
        image = sizing.fit(camera)
        assert image.width * image.height <= tokens * 32 * 32
        counts[tokens] = backbone.visual_tokens(image)
    family = backbone.family
    if family in FIXED_TOKENS:
        assert counts == {6: FIXED_TOKENS[family], 24: FIXED_TOKENS[family]}
        return
    if family == "internvl":
        assert all(count % 4 == 0 for count in counts.values()) and counts[6] < counts[24], counts
        return
    grid = 28 if family == "qwen2_5_vl" else 32
    for tokens, count in counts.items():
        image = backbone.image_sizing(max_pixels=(tokens * 32 * 32,)).fit(camera)
        assert count == (image.width // grid) * (image.height // grid), f"{family}: tokens = grid cells"
        assert image.width > image.height, "aspect kept"
    assert counts[6] < counts[24] <= 24 * (32 * 32) // (grid * grid)
