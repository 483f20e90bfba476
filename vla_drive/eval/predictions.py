"""Predicting scenes with a DrivingVLA: the one batched path that validation, the sweep, ``eval`` and ``submit`` use.

Scenes are predicted on a fixed grid of batches (batch b holds scenes b * batch_size ... in dataset order), and each
scene's noise comes from its token and the seed (:mod:`vla_drive.model.seeding`), so the trajectories do not depend
on the batch size, the order, the rank or the worker. Work can be sharded over ranks (batch b goes to rank b mod n;
every rank runs the same number of forwards, as ZeRO-3 needs) and gathered, and kept in a resumable
:class:`PredictionStore`: each finished batch is one ``part-<b>.npz`` file (written atomically), ``meta.json``
records what produced them, and predictions made with other settings (another model, omega, steps or seed) are
stale: they are removed and predicted again, never mixed.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from navsim_eval.atomic import atomic_write_bytes, atomic_write_text
from vla_drive.model.vla import DrivingVLA

LOG = logging.getLogger(__name__)
META_FILE = "meta.json"
STORE_FORMAT = 2  # 2: per-scene seeds, [K, 8, 3] per scene
CallModel = Callable[[Callable[[DrivingVLA], Any]], Any]  # call(fn) runs fn(model) as every rank must (ZeRO-3)
Gather = Callable[[Any], list[Any]]  # gather(value) -> every rank's value, in rank order


class PredictionError(ValueError):
    """A prediction folder that cannot be read."""


class PredictionStore:
    """The per-batch prediction files of one evaluation run (stale ones are cleared on opening)."""

    def __init__(self, directory: str | os.PathLike[str], settings: Mapping[str, Any]) -> None:
        self.directory = Path(directory)
        self.settings = json.loads(json.dumps({"format": STORE_FORMAT, **settings}))  # plain JSON, compared as stored
        meta = self.directory / META_FILE
        stored = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else None
        if stored is not None and stored != self.settings:
            changed = sorted(k for k in set(stored) | set(self.settings) if stored.get(k) != self.settings.get(k))
            parts = sorted(self.directory.glob("part-*.npz"))
            LOG.info(
                "%s: %d prediction batches were made with other settings (%s); predicting again",
                self.directory,
                len(parts),
                ", ".join(changed),
            )
            for part in parts:
                part.unlink()
            stored = None
        if stored is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write_text(meta, json.dumps(self.settings, indent=1))

    @classmethod
    def existing(cls, directory: str | os.PathLike[str]) -> PredictionStore:
        """A finished or interrupted store opened to read (its settings as stored; nothing is cleared)."""
        store = cls.__new__(cls)
        store.directory = Path(directory)
        meta = store.directory / META_FILE
        try:
            store.settings = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise PredictionError(f"{meta}: not a readable prediction folder ({error})") from None
        if not isinstance(store.settings, dict) or store.settings.get("format") != STORE_FORMAT:
            raise PredictionError(f"{meta}: prediction folder of another format (expected {STORE_FORMAT})")
        return store

    def part(self, index: int) -> Path:
        return self.directory / f"part-{index:06d}.npz"

    def done(self, index: int) -> bool:
        return self.part(index).is_file()

    def write(
        self, index: int, tokens: Sequence[str], trajectories: np.ndarray, failed: Mapping[str, str] | None = None
    ) -> None:
        """One finished batch: its predictions [N, K, 8, 3] and the scenes that could not become samples."""
        failed = dict(failed or {})
        buffer = io.BytesIO()
        np.savez(
            buffer,
            tokens=np.array(list(tokens), dtype=str),
            trajectories=np.asarray(trajectories, dtype=np.float32).reshape(len(tokens), -1, 8, 3),
            failed_tokens=np.array(list(failed), dtype=str),
            failed_reasons=np.array(list(failed.values()), dtype=str),
        )
        atomic_write_bytes(self.part(index), buffer.getvalue())

    def read(self, index: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """The predictions (token -> [K, 8, 3]) and failed scenes (token -> reason) of one finished batch."""
        path = self.part(index)
        try:
            with np.load(path, allow_pickle=False) as data:
                predictions = dict(zip(data["tokens"].tolist(), data["trajectories"], strict=True))
                failed = dict(zip(data["failed_tokens"].tolist(), data["failed_reasons"].tolist(), strict=True))
        except (OSError, ValueError, KeyError) as error:
            raise PredictionError(
                f"{path}: unreadable prediction file ({error}); remove it to redo its batch"
            ) from None
        return predictions, failed


@dataclass
class ScenePredictions:
    """Trajectories per scene token [K, 8, 3] and the scenes that could not be predicted (token -> reason)."""

    trajectories: dict[str, np.ndarray] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def first(self) -> dict[str, np.ndarray]:
        """One trajectory per scene [8, 3]: the first sample."""
        return {token: trajectories[0] for token, trajectories in self.trajectories.items()}

    def update(self, other: ScenePredictions) -> None:
        self.trajectories.update(other.trajectories)
        self.failed.update(other.failed)


def predict_scenes(
    model: DrivingVLA,
    dataset: Any,
    *,
    num_samples: int = 1,
    steps: int | None = None,
    omega: float | None = None,
    seed: int = 0,
    temperature: float = 1.0,
    batch_size: int = 16,
    call: CallModel | None = None,
    shard: tuple[int, int] = (0, 1),
    gather: Gather | None = None,
    store: PredictionStore | None = None,
    progress: Callable[[int], None] | None = None,
) -> ScenePredictions:
    """Predict every scene of ``dataset`` (indexable, ``tokens``; e.g. a SceneDataset) in batches.

    ``shard=(rank, ranks)`` predicts this rank's batches only; with ``gather`` every rank gets all predictions.
    ``call`` runs the model as all ranks must (``Trainer.call_model``). A scene that cannot become a sample (a
    missing image, a non-finite ego status) is reported in ``failed`` and never stops the run; ``progress(n)`` is
    told how many scenes each batch covered. ``temperature`` scales the sampler's noise (1 = as trained).
    """
    if batch_size < 1:
        raise ValueError(f"predict_scenes: batch_size must be >= 1, got {batch_size}")
    call = call or (lambda fn: fn(model))
    me, ranks = shard
    tokens = list(dataset.tokens)
    batches = list(range(0, len(tokens), batch_size))
    mine = batches[me::ranks]
    rounds = -(-len(batches) // ranks)  # every rank runs this many forwards (the last may repeat one, discarded)
    out = ScenePredictions()
    for round_index in range(rounds):
        padding = round_index >= len(mine)
        if padding and not mine:
            if len(batches) and ranks > 1:  # no batch of its own: repeat the first one so the ranks stay in step
                _predict_batch(
                    model, dataset, tokens, 0, batch_size, num_samples, steps, omega, (seed, temperature), call
                )
            continue
        start = mine[min(round_index, len(mine) - 1)]
        index = start // batch_size
        if not padding and store is not None and store.done(index):
            part = ScenePredictions(*store.read(index))
        else:
            part = _predict_batch(
                model, dataset, tokens, start, batch_size, num_samples, steps, omega, (seed, temperature), call
            )
            if padding:
                continue
            if store is not None:
                store.write(
                    index,
                    list(part.trajectories),
                    np.stack(list(part.trajectories.values()))
                    if part.trajectories
                    else np.zeros((0, num_samples, 8, 3)),
                    part.failed,
                )
        out.update(part)
        if progress is not None:
            progress(min(start + batch_size, len(tokens)) - start)
    if gather is not None and ranks > 1:
        merged = ScenePredictions()
        for part in gather(out):
            merged.update(part)
        out = merged
    return out


def _predict_batch(model, dataset, tokens, start, batch_size, num_samples, steps, omega, noise, call):
    seed, temperature = noise
    samples, failed = [], {}
    for i in range(start, min(start + batch_size, len(tokens))):
        try:
            samples.append(dataset[i])
        except (ValueError, OSError, KeyError) as error:  # one bad scene: reported, the rest goes on
            failed[tokens[i]] = f"{type(error).__name__}: {error}"
    if not samples:
        return ScenePredictions({}, failed)
    trajectories = call(
        lambda module: module.predict(samples, num_samples, steps, omega, seed=seed, temperature=temperature)
    )
    return ScenePredictions({s.token: t for s, t in zip(samples, trajectories, strict=True)}, failed)
