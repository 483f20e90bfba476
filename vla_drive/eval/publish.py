"""``vla-drive push``: upload a saved model to the Hugging Face hub through the ``huggingface_hub`` API.

Only the model itself goes up (``vla_config.json``, ``backbone/``, ``head.safetensors``, ``normalizer.json``, the
card and the evaluation record; never eval / sweep outputs). Before anything is sent the weights are checked
against their checksums (a corrupt copy is never published) and the card is regenerated, so what the hub shows is
what the directory holds. ``dry_run`` lists the files and the card without touching the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_drive.model.card import CARD_FILE, model_files, write_model_card
from vla_drive.model.vla import CHECKSUMS_KEY, MODEL_CONFIG_FILE, read_model_config, verify_checksums


class PushError(ValueError):
    """A model that cannot be pushed (not a model directory, a bad repository id, a hub that refused it)."""


@dataclass
class PushPlan:
    """What a push sends: the repository, the files (relative paths, sizes) and the card's text."""

    directory: Path
    repo_id: str
    files: list[tuple[str, int]]
    card: str

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)

    def describe(self) -> str:
        lines = [f"{len(self.files)} files ({self.total_bytes / 1e6:.1f} MB) from {self.directory} to {self.repo_id}:"]
        lines += [f"  {name}  ({size} bytes)" for name, size in self.files]
        return "\n".join(lines)


def plan_push(directory: str | os.PathLike[str], repo_id: str) -> PushPlan:
    """Check the model (format, weight checksums), regenerate its card and list what a push uploads."""
    import json

    directory = Path(directory)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PushError(f"--repo-id {repo_id!r}: expected <user or organisation>/<name>")
    read_model_config(directory)  # a DrivingVLA directory of a readable format (one line naming the file if not)
    meta = json.loads((directory / MODEL_CONFIG_FILE).read_text(encoding="utf-8"))
    verify_checksums(directory, meta.get(CHECKSUMS_KEY) or {})
    card = write_model_card(directory).read_text(encoding="utf-8")
    files = [(path.as_posix(), (directory / path).stat().st_size) for path in model_files(directory)]
    if CARD_FILE not in {name for name, _ in files}:
        raise PushError(f"{directory}: the model card was not written")
    return PushPlan(directory, repo_id, files, card)


def push_model(
    directory: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str | None = None,
    api: Any = None,
) -> str:
    """Create the repository if needed and upload the model in one commit; returns the commit's URL. ``api`` is a
    ``huggingface_hub.HfApi`` (default: one with the user's own token and endpoint settings)."""
    plan = plan_push(directory, repo_id)
    from huggingface_hub import CommitOperationAdd, HfApi

    api = api or HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(plan.directory / name)) for name, _ in plan.files
        ]
        info = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or f"Upload {plan.directory.name} with vla-drive",
            repo_type="model",
        )
    except Exception as error:  # network, authentication, permissions: all mean "the hub did not take it"
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise PushError(f"push to {repo_id} failed ({type(error).__name__}: {first})") from None
    return str(getattr(info, "commit_url", info))
