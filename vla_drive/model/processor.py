"""Processor factory: load a VLM's processor from a hub id or a local checkpoint, save it, turn images + prompts (and
whole driving samples) into model inputs.

Two quirks of this stack shape the code:

* without torchvision, a processor that takes a ``video_processor`` fails to build even with ``None`` (transformers
  checks it against a dummy ``VIDEO_PROCESSOR_MAPPING``); :func:`no_video` makes a subclass without that argument;
* ``AutoProcessor`` then fails, or returns only the tokenizer, so :func:`load_processor` rebuilds the processor from
  its saved parts (the class named in ``processor_config.json``, or the one the model type implies).
"""

from __future__ import annotations

import inspect
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vla_drive.model.types import (
    EGO_STATUS_DIM,
    POSE_DIM,
    TRAJECTORY_POSES,
    Batch,
    DrivingSample,
    DrivingSampleError,
)

# Processor class of each supported model type, for checkpoints whose files do not name one.
PROCESSOR_FOR_MODEL_TYPE: dict[str, str] = {
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen3_vl": "Qwen3VLProcessor",
    "smolvlm": "SmolVLMProcessor",
    "idefics3": "Idefics3Processor",
    "internvl": "InternVLProcessor",
    "paligemma": "PaliGemmaProcessor",
    "llava": "LlavaProcessor",
}
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelSourceError(ValueError):
    """A model id or checkpoint directory that cannot be used: missing, not downloaded, or not a VLM."""


class ProcessorLoadError(ModelSourceError):
    """The processor of a model id or directory cannot be loaded."""


# ------------------------------------------------------------------------------------------------ sources


def hub_offline() -> bool:
    """Whether the Hugging Face offline switch is set (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in _OFFLINE_VARIABLES)


@dataclass(frozen=True)
class ModelSource:
    """Where a model is read from: ``location`` is a local directory (a checkpoint, or a hub snapshot in the cache).

    ``name`` is what the caller gave (hub id or path) and what a saved LoRA adapter records as its base, so the
    adapter loads on another machine whose cache lives elsewhere.
    """

    name: str
    location: str

    @property
    def is_hub_id(self) -> bool:
        return not Path(self.name).expanduser().is_dir()


def resolve_source(name_or_path: str | Path, local_files_only: bool | None = None) -> ModelSource:
    """Resolve a checkpoint directory or a hub id to a local directory, touching the network at most once.

    An existing directory is used as is; something that looks like a path but does not exist raises (no download is
    attempted for it). A hub id found in the local Hugging Face cache is read from there without contacting the hub
    (so a cached model never waits on a network that is configured but unreachable); one that is not cached raises
    when ``local_files_only`` is true (or None with ``HF_HUB_OFFLINE=1``), else is downloaded once
    (:func:`download_snapshot`). Every loader then reads the snapshot directory.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelSource(str(path.resolve()), str(path.resolve()))
    if path.exists():
        raise ModelSourceError(f"{path} is a file; expected a checkpoint directory (config.json + weights) or hub id")
    looks_like_path = isinstance(name_or_path, Path) or text.startswith(("/", ".", "~")) or text.count("/") > 1
    if looks_like_path or "\\" in text or not _HUB_ID.match(text):
        raise ModelSourceError(
            f"checkpoint directory {path} does not exist (no download attempted: {text!r} is a path, not a hub id)"
        )
    cached = cached_snapshot(text)
    if cached is not None:
        return ModelSource(text, cached)
    offline = hub_offline() if local_files_only is None else local_files_only
    if offline:
        raise ModelSourceError(not_found_message("files", text, True))
    return ModelSource(text, download_snapshot(text))


# What a snapshot download skips: other frameworks' weights and exports that transformers never reads.
_NOT_DOWNLOADED = (
    *("*.onnx", "*.onnx_data", "onnx/*", "*.msgpack", "*.h5", "*.tflite", "*.gguf", "*.mlmodel", "original/*"),
)


def cached_snapshot(repo_id: str) -> str | None:
    """The snapshot directory of ``repo_id`` in the local Hugging Face cache (``HF_HUB_CACHE``), or None; never
    touches the network."""
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(repo_id, local_files_only=True))
    except (OSError, ValueError):  # LocalEntryNotFoundError is an OSError
        return None


