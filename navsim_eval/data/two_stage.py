"""The scenes of a two-stage split: stage one from the logs, stage two from the synthetic scene pickles.

As NAVSIM's ``SceneLoader`` (``main``): stage one are the split's log scenes (4 history + 8 future frames); a
synthetic scene is loaded when the filter names it (``synthetic_scene_tokens``) or, without such a list, when its
``corresponding_original_scene`` is the last frame of a loaded stage-one scene (and its log passes ``log_names``);
stage two are the loaded synthetic scenes listed in ``reactive_synthetic_initial_tokens``. Unlike the official
loader (which dies with a KeyError later, in the aggregation), tokens of ``reactive_all_mapping`` that no loaded
scene provides are reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from navsim_eval.data.loader import SceneLoader
from navsim_eval.data.paths import openscene_data_root
from navsim_eval.data.splits import Split
from navsim_eval.data.synthetic_scenes import SCENE_PICKLES_DIR, SyntheticScene, read_synthetic_scenes
from navsim_eval.errors import NavsimEvalError

DEFAULT_SYNTHETIC_SPLIT = "navhard_two_stage"  # NAVSIM's default_dataset_paths.yaml
MAX_LISTED = 10


def default_synthetic_scenes_dir(data_root: str | os.PathLike | None = None) -> Path:
    """``<data root>/navhard_two_stage/synthetic_scene_pickles``, where NAVSIM looks by default."""
    return openscene_data_root(data_root) / DEFAULT_SYNTHETIC_SPLIT / SCENE_PICKLES_DIR


def listed(tokens: list[str]) -> str:
    """Up to ten tokens and how many more, for one-line reports."""
    shown = ", ".join(tokens[:MAX_LISTED])
    return shown + (f", ... ({len(tokens) - MAX_LISTED} more)" if len(tokens) > MAX_LISTED else "")


@dataclass
class TwoStageScenes:
    """Both stages of a two-stage split as loaded, and what the mapping names that nothing provides."""

    split: Split
    stage_one: SceneLoader
    stage_two: dict[str, SyntheticScene]  # token -> scene
    synthetic_dir: Path
    missing_stage_one: list[str] = field(default_factory=list)
    missing_stage_two: list[str] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def missing_report(self) -> str | None:
        """One line naming the mapping's tokens without a scene (None when every token has one)."""
        parts = []
        if self.missing_stage_two:
            parts.append(
                f"{len(self.missing_stage_two)} synthetic tokens of reactive_all_mapping have no scene in "
                f"{self.synthetic_dir}: {listed(self.missing_stage_two)}"
            )
        if self.missing_stage_one:
            parts.append(
                f"{len(self.missing_stage_one)} stage-one tokens are in no log window: {listed(self.missing_stage_one)}"
            )
        return f"split {self.split.name}: " + "; ".join(parts) if parts else None


def load_two_stage_scenes(
    split: Split,
    data_root: str | os.PathLike | None = None,
    synthetic_dir: str | os.PathLike | None = None,
    synthetic_sensor_root: str | os.PathLike | None = None,
) -> TwoStageScenes:
    """Load a two-stage split's stage-one scenes and synthetic follow-ups (see the module docstring).

    ``synthetic_sensor_root``: where the synthetic scenes' camera images lie (their frames' ``cameras`` are
    resolved under it; NAVSIM: ``<data root>/navhard_two_stage/sensor_blobs``).
    """
    if split.two_stage is None:
        raise NavsimEvalError(f"split {split.name}: not a two-stage split (no reactive_all_mapping)")
    synthetic_dir = Path(synthetic_dir) if synthetic_dir is not None else default_synthetic_scenes_dir(data_root)
    loader = SceneLoader(data_root, split.data_split, split.scene_filter)
    final_tokens = {loader.log_frames(token)[-1].token for token in loader.tokens}
    scene_filter = split.scene_filter
    found = synthetic_dir.is_dir()
    scenes, unreadable = read_synthetic_scenes(synthetic_dir, synthetic_sensor_root) if found else ({}, [])
    wanted = set(scene_filter.synthetic_scene_tokens) if scene_filter.synthetic_scene_tokens is not None else None
    logs = set(scene_filter.log_names) if scene_filter.log_names is not None else None
    kept = {
        token: scene
        for token, scene in scenes.items()
        if (token in wanted if wanted is not None else scene.corresponding_original_scene in final_tokens)
        and (logs is None or scene.scene.log_name in logs)
    }
    reactive = set(scene_filter.reactive_synthetic_initial_tokens or ())
    stage_two = {token: scene for token, scene in kept.items() if token in reactive}
    return TwoStageScenes(
        split=split,
        stage_one=loader,
        stage_two=stage_two,
        synthetic_dir=synthetic_dir,
        missing_stage_one=[t for t in split.stage_one_tokens() if t not in loader],
        missing_stage_two=[t for t in split.stage_two_tokens() if t not in stage_two],
        unreadable=unreadable,
    )
