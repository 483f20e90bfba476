"""Named backbone presets: small VLMs built from config classes, with an offline tokenizer and the model's processor.

A preset needs no download: the tokenizer is a byte-level BPE trained in a few milliseconds on a small driving
corpus, the processor is the model family's own Processor class with its Pillow image processor, and the weights
are random (seeded). ``tiny-*`` presets (about 0.2 M parameters, 56/64 px images, a handful of tokens per image)
serve the tests; ``small-*`` presets (a few million parameters, 224 px images) serve benchmarks and the demo.

``save_preset`` writes a preset as a real Hugging Face checkpoint directory, so the loading path used for
pretrained models (``from_pretrained`` on a local directory) is the path the tests exercise.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vla_drive.model.processor import no_video, save_processor

# Regexes over ``named_modules()`` of the HF model: the language model's attention and MLP linears only (the
# vision towers also have ``q_proj``...; ``lm_head`` is left alone). SmolVLM and Idefics3 call their LM
# ``text_model``.
_LM_LINEARS = r"(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
GENERIC_LM_LORA_TARGET = rf"^model\.(language_model|text_model)\.layers\.\d+\.{_LM_LINEARS}$"
LM_LORA_TARGETS: dict[str, str] = {
    "qwen2_5_vl": rf"^model\.language_model\.layers\.\d+\.{_LM_LINEARS}$",
    "qwen3_vl": rf"^model\.language_model\.layers\.\d+\.{_LM_LINEARS}$",
    "smolvlm": rf"^model\.text_model\.layers\.\d+\.{_LM_LINEARS}$",
    "idefics3": rf"^model\.text_model\.layers\.\d+\.{_LM_LINEARS}$",
    "internvl": rf"^model\.language_model\.layers\.\d+\.{_LM_LINEARS}$",
    "paligemma": rf"^model\.language_model\.layers\.\d+\.{_LM_LINEARS}$",
    "llava": rf"^model\.language_model\.layers\.\d+\.{_LM_LINEARS}$",
}


def lm_lora_target(model_type: str) -> str:
    """The LoRA target regex for a family's language model (the generic regex for families not listed)."""
    return LM_LORA_TARGETS.get(model_type, GENERIC_LM_LORA_TARGET)


# ------------------------------------------------------------------------------------------------ tokenizer

# Special tokens of every supported processor, so one tokenizer recipe serves all families.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>",
    "<s>",
    "</s>",
    "<unk>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<video>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),  # idefics3 / smolvlm image splitting
)

# What the tokenizer learns from: the words of the driving prompts (vla_drive.data.prompt) and chat roles.
DRIVING_CORPUS: tuple[str, ...] = (
    "You are the driver of the ego vehicle. Plan the trajectory for the next 4 seconds.",
    "Driving command: turn left. Driving command: go straight. Driving command: turn right. Driving command: unknown.",
    "Ego speed 5.2 m/s, velocity vx 5.20 m/s vy -0.01 m/s, acceleration ax 0.35 m/s2 ay -0.02 m/s2.",
    "Past ego poses in the current ego frame (x m, y m, heading rad): (-4.12, 0.03, 0.00) (-2.71, 0.01, -0.01).",
    "Front camera: front left camera: front right camera: back camera: left camera: right camera:",
    "user assistant system User: Assistant: USER: ASSISTANT: The ego vehicle drives forward at a steady speed.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 20 25 30 0.0 0.1 0.2 0.5 1.0 1.5 2.0 -0.5 -1.0 -2.0 -3.5",
    "one two three four five six seven eight nine ten",  # SmolVLM / Idefics3 spell numbers out
    "Stop at the red light, yield to pedestrians, follow the lane, keep a safe distance to the lead vehicle.",
)


