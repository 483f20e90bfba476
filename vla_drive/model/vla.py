"""DrivingVLA: a vision-language backbone whose hidden states condition a diffusion trajectory head.

The backbone runs once per scene; the head draws K trajectories from the repeated condition, optionally guided by
the dichotomous branches (eps = (1 + omega) eps_pos - omega eps_neg, both branches in one batched forward per step).
A model is saved as an HF-style directory:

    vla_config.json        format version, the model config (backbone, head, cameras, chosen guidance omega), how
                           it was trained, and the sha256 of every weight file (checked at load: a truncated or
                           corrupt copy is named)
    README.md              the model card (vla_drive.model.card), with evaluations.json once evaluated
    backbone/              the VLM (full weights, or a LoRA adapter over its base) and its processor; absent for
                           an ego-status-only model (``backbone: none``, :mod:`vla_drive.model.encoder`)
    head.safetensors       the trajectory head, its pos / neg adapters included
    normalizer.json        the trajectory normaliser fitted on the training split
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from navsim_eval.atomic import atomic_write_text, replace_directory
from navsim_eval.data.openscene import CAMERA_NAMES
from vla_drive.model.backbone import TRAINABLE_MODES, LoraSettings
from vla_drive.model.card import write_model_card
from vla_drive.model.diffusion import Generators
from vla_drive.model.encoder import (
    BACKBONE_DIR,
    NO_BACKBONE,
    ConditionEncoder,
    build_encoder,
    load_encoder,
    saved_encoder_files,
)
from vla_drive.model.head import HeadConfig, TrajectoryHead
from vla_drive.model.heads import build_head
from vla_drive.model.normalizer import TrajectoryNormalizer
from vla_drive.model.passes import run_request
from vla_drive.model.processor import collate
from vla_drive.model.seeding import scene_generators
from vla_drive.model.types import (
    MODEL_REQUESTS,
    Batch,
    CachedBatch,
    Cond,
    DrivingSample,
    Guidance,
    ModelRequest,
    NoiseConfig,
    SampleOut,
)

FORMAT_VERSION = 3  # 3: weight checksums; 2: sample_steps lives in head (format 1 kept a second copy; still read)
MODEL_CONFIG_FILE = "vla_config.json"
HEAD_FILE = "head.safetensors"
NORMALIZER_FILE = "normalizer.json"
CHECKSUMS_KEY = "checksums"  # in vla_config.json: relative path -> sha256 of each weight file
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


class VLAModelError(ValueError):
    """A model directory or configuration that cannot be used, with the file and field named."""


ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
BACKBONE_DTYPES = ("auto", "float32", "bfloat16", "float16")


_DEFAULT_CAMERAS = ("CAM_F0",)


@dataclass
class VLAConfig:
    """Everything that defines a DrivingVLA besides its weights: the ``model`` section of an experiment config,
    and what a saved model directory records (field rules in ``metadata``, see :mod:`vla_drive.config.schema`)."""

    backbone: str = field(default="tiny-qwen2.5-vl", metadata={"nonempty": True})  # preset, hub id, dir or "none"
    trainable: str = field(default="frozen", metadata={"choices": TRAINABLE_MODES})  # frozen | lora | full
    lora: LoraSettings = field(default_factory=LoraSettings)  # the backbone's LoRA when trainable is lora
    hidden_layers: tuple[int, ...] = field(default=(-1,), metadata={"nonempty": True})  # backbone states read
    gradient_checkpointing: bool = False  # activation checkpointing in a training backbone
    dtype: str = field(default="auto", metadata={"choices": BACKBONE_DTYPES})  # backbone weights; auto: as saved
    attn_implementation: str | None = field(default=None, metadata={"choices": ATTN_IMPLEMENTATIONS})  # None: HF's
    trust_remote_code: bool = False  # run a checkpoint's own model code (config.json auto_map)
    cameras: tuple[str, ...] = field(  # images per scene (none for backbone "none")
        default=_DEFAULT_CAMERAS, metadata={"items": CAMERA_NAMES, "allow_empty": True}
    )
    max_pixels: tuple[int, ...] = ()  # pixel (token) budget per camera image: one for all or one per camera
    min_pixels: int | None = field(default=None, metadata={"min": 1})  # floor of every camera image's pixels
    history_frames: int = field(default=0, metadata={"choices": (0, 1, 2, 3)})  # past camera frames per camera
    include_history: bool = False  # the past ego poses in the prompt
    ego_status: bool = True  # velocity and acceleration in the head input and the prompt (the command always)
    head: HeadConfig = field(default_factory=HeadConfig)  # the diffusion trajectory head
    guidance_omega: float = field(default=0.0, metadata={"min": 0})  # inference guidance (a sweep stores it)
    policy_branch: str = ""  # the head branch predictions sample from ("" = DIPOLE guidance over pos / neg, else base)

    def __post_init__(self) -> None:
        if self.backbone == NO_BACKBONE:
            self._check_ego_status_only()
        elif not self.cameras:
            raise VLAModelError(f"model.cameras: backbone {self.backbone!r} reads images; expected at least one camera")
        if self.max_pixels and len(self.max_pixels) not in (1, len(self.cameras)):
            raise VLAModelError(
                f"model.max_pixels: expected one budget for every camera or one per camera ({len(self.cameras)}: "
                f"{list(self.cameras)}), got {list(self.max_pixels)}"
            )
        if any(int(p) < 1 for p in self.max_pixels):
            raise VLAModelError(f"model.max_pixels: expected pixel counts >= 1, got {list(self.max_pixels)}")
        if self.min_pixels is not None and any(int(p) < self.min_pixels for p in self.max_pixels):
            raise VLAModelError(
                f"model.min_pixels: expected at most every max_pixels {list(self.max_pixels)}, got {self.min_pixels}"
            )

    def _check_ego_status_only(self) -> None:
        """``backbone: none`` reads no images and no prompt: the settings of a backbone, its cameras and its prompt
        are refused (naming the field) unless left at their defaults; the default camera list becomes empty."""
        if self.cameras == _DEFAULT_CAMERAS:
            self.cameras = ()
        unused = {
            "trainable": (self.trainable, "frozen"),
            "cameras": (list(self.cameras), []),
            "history_frames": (self.history_frames, 0),
            "include_history": (self.include_history, False),
            "max_pixels": (list(self.max_pixels), []),
            "min_pixels": (self.min_pixels, None),
            "gradient_checkpointing": (self.gradient_checkpointing, False),
        }
        for name, (value, expected) in unused.items():
            if value != expected:
                raise VLAModelError(
                    f"model.{name}: model.backbone 'none' (ego status and driving command only) has no backbone, "
                    f"images or prompt; expected {expected!r}, got {value!r}"
                )

    @property
    def torch_dtype(self) -> torch.dtype | str:
        """The backbone's dtype as transformers takes it ("auto": the checkpoint's own)."""
        return self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["lora"] = self.lora.to_dict()
        out["head"] = self.head.to_dict()
        out["hidden_layers"] = list(self.hidden_layers)
        out["cameras"] = list(self.cameras)
        out["max_pixels"] = list(self.max_pixels)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<config>") -> VLAConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VLAModelError(f"{source}: unknown model config keys {unknown}; expected some of {sorted(known)}")
        values = dict(data)
        try:
            if "lora" in values:
                values["lora"] = LoraSettings.from_dict(values["lora"])
            if "head" in values:
                values["head"] = HeadConfig.from_dict(values["head"])
        except (TypeError, ValueError) as error:
            raise VLAModelError(f"{source}: {error}") from None
        for name in ("hidden_layers", "cameras", "max_pixels"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


class DrivingVLA(nn.Module):
    """Condition encoder + trajectory head + normaliser; ``predict`` returns ego-frame trajectories [B, K, 8, 3].

    The encoder (held as ``backbone``, :mod:`vla_drive.model.encoder`) is the VLM backbone, or for
    ``backbone: none`` the ego-status encoder; both give the head the same :class:`Cond`."""

    def __init__(
        self,
        config: VLAConfig,
        backbone: ConditionEncoder,
        head: TrajectoryHead,
        normalizer: TrajectoryNormalizer | None = None,
    ) -> None:
        super().__init__()
        if head.config.cond_dim != backbone.hidden_size:
            raise VLAModelError(
                f"head.cond_dim={head.config.cond_dim} does not match the encoder's hidden size {backbone.hidden_size}"
            )
        self.config = config
        self.backbone = backbone
        self.head = head
        self.normalizer = normalizer or TrajectoryNormalizer.identity()
        self.image_sizing = backbone.image_sizing(config.max_pixels, config.min_pixels)  # per-camera budgets
        self.training_record: dict[str, Any] = {}  # algorithm, steps, split: saved, shown on the card

    # ------------------------------------------------------------------------------------------------ building

    @classmethod
    def build(cls, config: VLAConfig, normalizer: TrajectoryNormalizer | None = None, seed: int = 0) -> DrivingVLA:
        """A new model: the encoder loaded (a backbone, or built from a preset), a freshly initialised head sized
        to it."""
        backbone = build_encoder(config)
        if config.head.cond_dim not in (None, backbone.hidden_size):
            raise VLAModelError(
                f"head.cond_dim={config.head.cond_dim} does not match the hidden size {backbone.hidden_size} of "
                f"backbone {config.backbone!r} (with hidden_layers {list(config.hidden_layers)}); leave it unset"
            )
        head_config = replace(config.head, cond_dim=backbone.hidden_size)
        torch.manual_seed(seed)
        head = build_head(head_config)
        return cls(replace(config, head=head_config), backbone, head, normalizer)

    @property
    def normalizer(self) -> TrajectoryNormalizer:
        return self.head.normalizer

    @normalizer.setter
    def normalizer(self, value: TrajectoryNormalizer) -> None:
        self.head.normalizer = value

    def fit_normalizer(self, trajectories: np.ndarray | Tensor) -> TrajectoryNormalizer:
        """Fit the trajectory normaliser on training trajectories [N, 8, 3] (ego frame) and attach it."""
        self.normalizer = TrajectoryNormalizer.fit(trajectories)
        return self.normalizer

    @property
    def device(self) -> torch.device:
        return next(self.head.parameters()).device

    # ------------------------------------------------------------------------------------------------ running

    def collate(self, samples: Sequence[DrivingSample]) -> Batch:
        return collate(samples, self.backbone)

    def encode(self, batch: Batch) -> Cond:
        """The encoder's condition tokens and the ego status of a batch (once per scene)."""
        ego = batch.ego.to(self.device, torch.float32)
        if not torch.isfinite(ego).all():
            bad = [batch.tokens[i] for i in torch.nonzero(~torch.isfinite(ego).all(dim=1)).flatten().tolist()]
            raise VLAModelError(f"ego status has NaN or infinite values for scenes {bad}")
        tokens, mask = self.backbone.condition(batch, self.device)
        return Cond(tokens.to(self.head.pos_embed.dtype), mask, ego)

    def imitation_loss(self, batch: Batch, branch: str | None = None) -> Tensor:
        """Per-sample diffusion behaviour-cloning loss [B] of the logged trajectories."""
        cond = self.encode(batch)
        x0 = self.normalizer.normalize(batch.trajectory.to(self.device, torch.float32))
        return self.head.imitation_loss(x0, cond, branch=branch)

    def forward(self, batch: Batch | CachedBatch | ModelRequest, branch: str | None = None) -> Any:
        """Per-sample imitation loss [B] of a raw batch (backbone included) or of a cached-feature batch (head
        only); for a model request (:mod:`vla_drive.model.types`: encode, sample, denoising losses, chain
        log-probabilities, flow likelihoods), what that request returns (:mod:`vla_drive.model.passes`).

        Objectives and rollouts call the model (not a method) so that DeepSpeed / DDP wrappers see every pass.
        """
        if isinstance(batch, MODEL_REQUESTS):
            return run_request(self, batch)
        if isinstance(batch, CachedBatch):
            cond = batch.cond.to(self.device)
            x0 = self.normalizer.normalize(batch.trajectory.to(self.device, torch.float32))
            return self.head.imitation_loss(x0, cond, branch=branch)
        return self.imitation_loss(batch, branch)

    def guidance(self, omega: float | None) -> Guidance | None:
        """The model's own policy: its ``policy_branch`` when set (an RL algorithm trained that branch), else DIPOLE
        guidance with ``omega`` (default: the model's chosen omega); None for a head without pos / neg branches."""
        if self.config.policy_branch:
            return Guidance("none", branch=self.config.policy_branch)
        if not {"pos", "neg"} <= set(self.head.config.branches):
            return None
        return Guidance("dichotomous", self.config.guidance_omega if omega is None else float(omega))

    def sample(
        self,
        cond: Cond,
        num_samples: int = 1,
        steps: int | None = None,
        omega: float | None = None,
        stochastic: NoiseConfig | None = None,
        return_chain: bool = False,
        generator: Generators = None,
        guidance: Guidance | None = None,
        temperature: float = 1.0,
    ) -> SampleOut:
        """K samples per condition row (consecutive), guided by ``omega`` unless ``guidance`` says otherwise;
        ``temperature`` scales the sampler's noise (1 = as trained)."""
        return self.head.sample(
            cond,
            num_samples,
            steps,
            guidance or self.guidance(omega),
            stochastic,
            return_chain,
            generator,
            temperature=temperature,
        )

    @torch.no_grad()
    def predict(
        self,
        samples: Sequence[DrivingSample],
        num_samples: int = 1,
        steps: int | None = None,
        omega: float | None = None,
        seed: int | None = None,
        temperature: float = 1.0,
    ) -> np.ndarray:
        """Trajectories [B, K, 8, 3] in each scene's ego frame (x, y, heading every 0.5 s).

        With ``seed``, each scene's noise comes from its token and the seed (:mod:`vla_drive.model.seeding`), so
        a scene gets the same trajectories in any batch; without, from torch's global generator. ``steps`` None
        uses ``head.sample_steps``, ``omega`` None the model's ``guidance_omega``; ``temperature`` scales the
        sampler's noise."""
        if not samples:
            raise VLAModelError("predict: no samples given")
        was_training = self.training
        self.eval()
        try:
            cond = self.encode(self.collate(samples))
            generator = None
            if seed is not None:
                generator = scene_generators([s.token for s in samples], seed, device=self.device)
            out = self.sample(cond, num_samples, steps, omega, generator=generator, temperature=temperature)
        finally:
            self.train(was_training)
        traj = out.traj.reshape(len(samples), num_samples, *out.traj.shape[1:])
        return traj.float().cpu().numpy()

    # ------------------------------------------------------------------------------------------------ saving

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write the model directory atomically (a crash never leaves a half-written model in place)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            self.backbone.save_pretrained(staging / BACKBONE_DIR)  # the ego-status encoder writes nothing
            state = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
            save_file(state, str(staging / HEAD_FILE))
            self.normalizer.save(staging / NORMALIZER_FILE)
            meta = {
                "format_version": FORMAT_VERSION,
                "config": self.config.to_dict(),
                "versions": _versions(),
                "training": self.training_record,
                CHECKSUMS_KEY: weight_checksums(staging),  # read back from disk: what a later load must find
            }
            (staging / MODEL_CONFIG_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
            write_model_card(staging, directory.parent.name if directory.name == "model" else directory.name)
            replace_directory(staging, directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return directory

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike[str],
        trainable: str | None = None,
        *,
        dtype: str | None = None,
        attn_implementation: str | None = None,
    ) -> DrivingVLA:
        """Load a directory written by :meth:`save_pretrained` (the backbone's processor included); ``dtype`` and
        ``attn_implementation`` override the saved backbone settings (e.g. a model trained with flash attention
        evaluated on a CPU).

        Every weight file is checked against the checksum recorded at save time first, so a truncated or corrupt
        copy fails with one line naming the file instead of loading silently."""
        directory = Path(directory)
        config = read_model_config(directory)
        overrides = {"dtype": dtype, "attn_implementation": attn_implementation}
        config = replace(config, **{name: value for name, value in overrides.items() if value is not None})
        for required in (*saved_encoder_files(config), HEAD_FILE, NORMALIZER_FILE):
            if not (directory / required).exists():
                raise VLAModelError(f"{directory / required}: missing from the model directory")
        meta = _read_meta(directory / MODEL_CONFIG_FILE)
        verify_checksums(directory, meta.get(CHECKSUMS_KEY) or {})
        try:
            backbone = load_encoder(config, directory, trainable)
        except (OSError, RuntimeError, SafetensorError) as error:  # an unchecked (older format) damaged file
            where = directory / BACKBONE_DIR
            raise VLAModelError(f"{where}: cannot load the backbone ({_first_line(error)})") from None
        head = build_head(config.head)
        try:
            state = load_file(str(directory / HEAD_FILE))
        except (OSError, SafetensorError) as error:
            raise VLAModelError(f"{directory / HEAD_FILE}: unreadable head weights ({_first_line(error)})") from None
        missing, unexpected = head.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise VLAModelError(f"{directory / HEAD_FILE}: missing {missing}, unexpected {unexpected} head weights")
        try:
            normalizer = TrajectoryNormalizer.load(directory / NORMALIZER_FILE)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise VLAModelError(f"{directory / NORMALIZER_FILE}: {_first_line(error)}") from None
        model = cls(replace(config, trainable=backbone.trainable), backbone, head, normalizer)
        model.training_record = dict(meta.get("training") or {})
        return model

    def merge_lora(self) -> DrivingVLA:
        """Fold the backbone's LoRA into its weights for export (the head keeps its pos / neg branches, which
        guided sampling combines at every step)."""
        if self.backbone.trainable == "lora":
            self.backbone.merge_lora()
            self.config = replace(self.config, trainable=self.backbone.trainable)
        return self


def read_model_config(directory: str | os.PathLike[str]) -> VLAConfig:
    """The config of a saved DrivingVLA directory, without loading weights (checks the format version)."""
    directory = Path(directory)
    config_path = directory / MODEL_CONFIG_FILE
    if not config_path.is_file():
        raise VLAModelError(f"{directory}: not a DrivingVLA directory (no {MODEL_CONFIG_FILE})")
    meta = _read_meta(config_path)
    version = meta.get("format_version")
    if version not in READABLE_FORMATS:
        raise VLAModelError(
            f"{config_path}: model format version {version!r}, this vla-drive reads versions "
            f"{', '.join(map(str, READABLE_FORMATS))}; the model was saved by "
            f"{meta.get('versions', {}).get('vla_drive', 'another version')}"
        )
    if not isinstance(meta.get("config"), dict):
        raise VLAModelError(f"{config_path}: no 'config' mapping; the file is damaged")
    try:
        return VLAConfig.from_dict(_upgrade_config(meta["config"], version), str(config_path))
    except VLAModelError:
        raise
    except (TypeError, ValueError, AttributeError) as error:
        raise VLAModelError(f"{config_path}: the model config is damaged ({_first_line(error)})") from None


def _read_meta(config_path: Path) -> dict[str, Any]:
    """The parsed ``vla_config.json``; a damaged file is named."""
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VLAModelError(f"{config_path}: unreadable model config ({_first_line(error)})") from None
    if not isinstance(meta, dict):
        raise VLAModelError(f"{config_path}: expected a JSON object, found {type(meta).__name__}")
    return meta


def weight_checksums(directory: str | os.PathLike[str]) -> dict[str, str]:
    """sha256 of every weight file of a model directory (safetensors / bin / pt files and the normaliser), by
    path relative to it. The metadata (vla_config.json, a stored omega, eval results) is not covered, so it may
    change without invalidating the weights."""
    directory = Path(directory)
    files = [
        path
        for path in sorted(directory.rglob("*"))
        if path.is_file() and (path.suffix in _WEIGHT_SUFFIXES or path.name == NORMALIZER_FILE)
    ]
    return {path.relative_to(directory).as_posix(): _sha256(path) for path in files}


def verify_checksums(directory: str | os.PathLike[str], checksums: dict[str, str]) -> None:
    """Raise :class:`VLAModelError` naming the first weight file that is missing or differs from its checksum."""
    directory = Path(directory)
    for relative, expected in sorted(checksums.items()):
        path = directory / relative
        if not path.is_file():
            raise VLAModelError(f"{path}: missing (the model was saved with it); copy the model directory again")
        found = _sha256(path)
        if found != expected:
            raise VLAModelError(
                f"{path}: checksum mismatch, the file is truncated or corrupt (sha256 {found[:12]}..., saved "
                f"{str(expected)[:12]}...); copy the model directory again"
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


READABLE_FORMATS = (1, 2, FORMAT_VERSION)


def _upgrade_config(data: dict[str, Any], version: int) -> dict[str, Any]:
    """A saved model config of an older format as the current format reads it."""
    data = dict(data)
    if version == 1:  # format 1 kept the default steps twice; head.sample_steps is the one that remains
        steps = data.pop("sample_steps", None)
        if steps is not None:
            data["head"] = {**data.get("head", {}), "sample_steps": steps}
    return data


@torch.no_grad()
def model_fingerprint(model: DrivingVLA) -> str:
    """A short hash of what decides a model's predictions: config, normaliser, every head tensor, and a sum per
    backbone tensor (one cheap pass, enough to tell a retrained or re-tuned backbone apart)."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=_json_default).encode())
    digest.update(json.dumps(model.normalizer.state_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.head.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    sums = [float(p.detach().double().sum()) for _, p in sorted(model.backbone.named_parameters())]
    digest.update(np.asarray(sums, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def store_guidance_omega(directory: str | os.PathLike[str], omega: float) -> Path:
    """Record the chosen guidance omega in a saved model by rewriting only its config file (atomically): the
    weights and anything else in the directory (e.g. eval / sweep outputs) stay as they are."""
    config = read_model_config(directory)  # checks the directory and its format version
    path = Path(directory) / MODEL_CONFIG_FILE
    meta = _read_meta(path)
    meta["format_version"] = FORMAT_VERSION  # the config is rewritten in the current format (checksums kept)
    meta["config"] = replace(config, guidance_omega=float(omega)).to_dict()
    atomic_write_text(path, json.dumps(meta, indent=2, default=_json_default))
    write_model_card(directory)
    return path


def _versions() -> dict[str, str]:
    import transformers

    from vla_drive import __version__

    return {"vla_drive": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
