"""The VLM backbone: any Hugging Face image-text-to-text model turned into condition tokens for the trajectory head.

``VLMBackbone.from_pretrained`` loads a hub id or a local checkpoint directory through
``AutoModelForImageTextToText`` and its processor; ``from_preset`` builds a small random model from config (tests,
benchmarks). The trainable mode is ``frozen`` (no gradients; the model stays in eval mode, so its features can be
cached), ``lora`` (peft adapters on the language model's linears) or ``full``.

``encode`` runs the inner multimodal model (no LM head: the vocabulary projection is never computed) and returns the
hidden states of the chosen layer(s) for every position, text and image tokens alike, with the attention mask.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor, nn

from vla_drive.model import presets
from vla_drive.model.processor import (
    PIXEL_BUDGET_FAMILIES,
    ImageSizing,
    ModelSourceError,
    allow_image_sizes,
    load_processor,
    not_found_message,
    prepare_inputs,
    read_json,
    resolve_source,
    save_processor,
    visual_token_count,
)

TrainableMode = Literal["frozen", "lora", "full"]
LayerCombine = Literal["concat", "mean"]
TRAINABLE_MODES: tuple[str, ...] = ("frozen", "lora", "full")
BACKBONE_FILE = "vla_backbone.json"  # our settings next to the HF files of a saved backbone
BASE_DIR = "base"  # a LoRA checkpoint's base weights, when the base cannot be loaded from anywhere else
# Families whose M-RoPE needs mm_token_type_ids (Qwen2.5-VL silently falls back to 1-D positions without it).
_MM_TOKEN_TYPE_FAMILIES = PIXEL_BUDGET_FAMILIES
LORA_TASK_TYPE = "CAUSAL_LM"  # recorded in adapter_config.json: the adapters sit on the VLM's causal language model
_NOT_MODEL_INPUTS = frozenset({"labels"})


class BackboneError(ModelSourceError):
    """A backbone that cannot be built or used as asked (unknown id, text-only model, bad settings)."""


@dataclass(frozen=True)
class LoraSettings:
    """peft LoRA on the backbone; ``target_modules=None`` targets the family's language-model linears (a regex).

    ``seed`` fixes the random init of the A matrices (B starts at zero), so every run and rank starts alike.
    """

    r: int = field(default=8, metadata={"min": 1})  # rank
    alpha: int = field(default=16, metadata={"min": 0, "strict": True})
    dropout: float = field(default=0.0, metadata={"fraction": True})
    target_modules: str | tuple[str, ...] | None = field(default=None, metadata={"nonempty": True})  # regex or names
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if isinstance(self.target_modules, tuple):
            data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoraSettings:
        target = data.get("target_modules")
        return cls(
            r=int(data.get("r", 8)),
            alpha=int(data.get("alpha", 16)),
            dropout=float(data.get("dropout", 0.0)),
            target_modules=tuple(target) if isinstance(target, list) else target,
            seed=int(data.get("seed", 0)),
        )


class VLMBackbone(nn.Module):
    """A Hugging Face VLM + its processor, encoding (images, prompt) batches into condition tokens [B, M, C].

    ``hidden_layers`` index ``hidden_states`` of the language model (0 = embeddings, -1 = the last layer, after the
    final norm); several layers are concatenated along channels (``layer_combine="concat"``, C = n_layers x hidden)
    or averaged (``"mean"``, C = hidden).
    """

    def __init__(
        self,
        model: nn.Module,
        processor: Any,
        *,
        trainable: TrainableMode = "frozen",
        lora: LoraSettings | None = None,
        hidden_layers: Sequence[int] = (-1,),
        layer_combine: LayerCombine = "concat",
        gradient_checkpointing: bool = False,
        image_size: int | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.image_size = image_size  # the side images are resized to before the processor (None: keep as is)
        self.source = source  # hub id or directory the weights came from (None: built from config)
        self.lora = lora or LoraSettings()
        config = self.config
        text_config = config.get_text_config()
        num_states = int(text_config.num_hidden_layers) + 1
        layers = tuple(int(i) for i in hidden_layers)
        if not layers or any(not -num_states <= i < num_states for i in layers):
            raise BackboneError(
                f"hidden_layers={list(hidden_layers)}: the {self.family} language model has {num_states} hidden "
                f"states (embeddings + {num_states - 1} layers); use indices in [{-num_states}, {num_states - 1}]"
            )
        if layer_combine not in ("concat", "mean"):
            raise BackboneError(f"layer_combine must be 'concat' or 'mean', got {layer_combine!r}")
        self.hidden_layers, self.layer_combine = layers, layer_combine
        self._text_hidden = int(text_config.hidden_size)
        self._image_token_id = _image_token_id(config)
        self.trainable: TrainableMode = "frozen"
        self.set_trainable(trainable, self.lora)
        if gradient_checkpointing:
            # Non-reentrant checkpointing: gradients reach LoRA adapters without enable_input_require_grads.
            self.hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    # -------------------------------------------------------------------------------------------- building

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        trainable: TrainableMode | None = None,
        lora: LoraSettings | None = None,
        hidden_layers: Sequence[int] | None = None,
        layer_combine: LayerCombine | None = None,
        gradient_checkpointing: bool = False,
        torch_dtype: torch.dtype | str | None = None,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        local_files_only: bool | None = None,
    ) -> VLMBackbone:
        """Load a hub id, a checkpoint directory (an HF VLM, or a backbone saved by :meth:`save_pretrained`, full or
        LoRA adapter) or a preset name.

        Settings left as None come from the saved backbone, else the defaults (frozen, LoRA r=8, last layer,
        concat); a saved adapter keeps its own LoRA settings. ``torch_dtype`` None or "auto" keeps the checkpoint's
        dtype; ``attn_implementation`` ("sdpa", "eager", "flash_attention_2", ...) None is transformers' default;
        ``trust_remote_code`` runs a checkpoint's own model code (``auto_map``). A hub id is read from the local cache
        when it is there (no network), downloaded once otherwise, and never downloaded when ``local_files_only`` is
        true (or None with ``HF_HUB_OFFLINE=1``); a missing path never reaches the network.
        """
        if presets.is_preset(str(name_or_path)) and not Path(str(name_or_path)).exists():
            return cls.from_preset(
                str(name_or_path),
                trainable=trainable or "frozen",
                lora=lora,
                hidden_layers=hidden_layers or (-1,),
                layer_combine=layer_combine or "concat",
                gradient_checkpointing=gradient_checkpointing,
                torch_dtype=None if torch_dtype == "auto" else torch_dtype,
                attn_implementation=attn_implementation,
            )
        try:
            resolved = resolve_source(name_or_path, local_files_only)
        except ModelSourceError as error:
            raise BackboneError(f"{error}{_preset_hint(str(name_or_path))}") from None
        source = resolved.location
        saved: dict[str, Any] = {}
        if (Path(source) / BACKBONE_FILE).is_file():
            saved = json.loads((Path(source) / BACKBONE_FILE).read_text(encoding="utf-8"))
        mode: TrainableMode = trainable or saved.get("trainable") or "frozen"
        if mode not in TRAINABLE_MODES:
            raise BackboneError(f"trainable must be one of {list(TRAINABLE_MODES)}, got {mode!r}")
        is_adapter = (Path(source) / "adapter_config.json").is_file()
        if is_adapter and saved.get("lora"):
            lora = LoraSettings.from_dict(saved["lora"])  # the adapter on disk decides, not the argument
        lora = lora or (LoraSettings.from_dict(saved["lora"]) if saved.get("lora") else LoraSettings())
        settings = dict(
            lora=lora,
            hidden_layers=hidden_layers or tuple(saved.get("hidden_layers", (-1,))),
            layer_combine=layer_combine or saved.get("layer_combine", "concat"),
            gradient_checkpointing=gradient_checkpointing,
            image_size=saved.get("image_size"),
        )
        loading = _Loading(torch_dtype, attn_implementation, trust_remote_code, local_files_only)
        weights_source: str | None = resolved.name
        if is_adapter:
            model, weights_source = _load_lora_checkpoint(source, saved, mode, loading)
            if mode == "full":
                model = model.merge_and_unload()
        else:
            model = _load_hf_model(source, loading)
        processor = load_processor(source, trust_remote_code=trust_remote_code)
        if saved.get("base") == BASE_DIR:
            weights_source = None  # the base lives only in this checkpoint: a re-save writes it again
        return cls(model, processor, trainable=mode, source=weights_source, **settings)

    @classmethod
    def from_preset(
        cls,
        name: str,
        *,
        seed: int = 0,
        trainable: TrainableMode = "frozen",
        lora: LoraSettings | None = None,
        hidden_layers: Sequence[int] = (-1,),
        layer_combine: LayerCombine = "concat",
        gradient_checkpointing: bool = False,
        torch_dtype: torch.dtype | None = None,
        attn_implementation: str | None = None,
    ) -> VLMBackbone:
        """A preset (``vla_drive.model.presets.PRESETS``) with seeded random weights, built from config offline."""
        preset = presets.get_preset(name)
        processor = presets.build_processor(name)
        try:
            model = presets.build_model(
                name, seed=seed, dtype=torch_dtype, processor=processor, attn_implementation=attn_implementation
            )
        except (ImportError, ValueError) as error:
            raise BackboneError(_attention_message(attn_implementation, error)) from None
        return cls(
            model,
            processor,
            trainable=trainable,
            lora=lora,
            hidden_layers=hidden_layers,
            layer_combine=layer_combine,
            gradient_checkpointing=gradient_checkpointing,
            image_size=preset.image_size,
        )

    @classmethod
    def from_config(cls, config: Any, processor: Any, **kwargs: Any) -> VLMBackbone:
        """A random model of ``config`` (``_from_config``: safe under DeepSpeed ZeRO-3 init) with ``processor``."""
        from transformers import AutoModelForImageTextToText

        _check_vision(config, "the given config")
        dtype = kwargs.pop("torch_dtype", None)
        return cls(AutoModelForImageTextToText.from_config(config, dtype=dtype), processor, **kwargs)

    # -------------------------------------------------------------------------------------------- properties

    @property
    def hf_model(self) -> Any:
        """The transformers model (inside the peft wrapper in LoRA mode; the LoRA layers are injected in it)."""
        model = self.model
        return model.get_base_model() if _is_peft(model) else model

    @property
    def config(self) -> Any:
        return self.hf_model.config

    @property
    def family(self) -> str:
        """The model type, e.g. ``qwen2_5_vl``, ``smolvlm``, ``paligemma``."""
        return str(self.config.model_type)

    @property
    def hidden_size(self) -> int:
        """Channels C of each output token after layer selection."""
        return self._text_hidden * (len(self.hidden_layers) if self.layer_combine == "concat" else 1)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def lora_target(self) -> str | tuple[str, ...]:
        return self.lora.target_modules or presets.lm_lora_target(self.family)

    # -------------------------------------------------------------------------------------------- image sizes

    def image_sizing(self, max_pixels: Sequence[int] = (), min_pixels: int | None = None) -> ImageSizing:
        """How camera images are sized for this backbone with per-camera pixel budgets (``max_pixels``: one value
        per camera, or one for all; empty: the preset's size or the camera's own). For the Qwen family the images
        snap onto its patch grid and the processor's own pixel range is widened to keep them, so a budget of
        ``n * (patch * merge)^2`` pixels gives ``n`` visual tokens per image."""
        grid = None
        if self.family in PIXEL_BUDGET_FAMILIES:
            image_processor = self.processor.image_processor
            grid = int(image_processor.patch_size) * int(image_processor.merge_size)
        sizing = ImageSizing(tuple(int(p) for p in max_pixels), min_pixels, grid, self.image_size)
        if grid is not None and (max_pixels or min_pixels):
            allow_image_sizes(self.processor, min(min_pixels or grid * grid, grid * grid), max([*max_pixels, 0]))
        return sizing

    def visual_tokens(self, image: Image.Image) -> int:
        """How many language-model tokens the processor makes of one image (as given, no further resizing)."""
        return visual_token_count(self.processor, image)

    # -------------------------------------------------------------------------------------------- training mode

    def set_trainable(self, mode: TrainableMode, lora: LoraSettings | None = None) -> None:
        """Freeze everything, add (or re-enable) LoRA adapters on the language model, or train all weights."""
        if mode not in TRAINABLE_MODES:
            raise BackboneError(f"trainable must be one of {list(TRAINABLE_MODES)}, got {mode!r}")
        if lora is not None:
            self.lora = lora
        if mode == "lora" and not _is_peft(self.model):
            self.model = _add_lora(self.model, self.lora, self.lora_target, self.family)
        for name, param in self.model.named_parameters():
            param.requires_grad_(mode == "full" or (mode == "lora" and "lora_" in name))
        self.trainable = mode
        self.train(self.training)

    def train(self, mode: bool = True) -> VLMBackbone:
        """A frozen backbone stays in eval mode (deterministic, cacheable features)."""
        super().train(mode)
        if self.trainable == "frozen":
            self.model.eval()
        return self

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters that receive gradients in the current mode, by name."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def merge_lora(self) -> VLMBackbone:
        """Fold the LoRA adapters into the base weights; afterwards the backbone is a plain (frozen) HF model."""
        if not _is_peft(self.model):
            raise BackboneError("merge_lora: this backbone has no LoRA adapters (trainable mode is not 'lora')")
        self.model = self.model.merge_and_unload()
        self.set_trainable("frozen")
        return self

    # -------------------------------------------------------------------------------------------- encoding

    def prepare(self, images: Sequence[Sequence[Image.Image]], texts: Sequence[str]) -> Any:
        """Processor outputs (a padded ``BatchFeature``) for prompts with one image per placeholder."""
        return prepare_inputs(self.processor, images, texts)

    def encode(self, inputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Condition tokens [B, M, C] (zero at padding) and their mask [B, M] (True = real) from processor outputs."""
        device, dtype = self.device, self.dtype
        kwargs: dict[str, Any] = {}
        for key, value in inputs.items():
            if key in _NOT_MODEL_INPUTS:
                continue
            if isinstance(value, Tensor):
                value = value.to(device, dtype=dtype if value.is_floating_point() else None)
            kwargs[key] = value
        input_ids = kwargs.get("input_ids")
        if input_ids is None:
            raise BackboneError(f"encode: the inputs have no input_ids (keys: {sorted(inputs)})")
        if self.family in _MM_TOKEN_TYPE_FAMILIES and kwargs.get("mm_token_type_ids") is None:
            kwargs["mm_token_type_ids"] = (input_ids == self._image_token_id).int()
        mask = kwargs.get("attention_mask")
        mask = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask.bool()
        inner = getattr(self.hf_model, "model", self.hf_model)  # no LM head: skip the vocabulary projection
        out = inner(**kwargs, output_hidden_states=True, use_cache=False, return_dict=True)
        states = [out.hidden_states[i] for i in self.hidden_layers]
        if len(states) == 1:
            tokens = states[0]
        elif self.layer_combine == "concat":
            tokens = torch.cat(states, dim=-1)
        else:
            tokens = torch.stack(states).mean(0)
        return tokens.masked_fill(~mask[..., None], 0.0), mask

    def forward(self, inputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        return self.encode(inputs)

    def condition(self, batch: Any, device: torch.device) -> tuple[Tensor, Tensor]:
        """:meth:`encode` of a collated batch's processor outputs (the condition-encoder interface of
        :mod:`vla_drive.model.encoder`)."""
        return self.encode(batch.inputs.to(device))

    # -------------------------------------------------------------------------------------------- saving

    def save_pretrained(self, directory: str | Path, *, include_base: bool | None = None) -> Path:
        """Write the backbone as an HF directory: full weights (frozen / full mode) or the LoRA adapter plus a base
        reference (lora mode), the processor, and ``vla_backbone.json`` (mode, layers, LoRA settings, image size).

        In LoRA mode the base weights are written to ``<directory>/base`` when ``include_base`` is true, or when it
        is None and the base has no source to reload it from (built from a preset or a config).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        base_reference = self.source
        if _is_peft(self.model):
            adapter = self.model.peft_config["default"]
            adapter.task_type = adapter.task_type or LORA_TASK_TYPE
            if self.source is not None:  # the hub id or the directory given, never a machine's cache path
                adapter.base_model_name_or_path = self.source
            # peft's "auto" would ask the hub whether the base's vocabulary changed (a wait on an unreachable
            # network); embeddings are saved exactly when LoRA adapts them
            self.model.save_pretrained(directory, save_embedding_layers=_lora_on_embeddings(self.model))
            if include_base or (include_base is None and self.source is None):
                state = {
                    name.replace(".base_layer.", "."): tensor
                    for name, tensor in self.hf_model.state_dict().items()
                    if "lora_" not in name
                }
                self.hf_model.save_pretrained(directory / BASE_DIR, state_dict=state)
                base_reference = BASE_DIR
        else:
            self.hf_model.save_pretrained(directory)
            base_reference = None
        save_processor(self.processor, directory)
        meta = {
            "format": 1,
            "family": self.family,
            "trainable": self.trainable,
            "hidden_layers": list(self.hidden_layers),
            "layer_combine": self.layer_combine,
            "lora": self.lora.to_dict(),
            "image_size": self.image_size,
            "base": base_reference,
            "source": self.source,
        }
        (directory / BACKBONE_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return directory

    def extra_repr(self) -> str:
        return (
            f"family={self.family}, trainable={self.trainable}, hidden_layers={list(self.hidden_layers)}, "
            f"layer_combine={self.layer_combine}, hidden_size={self.hidden_size}"
        )


# ------------------------------------------------------------------------------------------------ helpers


def _is_peft(model: nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _image_token_id(config: Any) -> int | None:
    for key in ("image_token_id", "image_token_index"):
        value = getattr(config, key, None)
        if value is not None:
            return int(value)
    return None


def _preset_hint(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(presets.PRESETS), n=2, cutoff=0.6)
    return f"; did you mean the preset {' or '.join(repr(c) for c in close)}?" if close else ""


def _check_vision(config: Any, source: str, trust_remote_code: bool = False) -> None:
    """Raise a clear error for a text-only model or one ``AutoModelForImageTextToText`` cannot build."""
    from transformers import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    model_type = getattr(config, "model_type", "?")
    if getattr(config, "vision_config", None) is None:
        raise BackboneError(
            f"{source} is a text-only model (model_type {model_type!r}, {type(config).__name__} has no "
            "vision_config): the backbone needs an image-text-to-text VLM (e.g. Qwen2.5-VL, SmolVLM, PaliGemma)"
        )
    remote = trust_remote_code and "AutoModelForImageTextToText" in (getattr(config, "auto_map", None) or {})
    if type(config) not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING and not remote:
        raise BackboneError(
            f"{source}: model_type {model_type!r} is not an image-text-to-text model that "
            "AutoModelForImageTextToText can load"
        )


@dataclass(frozen=True)
class _Loading:
    """How the HF model is loaded (every loader of a checkpoint, base of an adapter included, uses the same)."""

    dtype: torch.dtype | str | None = None
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    local_files_only: bool | None = None

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dtype": self.dtype or "auto", "trust_remote_code": self.trust_remote_code}
        if self.attn_implementation is not None:
            out["attn_implementation"] = self.attn_implementation
        return out


def _attention_message(attn_implementation: str | None, error: BaseException) -> str:
    detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    if attn_implementation is None:
        return detail
    return (
        f"model.attn_implementation {attn_implementation!r} cannot be used here ({detail}); 'sdpa' and 'eager' "
        "work everywhere, flash_attention_2 needs the flash-attn package and a CUDA GPU"
    )


def _remote_code_problem(source: str, loading: _Loading) -> str | None:
    """Why a checkpoint that ships its own model code (``auto_map`` in config.json) cannot be loaded as asked."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    config = read_json(source, "config.json") or {}
    auto_map = config.get("auto_map") or {}
    if not auto_map:
        return None
    model_type = config.get("model_type", "?")
    if not loading.trust_remote_code and model_type not in CONFIG_MAPPING_NAMES:
        return (
            f"{source}: the checkpoint ships its own model code (model_type {model_type!r}, config.json auto_map "
            f"{sorted(auto_map)}); set model.trust_remote_code=true to run it (only for checkpoints you trust), or "
            "use the transformers-native version of the model (often a repository ending in -hf)"
        )
    native = model_type in CONFIG_MAPPING_NAMES
    if loading.trust_remote_code and not native and "AutoModelForImageTextToText" not in auto_map:
        return (
            f"{source}: its own code (config.json auto_map) provides {sorted(auto_map)} but no "
            "AutoModelForImageTextToText, which the backbone needs (processor inputs in, hidden states out); use the "
            "transformers-native version of the model (often a repository ending in -hf)"
        )
    return None


def _load_hf_model(source: str, loading: _Loading) -> Any:
    """An HF VLM from a local directory, with clear errors for a missing, text-only or remote-code model."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    problem = _remote_code_problem(source, loading)
    if problem:
        raise BackboneError(problem)
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True, trust_remote_code=loading.trust_remote_code)
    except (OSError, ValueError) as error:
        raise BackboneError(not_found_message("model", source, True, error) + _preset_hint(source)) from None
    _check_vision(config, repr(source), loading.trust_remote_code)
    try:
        return AutoModelForImageTextToText.from_pretrained(
            source, config=config, local_files_only=True, **loading.kwargs()
        )
    except ImportError as error:
        raise BackboneError(_attention_message(loading.attn_implementation, error)) from None
    except OSError as error:
        raise BackboneError(not_found_message("weights", source, True, error)) from None


def _load_lora_checkpoint(directory: str, saved: Mapping[str, Any], mode: str, loading: _Loading) -> tuple[Any, str]:
    """Base model + the adapter of a LoRA backbone directory; returns (peft model, base source)."""
    from peft import PeftModel

    reference = saved.get("base")
    if reference is None:
        adapter = json.loads((Path(directory) / "adapter_config.json").read_text(encoding="utf-8"))
        reference = adapter.get("base_model_name_or_path")
    if not reference:
        raise BackboneError(f"{directory}: LoRA adapter without a base model reference ({BACKBONE_FILE}: 'base')")
    base_path = Path(directory) / reference
    base_source = str(base_path) if base_path.is_dir() else str(reference)
    try:
        resolved = resolve_source(base_source, loading.local_files_only)
    except ModelSourceError as error:
        raise BackboneError(f"{directory}: the LoRA base model cannot be found: {error}") from None
    base = _load_hf_model(resolved.location, loading)
    return PeftModel.from_pretrained(base, directory, is_trainable=mode == "lora"), resolved.name


def _lora_on_embeddings(model: nn.Module) -> bool:
    from peft.tuners.lora import Embedding as LoraEmbedding

    return any(isinstance(module, LoraEmbedding) for module in model.modules())


def _add_lora(model: nn.Module, settings: LoraSettings, target: str | tuple[str, ...], family: str) -> Any:
    """Wrap ``model`` with peft LoRA adapters; an empty match raises (a wrong regex would train nothing)."""
    import re

    from peft import LoraConfig, get_peft_model

    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if isinstance(target, str):
        matched = [n for n in names if re.fullmatch(target, n)]
    else:
        matched = [n for n in names if n.split(".")[-1] in target or n in target]
    if not matched:
        raise BackboneError(
            f"LoRA target {target!r} matches no linear layer of the {family} model; pass "
            f"LoraSettings(target_modules=...) (e.g. a regex over names like {names[:3]})"
        )
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(target) if isinstance(target, tuple) else target,
        task_type=LORA_TASK_TYPE,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)  # the same adapters on every rank and every run
        return get_peft_model(model, config)