def build_tokenizer(vocab_size: int = 1024) -> Any:
    """A byte-level BPE trained on ``DRIVING_CORPUS`` (whole words: ~580 tokens) with the special tokens of every
    supported processor."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(DRIVING_CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        # InternVLProcessor reads these names from the tokenizer (tok.start_image_token, ...).
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )


# ------------------------------------------------------------------------------------------------ chat templates


def _chat_template(
    *, bos: str, turn_open: str, turn_close: str, image: str, generation_prompt: str, role_filter: str | None = None
) -> str:
    """A Jinja chat template in the style of the family's real one (``turn_open`` has a ``{role}`` slot, the role
    goes through the Jinja filter ``role_filter``, e.g. ``capitalize``)."""
    role = f"(message['role'] | {role_filter})" if role_filter else "message['role']"
    head, tail = turn_open.split("{role}")
    return (
        f"{{{{ {json.dumps(bos)} }}}}"
        "{%- for message in messages -%}"
        f"{{{{ {json.dumps(head)} + {role} + {json.dumps(tail)} }}}}"
        "{%- if message['content'] is string -%}{{ message['content'] }}{%- else -%}"
        "{%- for item in message['content'] -%}"
        f"{{%- if item['type'] == 'image' -%}}{{{{ {json.dumps(image)} }}}}"
        "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        f"{{{{ {json.dumps(turn_close)} }}}}"
        "{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{{{{ {json.dumps(generation_prompt)} }}}}{{%- endif -%}}"
    )


CHAT_TEMPLATES: dict[str, str | None] = {
    "qwen2_5_vl": _chat_template(
        bos="",
        turn_open="<|im_start|>{role}\n",
        turn_close="<|im_end|>\n",
        image="<|vision_start|><|image_pad|><|vision_end|>",
        generation_prompt="<|im_start|>assistant\n",
    ),
    "internvl": _chat_template(
        bos="",
        turn_open="<|im_start|>{role}\n",
        turn_close="<|im_end|>\n",
        image="<IMG_CONTEXT>\n",
        generation_prompt="<|im_start|>assistant\n",
    ),
    "smolvlm": _chat_template(
        bos="<|im_start|>",
        turn_open="{role}:",
        turn_close="<end_of_utterance>\n",
        image="<image>",
        generation_prompt="Assistant:",
        role_filter="capitalize",
    ),
    "idefics3": _chat_template(
        bos="<|begin_of_text|>",
        turn_open="{role}:",
        turn_close="<end_of_utterance>\n",
        image="<image>",
        generation_prompt="Assistant:",
        role_filter="capitalize",
    ),
    "llava": _chat_template(
        bos="",
        turn_open="{role}: ",
        turn_close=" ",
        image="<image>\n",
        generation_prompt="ASSISTANT:",
        role_filter="upper",
    ),
    "paligemma": None,  # PaliGemma has no chat template: "<image>" * n + prompt, the processor adds BOS and "\n"
}
CHAT_TEMPLATES["qwen3_vl"] = CHAT_TEMPLATES["qwen2_5_vl"]


# ------------------------------------------------------------------------------------------------ presets


@dataclass(frozen=True)
class Sizes:
    """Model dimensions of a preset (text LM and vision tower)."""

    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 128
    vision_hidden: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    vision_intermediate: int = 64


TINY = Sizes()
SMALL = Sizes(
    text_hidden=256,
    text_layers=4,
    text_heads=4,
    text_kv_heads=2,
    text_intermediate=1024,
    vision_hidden=128,
    vision_layers=4,
    vision_heads=2,
    vision_intermediate=512,
)


@dataclass(frozen=True)
class Preset:
    """A backbone built from config: family (HF ``model_type``), sizes, image side in pixels, a one-line summary."""

    name: str
    family: str
    image_size: int
    sizes: Sizes = field(default=TINY)
    description: str = ""

    @property
    def lora_target(self) -> str:
        return lm_lora_target(self.family)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("tiny-qwen2.5-vl", "qwen2_5_vl", 56, TINY, "Qwen2.5-VL, 4 tokens per 56 px image"),
        Preset("tiny-qwen3-vl", "qwen3_vl", 64, TINY, "Qwen3-VL (deepstack), 4 tokens per 64 px image"),
        Preset("tiny-smolvlm", "smolvlm", 64, TINY, "SmolVLM, 4 tokens per 64 px image"),
        Preset("tiny-idefics3", "idefics3", 64, TINY, "Idefics3, 4 tokens per 64 px image"),
        Preset("tiny-internvl", "internvl", 64, TINY, "InternVL (pixel shuffle), 4 tokens per 64 px image"),
        Preset("tiny-paligemma", "paligemma", 64, TINY, "PaliGemma (SigLIP + Gemma), 16 tokens per 64 px image"),
        Preset("tiny-llava", "llava", 64, TINY, "LLaVA (CLIP + Llama), 16 tokens per 64 px image"),
        Preset("small-qwen2.5-vl", "qwen2_5_vl", 224, SMALL, "Qwen2.5-VL, ~5 M params, 64 tokens per 224 px image"),
        Preset("small-smolvlm", "smolvlm", 224, SMALL, "SmolVLM, ~5 M params, 49 tokens per 224 px image"),
    )
}


class UnknownPresetError(KeyError):
    """A preset name that is not in ``PRESETS``."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name raises with the closest known names."""
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(PRESETS), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownPresetError(f"unknown backbone preset {name!r}{hint} Known presets: {sorted(PRESETS)}") from None