def download_snapshot(repo_id: str) -> str:
    """Download ``repo_id`` into the local cache once (everything transformers may read) and return its snapshot
    directory; a hub that cannot be reached is one clear error, not a wait per file."""
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(repo_id, ignore_patterns=list(_NOT_DOWNLOADED)))
    except Exception as error:  # network, authentication, unknown repo: all mean "cannot get it from the hub"
        raise ModelSourceError(
            f"cannot download {repo_id!r} from the Hugging Face hub ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0][:200] if str(error).strip() else 'no detail'}); without network, "
            f"put it in the cache first (`hf download {repo_id}` on a connected machine, or copy the cache) and set "
            "HF_HUB_OFFLINE=1"
        ) from None


def not_found_message(what: str, source: str, local_files_only: bool, error: BaseException | None = None) -> str:
    """A clear 'cannot load' message that says whether the hub was consulted."""
    if local_files_only:
        why = (
            "it is not in the local Hugging Face cache and downloads are off "
            "(local_files_only or HF_HUB_OFFLINE=1); no network request was made"
        )
    else:
        why = "it is neither a local directory nor a model id the Hugging Face hub could serve"
    detail = f" ({type(error).__name__}: {str(error).splitlines()[0][:200]})" if error else ""
    return f"cannot load the {what} of {source!r}: {why}{detail}"


def read_json(source: str, filename: str) -> dict[str, Any] | None:
    """A JSON file of a checkpoint directory, or None when it has no such file."""
    path = Path(source) / filename
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# ------------------------------------------------------------------------------------------------ no_video

_NO_VIDEO: dict[type, type] = {}


def _rebuild_no_video(base: type) -> Any:
    cls = no_video(base)
    return cls.__new__(cls)


def no_video(cls: type) -> type:
    """``cls`` without its ``video_processor`` argument (passes None); classes without one are returned unchanged.

    The subclass keeps the class name (so a saved ``processor_config.json`` names the standard class) and the
    parent's other ``__init__`` arguments (transformers saves and reloads exactly those, e.g. SmolVLM's
    ``image_seq_len`` and the chat template). It pickles by rebuilding itself from the base class.
    """
    if cls in _NO_VIDEO or getattr(cls, "_no_video_base", None) is not None:
        return _NO_VIDEO.get(cls, cls)
    signature = inspect.signature(cls.__init__)
    names = list(signature.parameters)
    if "video_processor" not in names:
        return cls
    if names[1:4] != ["image_processor", "tokenizer", "video_processor"]:
        raise TypeError(f"{cls.__name__}.__init__ does not start with image_processor, tokenizer, video_processor")
    # transformers reads the argument names from __init__.__code__ (from_pretrained) and its signature (to_dict,
    # get_attributes), so the subclass needs a real function with the parent's arguments minus video_processor.
    namespace: dict[str, Any] = {"_base": cls}
    arguments, passed = [], []
    for param in list(signature.parameters.values())[1:]:
        if param.name == "video_processor":
            continue
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            arguments.append(f"**{param.name}")
            passed.append(f"**{param.name}")
            continue
        if param.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            raise TypeError(f"{cls.__name__}.__init__: unsupported argument kind of {param.name!r}")
        default = None if param.default is inspect.Parameter.empty else param.default
        namespace[f"_default_{param.name}"] = default
        arguments.append(f"{param.name}=_default_{param.name}")
        passed.append(f"{param.name}={param.name}")
    source = (
        f"def __init__(self, {', '.join(arguments)}):\n"
        f"    _base.__init__(self, video_processor=None, {', '.join(passed)})\n"
    )
    exec(source, namespace)  # the source is built from a transformers signature, never from user input
    __init__ = namespace["__init__"]

    def __reduce__(self: Any) -> tuple[Any, ...]:
        return _rebuild_no_video, (cls,), self.__dict__

    subclass = type(
        cls.__name__,
        (cls,),
        {"__init__": __init__, "__reduce__": __reduce__, "__module__": __name__, "_no_video_base": cls},
    )
    subclass.__qualname__ = cls.__qualname__
    _NO_VIDEO[cls] = subclass
    return subclass


# ------------------------------------------------------------------------------------------------ load / save


