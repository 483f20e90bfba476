"""Resumable predictions of a split: one trajectory per scene, written batch by batch.

Scenes are predicted on a fixed grid of batches (batch b holds scenes b * batch_size ... in split order) and every
batch uses the seed ``seed + b``, so a run that was interrupted and resumed writes exactly what an uninterrupted
run writes. Each finished batch is one ``part-<b>.npz`` file (written atomically); ``meta.json`` records what
produced them (model, omega, steps, seed, batch size) and a resume with other settings is refused rather than
mixed.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from navsim_eval.atomic import atomic_write_bytes, atomic_write_text

META_FILE = "meta.json"


class PredictionError(ValueError):
    """A prediction folder that cannot be resumed or read."""


class PredictionStore:
    """The per-batch prediction files of one evaluation run."""

    def __init__(self, directory: str | os.PathLike[str], settings: dict) -> None:
        self.directory = Path(directory)
        self.settings = json.loads(json.dumps(settings))  # plain JSON values, compared as stored
        meta = self.directory / META_FILE
        if meta.is_file():
            stored = json.loads(meta.read_text(encoding="utf-8"))
            if stored != self.settings:
                changed = sorted(k for k in set(stored) | set(self.settings) if stored.get(k) != self.settings.get(k))
                raise PredictionError(
                    f"{self.directory}: predictions were made with other settings ({', '.join(changed)}: "
                    f"{[stored.get(k) for k in changed]} vs {[self.settings.get(k) for k in changed]}); use another "
                    "output folder or remove it"
                )
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write_text(meta, json.dumps(self.settings, indent=1))

    def part(self, index: int) -> Path:
        return self.directory / f"part-{index:06d}.npz"

    def done(self, index: int) -> bool:
        return self.part(index).is_file()

    def write(
        self, index: int, tokens: Sequence[str], trajectories: np.ndarray, failed: Mapping[str, str] | None = None
    ) -> None:
        """One finished batch: its predictions and the scenes that could not become samples (token -> reason)."""
        failed = dict(failed or {})
        buffer = io.BytesIO()
        np.savez(
            buffer,
            tokens=np.array(list(tokens), dtype=str),
            trajectories=np.asarray(trajectories, dtype=np.float32).reshape(len(tokens), 8, 3),
            failed_tokens=np.array(list(failed), dtype=str),
            failed_reasons=np.array(list(failed.values()), dtype=str),
        )
        atomic_write_bytes(self.part(index), buffer.getvalue())

    def load(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Every finished prediction (token -> [8, 3]) and every scene that failed (token -> reason)."""
        out: dict[str, np.ndarray] = {}
        failed: dict[str, str] = {}
        for path in sorted(self.directory.glob("part-*.npz")):
            try:
                with np.load(path, allow_pickle=False) as data:
                    out.update(zip(data["tokens"].tolist(), data["trajectories"], strict=True))
                    failed.update(zip(data["failed_tokens"].tolist(), data["failed_reasons"].tolist(), strict=True))
            except (OSError, ValueError, KeyError) as error:
                raise PredictionError(
                    f"{path}: unreadable prediction file ({error}); remove it to redo its batch"
                ) from None
        return out, failed


def predict_resumable(
    model,
    dataset,
    store: PredictionStore,
    *,
    batch_size: int,
    steps: int | None,
    omega: float | None,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Predict every batch of ``dataset`` not yet in ``store``; return all predictions (token -> [8, 3]) and the
    scenes that could not be turned into samples (token -> reason: a missing image, a non-finite ego status...),
    which never stop the run."""
    tokens = dataset.tokens
    for index, start in enumerate(range(0, len(dataset), batch_size)):
        stop = min(start + batch_size, len(dataset))
        if not store.done(index):
            samples, failed = [], {}
            for i in range(start, stop):
                try:
                    samples.append(dataset[i])
                except (ValueError, OSError, KeyError) as error:  # one bad scene: reported, the rest goes on
                    failed[tokens[i]] = f"{type(error).__name__}: {error}"
            trajectories = model.predict(samples, 1, steps, omega, seed=seed + index)[:, 0] if samples else []
            store.write(index, [s.token for s in samples], trajectories, failed)
        if progress is not None:
            progress(stop - start)
    return store.load()