def is_preset(name: str) -> bool:
    return name in PRESETS


# ------------------------------------------------------------------------------------------------ processors


def build_processor(name: str) -> Any:
    """The preset's processor: the offline tokenizer + the family's Processor with its Pillow image processor."""
    import transformers as T

    preset = get_preset(name)
    side, tokenizer = preset.image_size, build_tokenizer()
    template = CHAT_TEMPLATES[preset.family]
    family = preset.family
    if family in ("qwen2_5_vl", "qwen3_vl"):
        patch = 14 if family == "qwen2_5_vl" else 16
        image_processor = T.Qwen2VLImageProcessorPil(
            min_pixels=side * side, max_pixels=side * side, patch_size=patch, temporal_patch_size=2, merge_size=2
        )
        cls = T.Qwen2_5_VLProcessor if family == "qwen2_5_vl" else T.Qwen3VLProcessor
        return no_video(cls)(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)
    if family in ("smolvlm", "idefics3"):
        image_processor_cls = T.SmolVLMImageProcessorPil if family == "smolvlm" else T.Idefics3ImageProcessorPil
        image_processor = image_processor_cls(
            do_image_splitting=False, size={"longest_edge": side}, max_image_size={"longest_edge": side}
        )
        cls = no_video(T.SmolVLMProcessor) if family == "smolvlm" else T.Idefics3Processor
        return cls(
            image_processor=image_processor,
            tokenizer=tokenizer,
            image_seq_len=_tokens_per_image(preset),
            chat_template=template,
        )
    if family == "internvl":
        image_processor = T.GotOcr2ImageProcessorPil(size={"height": side, "width": side}, crop_to_patches=False)
        return no_video(T.InternVLProcessor)(
            image_processor=image_processor,
            tokenizer=tokenizer,
            image_seq_length=_tokens_per_image(preset),
            chat_template=template,
        )
    if family == "paligemma":
        image_processor = T.SiglipImageProcessorPil(size={"height": side, "width": side})
        image_processor.image_seq_length = _tokens_per_image(preset)  # PaliGemmaProcessor reads it from here
        return T.PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)
    if family == "llava":
        image_processor = T.CLIPImageProcessorPil(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}
        )
        return T.LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=_PATCH[family],
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
            chat_template=template,
        )
    raise AssertionError(f"preset {name!r}: no processor recipe for family {family!r}")


# Vision patch size per family; the image side must be a multiple of patch (x merge for Qwen).
_PATCH = {
    "qwen2_5_vl": 14,
    "qwen3_vl": 16,
    "smolvlm": 16,
    "idefics3": 16,
    "internvl": 16,
    "paligemma": 16,
    "llava": 16,
}


