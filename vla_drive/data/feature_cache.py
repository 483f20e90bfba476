"""Frozen-backbone feature cache: condition tokens computed once, stored in shards, reused by head-only training.

With a frozen backbone the condition of a scene never changes, so imitation and RL of the head can skip the VLM
entirely. The cache lives in a folder named by a content key: a hash of everything that determines the features
(the backbone weights and layer selection, the processor, cameras and prompt options, the scene tokens). A
different backbone or dataset gets a different folder; a finished folder is never rewritten.

    <root>/<key>/index.json            scene tokens, shard of each, shapes, the key's inputs
    <root>/<key>/shard-00000.safetensors   tokens [S, M, C] (padded), mask [S, M], ego [S, E], trajectory [S, 8, 3]
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset

from vla_drive.data.dataset import SceneDataset
from vla_drive.model.processor import collate
from vla_drive.model.types import CachedBatch, Cond

INDEX_FILE = "index.json"
CACHE_FORMAT = 1


class FeatureCacheError(ValueError):
    """A feature cache that cannot be built or read (names the folder and the problem)."""


def _fingerprint(backbone) -> str:
    """A hash of the backbone's weights (every parameter; tiny cost next to encoding a dataset)."""
    digest = hashlib.sha256()
    for name, parameter in sorted(backbone.named_parameters(), key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(parameter.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def cache_key(backbone, dataset: SceneDataset) -> tuple[str, dict]:
    """The content key of the features of ``dataset`` under ``backbone``, and what went into it."""
    inputs = {
        "format": CACHE_FORMAT,
        "family": backbone.family,
        "hidden_layers": list(backbone.hidden_layers),
        "layer_combine": backbone.layer_combine,
        "image_size": backbone.image_size,
        "weights": _fingerprint(backbone),
        **dataset.settings(),
        "tokens": list(dataset.tokens),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24], inputs


def build_feature_cache(
    backbone,
    dataset: SceneDataset,
    root: str | os.PathLike[str],
    batch_size: int = 16,
    shard_size: int = 256,
    progress=None,
) -> Path:
    """Encode every scene of ``dataset`` once and write the shards; returns the cache folder (reused if present)."""
    if backbone.trainable != "frozen":
        raise FeatureCacheError(f"a feature cache needs a frozen backbone, this one is {backbone.trainable!r}")
    key, inputs = cache_key(backbone, dataset)
    folder = Path(root) / key
    if (folder / INDEX_FILE).is_file():
        return folder
    Path(root).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        shards, entries = [], {}
        was_training = backbone.training
        backbone.eval()
        for shard_index, start in enumerate(range(0, len(dataset), shard_size)):
            parts = {"tokens": [], "mask": [], "ego": [], "trajectory": []}
            shard_tokens = []
            for first in range(start, min(start + shard_size, len(dataset)), batch_size):
                samples = [dataset[i] for i in range(first, min(first + batch_size, start + shard_size, len(dataset)))]
                batch = collate(samples, backbone)
                with torch.no_grad():
                    tokens, mask = backbone.encode(batch.inputs.to(backbone.device))
                for row in range(len(samples)):
                    length = int(mask[row].sum())
                    parts["tokens"].append(tokens[row, mask[row]][:length].float().cpu())
                    parts["mask"].append(length)
                parts["ego"].append(batch.ego.float().cpu())
                parts["trajectory"].append(batch.trajectory.float().cpu())
                shard_tokens.extend(batch.tokens)
                if progress is not None:
                    progress(len(samples))
            width = max(parts["mask"])
            padded = torch.zeros(len(shard_tokens), width, parts["tokens"][0].shape[-1])
            mask = torch.zeros(len(shard_tokens), width, dtype=torch.bool)
            for row, (features, length) in enumerate(zip(parts["tokens"], parts["mask"], strict=True)):
                padded[row, :length] = features
                mask[row, :length] = True
            name = f"shard-{shard_index:05d}.safetensors"
            save_file(
                {
                    "tokens": padded,
                    "mask": mask,
                    "ego": torch.cat(parts["ego"]),
                    "trajectory": torch.cat(parts["trajectory"]),
                },
                str(staging / name),
            )
            shards.append(name)
            for row, token in enumerate(shard_tokens):
                entries[token] = [shard_index, row]
        backbone.train(was_training)
        index = {"format": CACHE_FORMAT, "key": key, "inputs": inputs, "shards": shards, "entries": entries}
        (staging / INDEX_FILE).write_text(json.dumps(index))
        try:
            staging.rename(folder)
        except OSError:  # another rank or process finished the same cache first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


class CachedFeatureDataset(Dataset):
    """The scenes of a feature cache: (token, condition tokens [M, C], ego [E], trajectory [8, 3])."""

    def __init__(self, folder: str | os.PathLike[str], tokens: Sequence[str] | None = None) -> None:
        self.folder = Path(folder)
        try:
            index = json.loads((self.folder / INDEX_FILE).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise FeatureCacheError(f"{self.folder}: not a readable feature cache ({error})") from None
        if index.get("format") != CACHE_FORMAT:
            raise FeatureCacheError(f"{self.folder}: cache format {index.get('format')}, expected {CACHE_FORMAT}")
        self.entries: dict[str, list[int]] = index["entries"]
        self.tokens = list(tokens) if tokens is not None else list(self.entries)
        missing = [t for t in self.tokens if t not in self.entries]
        if missing:
            raise FeatureCacheError(f"{self.folder}: {len(missing)} scenes are not cached, e.g. {missing[:3]}")
        self.shards = [load_file(str(self.folder / name)) for name in index["shards"]]

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> tuple[str, Tensor, Tensor, Tensor]:
        token = self.tokens[index]
        shard, row = self.entries[token]
        data = self.shards[shard]
        length = int(data["mask"][row].sum())
        return token, data["tokens"][row, :length], data["ego"][row], data["trajectory"][row]


def collate_cached(items: Sequence[tuple[str, Tensor, Tensor, Tensor]]) -> CachedBatch:
    """Pad cached condition tokens to the longest in the batch."""
    width = max(item[1].shape[0] for item in items)
    channels = items[0][1].shape[-1]
    tokens = torch.zeros(len(items), width, channels)
    mask = torch.zeros(len(items), width, dtype=torch.bool)
    for row, (_, features, _, _) in enumerate(items):
        tokens[row, : features.shape[0]] = features
        mask[row, : features.shape[0]] = True
    ego = torch.stack([item[2] for item in items])
    trajectory = torch.stack([item[3] for item in items])
    return CachedBatch(Cond(tokens, mask, ego), trajectory, [item[0] for item in items])