def load_processor(
    name_or_path: str | Path, *, local_files_only: bool | None = None, trust_remote_code: bool = False
) -> Any:
    """The processor of a hub id or checkpoint directory: ``AutoProcessor`` when it gives a full processor, else the
    processor class rebuilt explicitly from its saved parts (tokenizer, image processor, processor config).
    ``trust_remote_code`` lets a checkpoint's own processor code run."""
    from transformers import AutoProcessor, ProcessorMixin

    try:
        source = resolve_source(name_or_path, local_files_only).location
    except ModelSourceError as error:
        raise ProcessorLoadError(f"cannot load a processor: {error}") from None
    try:
        processor = AutoProcessor.from_pretrained(source, local_files_only=True, trust_remote_code=trust_remote_code)
        if isinstance(processor, ProcessorMixin):
            return processor
    except (OSError, ValueError, AttributeError, ImportError, TypeError, KeyError):
        pass  # e.g. AutoProcessor without torchvision: rebuilt from its parts below
    class_name = _processor_class_name(source)
    if class_name is None:
        raise ProcessorLoadError(
            f"cannot load the processor of {source!r}: no processor_config.json / preprocessor_config.json / "
            "tokenizer_config.json names a processor class and config.json has no known model_type "
            f"(known: {sorted(PROCESSOR_FOR_MODEL_TYPE)})"
        )
    import transformers

    base = getattr(transformers, class_name, None)
    if base is None or not issubclass(base, ProcessorMixin):
        raise ProcessorLoadError(f"{source!r}: processor class {class_name!r} is not a transformers processor")
    try:
        return no_video(base).from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ProcessorLoadError(f"cannot rebuild {class_name} from {source!r}: {error}") from error


def _processor_class_name(source: str) -> str | None:
    """The processor class a checkpoint names (or its model type implies)."""
    for filename in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        data = read_json(source, filename)
        name = (data or {}).get("processor_class")
        if isinstance(name, str) and name:
            return name
    config = read_json(source, "config.json")
    return PROCESSOR_FOR_MODEL_TYPE.get((config or {}).get("model_type", ""))


def save_processor(processor: Any, directory: str | Path) -> Path:
    """Save every part of a processor (tokenizer, image processor, processor config, chat template)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(directory)
    return directory


# ------------------------------------------------------------------------------------------------ image sizes

# Families whose image processor snaps each image onto a patch grid of any size (Qwen's dynamic resolution): there
# the pixel budget of an image is its visual-token budget (tokens = pixels / (patch * merge)^2).
PIXEL_BUDGET_FAMILIES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5"})


@dataclass(frozen=True)
class ImageSizing:
    """How each camera's images are sized before the processor sees them.

    ``max_pixels`` holds one pixel budget per camera (a single value serves every camera; empty: no budget) and
    ``min_pixels`` an optional floor. With a ``grid`` (Qwen: patch x merge) an image is resized as the family's own
    processor would (aspect kept, sides on the grid, pixels within the budget), so the budget is the number of visual
    tokens times grid^2; otherwise it is resized, aspect kept, to at most (at least) that many pixels and the
    family's processor maps it to its input size. Without a budget, ``side`` (a preset's fixed square size) or the
    camera's own size is used.
    """

    max_pixels: tuple[int, ...] = ()
    min_pixels: int | None = None
    grid: int | None = None
    side: int | tuple[int, int] | None = None

    def budget(self, camera: int = 0) -> int | None:
        """The pixel budget of the ``camera``-th camera (None: no budget)."""
        if not self.max_pixels:
            return None
        return int(self.max_pixels[0] if len(self.max_pixels) == 1 else self.max_pixels[camera])

    def target_size(self, width: int, height: int, camera: int = 0) -> tuple[int, int]:
        """(width, height) an image of that size becomes for the ``camera``-th camera."""
        budget = self.budget(camera)
        if budget is None and self.min_pixels is None:
            if self.side is None:
                return width, height
            return (self.side, self.side) if isinstance(self.side, int) else tuple(self.side)
        if self.grid is not None:
            from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

            floor = self.min_pixels or self.grid * self.grid
            new_height, new_width = smart_resize(height, width, self.grid, floor, budget or max(floor, width * height))
            return new_width, new_height
        pixels = width * height
        scale = 1.0
        if budget is not None and pixels > budget:
            scale = (budget / pixels) ** 0.5
        elif self.min_pixels is not None and pixels < self.min_pixels:
            scale = (self.min_pixels / pixels) ** 0.5
        return max(1, int(width * scale)), max(1, int(height * scale))

    def fit(self, image: Image.Image, camera: int = 0) -> Image.Image:
        """``image`` at the size :meth:`target_size` gives (unchanged when it already has it)."""
        size = self.target_size(image.width, image.height, camera)
        if image.size == size:
            return image
        budgeted = self.budget(camera) is not None or self.min_pixels is not None
        return image.resize(size, Image.Resampling.BICUBIC if budgeted else Image.Resampling.BILINEAR)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_pixels": list(self.max_pixels),
            "min_pixels": self.min_pixels,
            "grid": self.grid,
            "side": self.side,
        }


def allow_image_sizes(processor: Any, min_pixels: int, max_pixels: int) -> None:
    """Widen a dynamic-resolution image processor's own pixel range so that it keeps the images :class:`ImageSizing`
    already sized (a preset's processor pins min = max to one size; a hub one may cap below the budget)."""
    import dataclasses

    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)
    if size is None or not dataclasses.is_dataclass(size) or not size.longest_edge or not size.shortest_edge:
        return
    image_processor.size = dataclasses.replace(
        size, shortest_edge=min(size.shortest_edge, min_pixels), longest_edge=max(size.longest_edge, max_pixels)
    )