def _tokens_per_image(preset: Preset) -> int:
    """LM tokens one image becomes: patches, then 2x2 merge / pixel shuffle for all but SigLIP and CLIP."""
    patches = (preset.image_size // _PATCH[preset.family]) ** 2
    return patches if preset.family in ("paligemma", "llava") else patches // 4


# ------------------------------------------------------------------------------------------------ configs


def _token_id(tokenizer: Any, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise AssertionError(f"the preset tokenizer lacks the special token {token!r}")
    return int(token_id)


def build_config(name: str, processor: Any | None = None) -> Any:
    """The preset's model config; token ids and the vocabulary size come from the preset's tokenizer."""
    import transformers as T

    preset = get_preset(name)
    tokenizer = (processor if processor is not None else build_processor(name)).tokenizer
    s, side, family = preset.sizes, preset.image_size, preset.family
    vocab = -(-len(tokenizer) // 64) * 64  # PaliGemma's processor adds 1152 <loc>/<seg> tokens
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id}
    ids["eos_token_id"] = tokenizer.eos_token_id
    head_dim = s.text_hidden // s.text_heads
    text = dict(
        vocab_size=vocab,
        hidden_size=s.text_hidden,
        intermediate_size=s.text_intermediate,
        num_hidden_layers=s.text_layers,
        num_attention_heads=s.text_heads,
        num_key_value_heads=s.text_kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        **ids,
    )
    vision = dict(
        hidden_size=s.vision_hidden,
        intermediate_size=s.vision_intermediate,
        num_attention_heads=s.vision_heads,
    )
    patch = _PATCH[family]
    if family in ("qwen2_5_vl", "qwen3_vl"):
        # M-RoPE sections must sum to head_dim / 2 (temporal, height, width).
        half, spatial = head_dim // 2, 3 * head_dim // 16
        section = [half - 2 * spatial, spatial, spatial]
        rope = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": section}
        qwen_vision = dict(
            depth=s.vision_layers,
            hidden_size=s.vision_hidden,
            intermediate_size=s.vision_intermediate,
            num_heads=s.vision_heads,
            out_hidden_size=s.text_hidden,
            patch_size=patch,
            spatial_merge_size=2,
            temporal_patch_size=2,
        )
        mm_ids = dict(
            image_token_id=_token_id(tokenizer, "<|image_pad|>"),
            video_token_id=_token_id(tokenizer, "<|video_pad|>"),
            vision_start_token_id=_token_id(tokenizer, "<|vision_start|>"),
            vision_end_token_id=_token_id(tokenizer, "<|vision_end|>"),
        )
        if family == "qwen2_5_vl":
            qwen_vision.update(
                window_size=min(side, 112),  # pixels; a multiple of patch * merge
                fullatt_block_indexes=list(range(1, s.vision_layers, 2)),
            )
            return T.Qwen2_5_VLConfig(text_config=dict(text, rope_parameters=rope), vision_config=qwen_vision, **mm_ids)
        grid = side // patch
        qwen_vision.update(num_position_embeddings=grid * grid, deepstack_visual_indexes=[s.vision_layers - 1])
        rope["mrope_interleaved"] = True
        return T.Qwen3VLConfig(
            text_config=dict(text, head_dim=head_dim, rope_parameters=rope), vision_config=qwen_vision, **mm_ids
        )
    vision.update(num_hidden_layers=s.vision_layers, image_size=side, patch_size=patch)
    if family in ("smolvlm", "idefics3"):
        cls = T.SmolVLMConfig if family == "smolvlm" else T.Idefics3Config
        return cls(
            text_config=dict(text, model_type="llama"),
            vision_config=vision,
            image_token_id=_token_id(tokenizer, "<image>"),
            scale_factor=2,
            tie_word_embeddings=True,
            **ids,
        )
    if family == "internvl":
        return T.InternVLConfig(
            text_config=dict(text, model_type="qwen2"),
            vision_config=dict(vision, image_size=[side, side], patch_size=[patch, patch]),
            image_token_id=_token_id(tokenizer, "<IMG_CONTEXT>"),
            image_seq_length=_tokens_per_image(preset),
            downsample_ratio=0.5,
        )
    if family == "paligemma":
        gemma = dict(text, model_type="gemma", num_key_value_heads=1, head_dim=head_dim)
        return T.PaliGemmaConfig(
            text_config=gemma,
            vision_config=dict(vision, model_type="siglip_vision_model", projection_dim=s.text_hidden),
            image_token_index=_token_id(tokenizer, "<image>"),
            vocab_size=vocab,
            projection_dim=s.text_hidden,
            hidden_size=s.text_hidden,
            **ids,
        )
    if family == "llava":
        return T.LlavaConfig(
            text_config=dict(text, model_type="llama"),
            vision_config=dict(vision, model_type="clip_vision_model", projection_dim=s.vision_hidden),
            image_token_index=_token_id(tokenizer, "<image>"),
            image_seq_length=_tokens_per_image(preset),
        )
    raise AssertionError(f"preset {name!r}: no config recipe for family {family!r}")


def build_model(
    name: str,
    *,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    processor: Any | None = None,
    attn_implementation: str | None = None,
) -> Any:
    """The preset's model with seeded random weights, built through ``_from_config`` (safe under ZeRO-3 init);
    ``attn_implementation`` None is transformers' default (sdpa where the family supports it)."""
    from transformers import AutoModelForImageTextToText

    config = build_config(name, processor)
    extra = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype, **extra)
    return model


def save_preset(name: str, directory: str | Path, *, seed: int = 0, dtype: torch.dtype | None = None) -> Path:
    """Write the preset as an HF checkpoint directory (config, safetensors, processor) and return its path."""
    directory = Path(directory)
    processor = build_processor(name)
    model = build_model(name, seed=seed, dtype=dtype, processor=processor)
    model.save_pretrained(directory)
    save_processor(processor, directory)
    return directory
