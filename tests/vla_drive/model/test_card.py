"""The generated model card: what the directory holds, the model's facts, evaluation tables added later."""

from __future__ import annotations

import json
import re

import pytest

from vla_drive.model.card import (
    CARD_FILE,
    EVALUATIONS_FILE,
    model_files,
    read_evaluations,
    record_evaluation,
    record_sweep,
)
from vla_drive.model.head import HeadConfig
from vla_drive.model.vla import MODEL_CONFIG_FILE, DrivingVLA, VLAConfig, store_guidance_omega

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    config = VLAConfig(
        trainable="lora",
        cameras=("CAM_F0", "CAM_L0"),
        max_pixels=(3136,),
        history_frames=2,
        ego_status=False,
        head=HeadConfig(hidden_size=32, depth=1, num_heads=2),
    )
    model = DrivingVLA.build(config)
    model.training_record = dict(experiment="demo-dipole", algorithm="dipole", steps=300, train_split="navtrain")
    return model.save_pretrained(tmp_path_factory.mktemp("card") / "run" / "model")


def _card(directory) -> str:
    return (directory / CARD_FILE).read_text()


def test_the_card_lists_what_the_directory_holds(saved):
    card = _card(saved)
    listed = set(re.findall(r"^\| `([^`]+)` \|", card, flags=re.MULTILINE))
    files = {path.as_posix() for path in model_files(saved)}
    assert files == listed, f"card lists {sorted(listed ^ files)} differently from the directory"
    assert {"vla_config.json", "head.safetensors", "normalizer.json", "README.md"} <= files
    assert any(f.startswith("backbone/") and f.endswith(".safetensors") for f in files)


def test_the_card_states_the_models_facts(saved):
    card = _card(saved)
    assert card.startswith("---\nlibrary_name: vla-drive\n") and "\n# run\n" in card
    assert "| base model | `tiny-qwen2.5-vl` |" in card
    assert "LoRA r=8 alpha=16 on the language model" in card
    assert "CAM_F0, CAM_L0; the current frame and 2 past frame(s) each; at most 3136 pixels per image" in card
    assert "no ego status (ablated)" in card
    assert "DiT 32 x 1 blocks, vp_cosine path, v target, dpmpp_2m sampler with 10 steps" in card
    assert "guidance branches pos, neg" in card
    assert "| algorithm | dipole, 300 steps (experiment `demo-dipole`) on `navtrain` |" in card
    assert "| guidance omega | 0 |" in card and "Not evaluated yet" in card


def test_evaluations_and_the_sweep_update_the_card(saved, tmp_path):
    import shutil

    directory = shutil.copytree(saved, tmp_path / "model")
    metrics = {"no_at_fault_collisions": 0.98, "ego_progress": 0.81, "score": 0.873, "score_with_missing_as_zero": 0.8}
    record_evaluation(
        directory, split="navtest", version="v1", metrics=metrics, scenes=12, missing=1, omega=0.0, steps=10, seed=0
    )
    card = _card(directory)
    assert "PDMS (NAVSIM v1.1), one trajectory per scene:" in card
    assert "| navtest | **0.8730** | 0.9800 | 0.8100 | 12 | 1 | 0 | 10 | 0 |" in card
    record_evaluation(
        directory,
        split="navtest",
        version="v1",
        metrics={**metrics, "score": 0.9},
        scenes=12,
        missing=0,
        omega=1.5,
        steps=10,
        seed=0,
    )
    assert len(read_evaluations(directory)["evaluations"]) == 1, "the same split and version is replaced"
    rows = [{"omega": 0.0, "score": 0.87}, {"omega": 1.5, "score": 0.9}]
    record_sweep(directory, split="navval", version="v1", rows=rows, chosen=1.5, temperature=0.0)
    store_guidance_omega(directory, 1.5)
    card = _card(directory)
    line = "| guidance omega | 1.5 (chosen by a sweep on `navval`, PDMS (NAVSIM v1.1), at sampler temperature 0) |"
    assert line in card
    assert "sampler temperature 0: evaluate at the same temperature" in card
    assert "| score | 0.8700 | 0.9000 |" in card and "chosen omega: 1.5" in card
    assert f"| `{EVALUATIONS_FILE}` |" in card
    assert DrivingVLA.from_pretrained(directory).config.guidance_omega == 1.5  # checksums still hold


def test_a_re_save_starts_a_fresh_record_and_keeps_the_training(saved, tmp_path):
    model = DrivingVLA.from_pretrained(saved)
    assert model.training_record["algorithm"] == "dipole"
    directory = model.save_pretrained(tmp_path / "again")
    assert not (directory / EVALUATIONS_FILE).exists()
    assert json.loads((directory / MODEL_CONFIG_FILE).read_text())["training"]["steps"] == 300
    assert "\n# again\n" in _card(directory)