# ------------------------------------------------------------------------------------------------ inputs


def image_placeholder(processor: Any) -> str:
    """The text token that stands for one image in a prompt before the processor expands it."""
    token = getattr(processor, "image_token", None) or getattr(processor.tokenizer, "image_token", None)
    if not token:
        raise ProcessorLoadError(f"{type(processor).__name__} has no image_token; cannot place images in a prompt")
    return str(token)


def prepare_inputs(processor: Any, images: Sequence[Sequence[Image.Image]], texts: Sequence[str]) -> Any:
    """A padded ``BatchFeature`` for a batch of prompts, each with its own list of images (one per placeholder)."""
    if len(images) != len(texts):
        raise ValueError(f"{len(texts)} prompts but {len(images)} image lists; pass one list of images per prompt")
    placeholder = image_placeholder(processor)
    for index, (text, sample_images) in enumerate(zip(texts, images, strict=True)):
        found = text.count(placeholder)
        if found != len(sample_images):
            raise ValueError(
                f"sample {index}: the prompt has {found} image placeholder(s) {placeholder!r} but {len(sample_images)}"
                " image(s) were given; build the prompt with one placeholder per camera (vla_drive.data.prompt)"
            )
    batch = processor(
        text=list(texts), images=[list(s) for s in images], return_tensors="pt", padding=True, padding_side="right"
    )
    batch.pop("labels", None)  # PaliGemma adds LM labels; the backbone never computes an LM loss
    return batch


def visual_token_count(processor: Any, image: Image.Image) -> int:
    """How many language-model tokens ``processor`` makes of one image (its placeholder, expanded)."""
    placeholder = image_placeholder(processor)
    token_id = processor.tokenizer.convert_tokens_to_ids(placeholder)
    inputs = prepare_inputs(processor, [[image]], [placeholder + " go"])
    return int((inputs["input_ids"] == token_id).sum())


def collate(samples: Sequence[DrivingSample], backbone: Any) -> Batch:
    """Pad a list of samples into a :class:`Batch`; ``backbone`` is a VLMBackbone, a bare processor, or None (the
    ego-status encoder: no processor inputs, ``Batch.inputs`` is None)."""
    if not samples:
        raise ValueError("collate: empty list of samples")
    images = [sample.images for sample in samples]
    texts = [sample.prompt for sample in samples]
    prepare = getattr(backbone, "prepare", None)
    if backbone is None or getattr(backbone, "processor", True) is None:
        inputs = None
    elif prepare is not None:
        inputs = prepare(images, texts)
    else:
        inputs = prepare_inputs(backbone, images, texts)
    ego = torch.from_numpy(np.stack([s.ego_status for s in samples]).astype(np.float32))
    trajectory = torch.from_numpy(np.stack([s.trajectory for s in samples]).astype(np.float32))
    if ego.shape[1:] != (EGO_STATUS_DIM,) or trajectory.shape[1:] != (TRAJECTORY_POSES, POSE_DIM):
        raise DrivingSampleError(
            f"collate: ego status {list(ego.shape)} / trajectory {list(trajectory.shape)}; expected "
            f"[B, {EGO_STATUS_DIM}] / [B, {TRAJECTORY_POSES}, {POSE_DIM}]"
        )
    return Batch(inputs, ego, trajectory, [s.token for s in samples], texts)


@dataclass
class Collator:
    """A picklable ``collate_fn`` for ``torch.utils.data.DataLoader`` (workers get the processor, not the model)."""

    processor: Any

    def __call__(self, samples: Sequence[DrivingSample]) -> Batch:
        return collate(samples, self.processor)
