"""The condition encoder of a DrivingVLA: what turns a batch of scenes into the :class:`Cond` the trajectory head
attends to.

Two encoders share one interface (:class:`ConditionEncoder`): the VLM backbone (:class:`VLMBackbone`: camera images
and the prompt through a vision-language model), and :class:`EgoStatusEncoder` for ``model.backbone: none``, our
analogue of NAVSIM's EgoStatusMLP: the same head conditioned on the ego status and the driving command only, no
images, no prompt, no processor. It has no weights of its own (its one condition token is the ego-status vector,
which the head projects and normalises like backbone states); everything it learns is in the head, so imitation,
RL, saving and evaluation run the same code for both.

:func:`build_encoder` and :func:`load_encoder` are the one place that chooses between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn

from vla_drive.model.backbone import BackboneError, VLMBackbone
from vla_drive.model.processor import ImageSizing
from vla_drive.model.types import EGO_STATUS_DIM, Batch

if TYPE_CHECKING:
    from vla_drive.model.vla import VLAConfig

NO_BACKBONE = "none"  # model.backbone of the ego-status-only model
BACKBONE_DIR = "backbone"  # a saved model's VLM backbone folder (none for the ego-status encoder)
EGO_STATUS_FAMILY = "ego-status"


class ConditionEncoder(Protocol):
    """What DrivingVLA, the datasets and the trainer use of an encoder."""

    processor: Any  # the VLM's processor (prompts and images), or None: samples carry neither
    trainable: str  # frozen | lora | full
    image_size: int | None
    hidden_size: int  # channels of each condition token (the head's cond_dim)
    family: str

    def condition(self, batch: Batch, device: torch.device) -> tuple[Tensor, Tensor]: ...

    def image_sizing(self, max_pixels: tuple[int, ...] = (), min_pixels: int | None = None) -> ImageSizing: ...

    def save_pretrained(self, directory: str | Path) -> Path | None: ...


class EgoStatusEncoder(nn.Module):
    """One condition token per scene, the ego-status vector itself [B, 1, 8] (velocity, acceleration, command
    one-hot; velocity and acceleration zero when ``model.ego_status`` is off). No weights, no images."""

    processor = None
    trainable = "frozen"
    image_size = None
    hidden_size = EGO_STATUS_DIM
    family = EGO_STATUS_FAMILY

    def condition(self, batch: Batch, device: torch.device) -> tuple[Tensor, Tensor]:
        """Tokens [B, 1, 8] and their mask [B, 1] (all real)."""
        ego = batch.ego.to(device, torch.float32)
        return ego[:, None, :], torch.ones(ego.shape[0], 1, dtype=torch.bool, device=device)

    def image_sizing(self, max_pixels: tuple[int, ...] = (), min_pixels: int | None = None) -> ImageSizing:
        """No images: an empty sizing."""
        return ImageSizing()

    def save_pretrained(self, directory: str | Path) -> None:
        """Nothing to write: the encoder is fixed by ``model.backbone: none`` in the model config."""
        return None

    def extra_repr(self) -> str:
        return f"tokens=1 x {self.hidden_size} (ego status and driving command)"


def build_encoder(config: VLAConfig) -> VLMBackbone | EgoStatusEncoder:
    """A new encoder for ``config``: the backbone it names (loaded or built from a preset), or the ego status."""
    if config.backbone == NO_BACKBONE:
        return EgoStatusEncoder()
    return VLMBackbone.from_pretrained(
        config.backbone,
        trainable=config.trainable,
        lora=config.lora,
        hidden_layers=config.hidden_layers,
        gradient_checkpointing=config.gradient_checkpointing,
        torch_dtype=config.torch_dtype,
        attn_implementation=config.attn_implementation,
        trust_remote_code=config.trust_remote_code,
    )


def saved_encoder_files(config: VLAConfig) -> tuple[str, ...]:
    """The folders a saved model directory holds for its encoder."""
    return () if config.backbone == NO_BACKBONE else (BACKBONE_DIR,)


def load_encoder(config: VLAConfig, directory: Path, trainable: str | None) -> VLMBackbone | EgoStatusEncoder:
    """The encoder of a saved model directory; ``trainable`` (None: as saved) sets a backbone's training mode.

    Raises :class:`BackboneError` naming the field when an ego-status model is asked to train a backbone it does
    not have."""
    if config.backbone == NO_BACKBONE:
        if trainable not in (None, "frozen"):
            raise BackboneError(
                f"model.trainable: the model in {directory} has no backbone (model.backbone 'none': ego status and "
                f"driving command only), so there is nothing to train as {trainable!r}; expected 'frozen'"
            )
        return EgoStatusEncoder()
    return VLMBackbone.from_pretrained(
        directory / BACKBONE_DIR,
        trainable=trainable,
        torch_dtype=config.torch_dtype,
        attn_implementation=config.attn_implementation,
        trust_remote_code=config.trust_remote_code,
    )
