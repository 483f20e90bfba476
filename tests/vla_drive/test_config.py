"""Experiment configs: YAML and dict round trips, the YAML presets, overrides, validation messages, the algorithm
section chosen by name, base inheritance, data-path and DeepSpeed checks, and the run record."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from navsim_eval.data.scene_filter import SceneFilter
from navsim_eval.data.splits import Split, write_split
from vla_drive.algorithms.dipole import DipoleConfig
from vla_drive.algorithms.registry import ALGORITHMS
from vla_drive.config import (
    ALGORITHM_NAMES,
    CONFIG_DIR,
    PRESETS,
    ConfigError,
    ExperimentConfig,
    UnknownPresetError,
    config_from_dict,
    config_to_dict,
    data_paths,
    get_preset,
    load_config,
    run_metadata,
    save_config,
    save_run_config,
    validate_config,
    validate_paths,
    with_synthetic_world,
)
from vla_drive.model.backbone import LoraSettings
from vla_drive.model.head import HeadConfig
from vla_drive.train.deepspeed_config import check_deepspeed_file, deepspeed_dict
from vla_drive.train.stages import check_run


def _error(*args, **kwargs) -> str:
    """The message of the ConfigError that load_config raises."""
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    return str(info.value)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("name", list(PRESETS))
def test_dict_round_trip(name):
    config = get_preset(name)
    data = config_to_dict(config)
    json.dumps(data)  # plain values only
    assert isinstance(data["model"]["cameras"], list)
    assert config_from_dict(data) == config


@pytest.mark.parametrize("name", list(PRESETS))
def test_yaml_round_trip(tmp_path, name):
    config = get_preset(name)
    path = save_config(config, tmp_path / "sub" / "config.yaml")
    assert load_config(path) == config
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary file left


def test_round_trip_keeps_types_and_nested_sections(tmp_path):
    config = load_config(
        "debug",
        ["model.lora.target_modules=[q_proj,v_proj]", "eval.omega=1", "train.backbone_learning_rate=1e-5", "name=1e5"],
    )
    loaded = load_config(save_config(config, tmp_path / "c.yaml"))
    assert loaded == config
    assert isinstance(loaded.model.lora, LoraSettings) and loaded.model.lora.target_modules == ("q_proj", "v_proj")
    assert isinstance(loaded.model.head, HeadConfig) and loaded.model.head.branches == ("pos", "neg")
    assert loaded.eval.omega == 1.0 and isinstance(loaded.eval.omega, float)
    assert loaded.model.cameras == ("CAM_F0",) and loaded.eval.omegas == (0.0, 1.0) and loaded.name == "1e5"
    assert "mixed_precision: 'no'" in (tmp_path / "c.yaml").read_text()


def test_partial_dict_keeps_defaults():
    config = config_from_dict({"model": {"head": {"depth": 2}}, "train": {"max_steps": 70}})
    default = ExperimentConfig()
    assert config.model.head == replace(HeadConfig(), depth=2)  # one set of head defaults: HeadConfig's
    assert config.train == replace(default.train, max_steps=70)
    assert load_config() == default


# ------------------------------------------------------------------------------------------------ presets


def test_presets_are_the_yaml_files_of_configs():
    assert set(PRESETS) >= {"debug", "debug-rl", "demo-imitation", "demo-dipole", "navsim-imitation", "navsim-dipole"}
    assert set(PRESETS) == {p.stem for p in CONFIG_DIR.glob("*.yaml")}
    for name in PRESETS:
        assert load_config(CONFIG_DIR / f"{name}.yaml") == get_preset(name) == load_config(name), name


def test_every_yaml_in_configs_loads():
    for path in CONFIG_DIR.glob("*.yaml"):
        load_config(path)


def test_presets_are_what_they_say():
    debug = get_preset("debug")
    assert debug.model.backbone.startswith("tiny-") and debug.data.synthetic_world and debug.train.max_steps <= 10
    for name in ("demo-imitation", "demo-dipole"):
        demo = get_preset(name)
        assert demo.data.synthetic_world and demo.distributed.backend == "none"
    for name in ("navsim-imitation", "navsim-dipole"):
        navsim = get_preset(name)
        assert not navsim.data.synthetic_world and "navtrain" in navsim.data.train_split
        assert navsim.model.backbone == "Qwen/Qwen2.5-VL-3B-Instruct" and navsim.train.mixed_precision == "bf16"
        assert (navsim.distributed.backend, navsim.distributed.zero_stage) == ("deepspeed", 2)
    assert get_preset("navsim-imitation").model.trainable == "lora"
    assert get_preset("demo-dipole").algorithm.name == get_preset("navsim-dipole").algorithm.name == "dipole"
    assert isinstance(get_preset("demo-dipole").algorithm, DipoleConfig)
    assert get_preset("debug") is not get_preset("debug")  # a fresh copy every time


def test_unknown_preset_suggests_the_closest_name():
    with pytest.raises(UnknownPresetError, match=r"unknown preset 'demo-dipol' \(did you mean 'demo-dipole'"):
        get_preset("demo-dipol")
    with pytest.raises(KeyError):
        get_preset("nope")
    with pytest.raises(ConfigError, match=r"no preset or config file named 'debgu' \(did you mean 'debug'"):
        load_config("debgu")


def test_missing_file_is_named(tmp_path):
    assert "no such config file" in _error(tmp_path / "missing.yaml")
    assert "did you mean 'debug.yaml'" in _error(tmp_path / "debug.yml")


# ------------------------------------------------------------------------------------------------ overrides


def test_overrides_of_every_kind():
    config = load_config(
        "debug",
        [
            "train.max_steps=20",
            "train.learning_rate=1e-4",  # YAML 1.2 float, not a string
            "train.mixed_precision=no",  # a string, not YAML 1.1 false
            "model.lora.r=16",
            "model.lora.target_modules=.*proj",
            "model.head.depth=2",
            "model.head.sampler=ddim",
            "model.head.clip_x0=3",
            "model.cameras=[CAM_F0,CAM_L0]",
            "data.max_train_scenes=null",
            "eval.omega=null",
            "eval.omegas=[0, 2]",
            "model.hidden_layers=[-2, -1]",
            "name=123",  # a string field takes the text
            "data.val_split=",  # "" = none
            "model.gradient_checkpointing=true",
            "train.loggers=[]",
            "distributed.zero_stage=3",
        ],
    )
    assert config.train.max_steps == 20 and config.train.learning_rate == 1e-4
    assert config.train.mixed_precision == "no"
    assert config.model.lora == LoraSettings(r=16, target_modules=".*proj")
    assert (config.model.head.depth, config.model.head.sampler, config.model.head.clip_x0) == (2, "ddim", 3.0)
    assert config.model.cameras == ("CAM_F0", "CAM_L0") and config.data.max_train_scenes is None
    assert config.eval.omega is None and config.eval.omegas == (0.0, 2.0)
    assert config.model.hidden_layers == (-2, -1) and config.name == "123" and config.data.val_split == ""
    assert config.model.gradient_checkpointing is True and config.train.loggers == ()
    assert config.distributed.zero_stage == 3


def test_overrides_apply_in_order_and_may_set_a_section():
    config = load_config("debug", ["train.max_steps=20", "train.max_steps=30", "model.lora={r: 4, alpha: 8}"])
    assert config.train.max_steps == 30
    assert config.model.lora == LoraSettings(r=4, alpha=8)


def test_override_without_equals_sign():
    assert "override 'train.max_steps': expected key.sub=value" in _error("debug", ["train.max_steps"])


# ------------------------------------------------------------------------------------------------ validation


def test_unknown_keys_suggest_the_closest_field(tmp_path):
    assert "override 'train.max_step=10': train.max_step: unknown field; did you mean 'train.max_steps'" in _error(
        "debug", ["train.max_step=10"]
    )
    assert "max_steps: unknown field; did you mean 'train.max_steps'?" in _error("debug", ["max_steps=10"])
    assert "model.lora.rank: unknown field; did you mean 'model.lora.r'" in _error("debug", ["model.lora.rank=4"])
    path = _write(tmp_path / "x.yaml", "train:\n  cameras: [CAM_F0]\n")
    assert f"{path}: train.cameras: unknown field; did you mean 'model.cameras'?" in _error(path)


def test_wrong_types_name_the_field_and_the_expectation():
    assert _error("debug", ["train.max_steps=ten"]) == (
        "override 'train.max_steps=ten': train.max_steps: expected an integer, got 'ten'"
    )
    assert "train.max_steps: expected an integer, got 2.5" in _error("debug", ["train.max_steps=2.5"])
    assert "train.learning_rate: expected a number, got 'fast'" in _error("debug", ["train.learning_rate=fast"])
    assert "train.learning_rate: expected a finite number, got nan" in _error("debug", ["train.learning_rate=.nan"])
    assert "model.include_history: expected true or false, got 'yes'" in _error("debug", ["model.include_history=yes"])
    assert "model.cameras: expected a list of strings, got 'CAM_F0'" in _error("debug", ["model.cameras=CAM_F0"])
    assert "model.hidden_layers[1]: expected an integer, got 'last'" in _error(
        "debug", ["model.hidden_layers=[0,last]"]
    )
    assert "eval.omega: expected a number or null, got 'high'" in _error("debug", ["eval.omega=high"])
    assert "data.val_split: expected a string, got null" in _error("debug", ["data.val_split=null"])
    assert "model: expected a mapping of model settings, got 3" in _error("debug", ["model=3"])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "model.trainable=lor",
            "model.trainable: expected one of frozen, lora, full, got 'lor' (did you mean 'lora'?)",
        ),
        ("train.lr_schedule=cosin", "train.lr_schedule: expected one of constant, linear, cosine, got 'cosin'"),
        ("train.mixed_precision=fp16", "train.mixed_precision: expected one of no, bf16, got 'fp16'"),
        ("distributed.backend=ds", "distributed.backend: expected one of none, deepspeed, got 'ds'"),
        ("distributed.zero_stage=4", "distributed.zero_stage: expected one of 0, 1, 2, 3, got 4"),
        ("algorithm.name=dipol", "algorithm.name: expected one of " + ", ".join(ALGORITHM_NAMES) + ", got 'dipol'"),
        ("algorithm.score_version=v3", "algorithm.score_version: expected one of v1, v2, got 'v3'"),
        ("eval.score_version=1", "eval.score_version: expected one of v1, v2, got '1' (did you mean 'v1'?)"),
        ("model.head.sampler=dpm", "model.head.sampler: expected one of ddpm, ddim, dpmpp_2m, euler, got 'dpm'"),
        ("train.loggers=[jsonl,wand]", "train.loggers[1]: expected one of jsonl, tensorboard, wandb, got 'wand'"),
        ("model.cameras=[CAM_X0]", "model.cameras[0]: expected one of CAM_F0, CAM_L0"),
        ("model.dtype=bf16", "model.dtype: expected one of auto, float32, bfloat16, float16, got 'bf16'"),
        ("model.attn_implementation=flash", "model.attn_implementation: expected one of sdpa, eager, flash_attention"),
        ("model.history_frames=4", "model.history_frames: expected one of 0, 1, 2, 3, got 4"),
    ],
)
def test_enumerations(override, expected):
    assert expected in _error("debug-rl", [override])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.max_steps=0", "train.max_steps: expected an integer >= 1, got 0"),
        ("train.batch_size=-2", "train.batch_size: expected an integer >= 1, got -2"),
        ("train.grad_accumulation=0", "train.grad_accumulation: expected an integer >= 1, got 0"),
        ("train.learning_rate=0", "train.learning_rate: expected a number > 0, got 0.0"),
        ("train.backbone_learning_rate=-1e-5", "train.backbone_learning_rate: expected a number > 0 or null"),
        ("train.keep_checkpoints=0", "train.keep_checkpoints: expected an integer >= 1, got 0"),
        ("train.max_grad_norm=-1", "train.max_grad_norm: expected a number >= 0, got -1.0"),
        ("train.warmup_steps=4", "train.warmup_steps: expected fewer than train.max_steps (4), got 4"),
        ("data.max_val_scenes=0", "data.max_val_scenes: expected an integer >= 1 or null, got 0"),
        ("model.cameras=[]", "model.cameras: backbone 'tiny-qwen2.5-vl' reads images; expected at least one camera"),
        ("model.cameras=[CAM_F0,CAM_F0]", "model.cameras: expected no repeated entries"),
        ("model.lora.dropout=1.0", "model.lora.dropout: expected a number in [0, 1), got 1.0"),
        ("model.head.num_heads=0", "model.head.num_heads: expected an integer >= 1, got 0"),
        ("model.head.num_heads=3", "model.head: HeadConfig: hidden_size 32 is not divisible by num_heads 3"),
        ("model.head.poses=10", "model.head.poses: expected 8"),
        ("model.head.sample_steps=0", "model.head.sample_steps: expected an integer >= 1, got 0"),
        ("eval.sample_steps=0", "eval.sample_steps: expected an integer >= 1 or null, got 0"),
        ("train.eval_every=-1", "train.eval_every: expected an integer >= 0, got -1"),
        ("algorithm.beta=0", "algorithm.beta: expected a number > 0, got 0.0"),
        ("eval.omegas=[0, -1]", "eval.omegas[1]: expected a number >= 0, got -1.0"),
        ("train.output_dir=", "train.output_dir: expected a non-empty string, got ''"),
    ],
)
def test_ranges(override, expected):
    message = _error("debug-rl", [override])
    assert expected in message
    assert message.startswith(f"override {override!r}: ")  # the override is named


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.feature_cache=cache", "model.trainable=lora"], "train.feature_cache: needs model.trainable 'frozen'"),
        (["distributed.deepspeed_config=ds.json"], "distributed.deepspeed_config: needs distributed.backend"),
        (["distributed.backend=deepspeed", "distributed.offload_params=true"], "needs distributed.zero_stage 3"),
        (["algorithm.name=dipole", "model.head.branches=[]"], "model.head.branches: algorithm 'dipole' trains the pos"),
        (
            ["algorithm.name=dipole", "algorithm.replay_iterations=2", "model.trainable=lora"],
            "algorithm.replay_iterations: needs model.trainable 'frozen'",
        ),
        (
            ["algorithm.name=dipole", "algorithm.update_epochs=3", "train.grad_accumulation=2"],
            "train.grad_accumulation: expected a divisor of algorithm.update_epochs x 1 minibatches (3), got 2",
        ),
        (["train.loggers=[wandb]", "train.wandb_project="], "train.wandb_project: expected a project name"),
        (
            ["model.cameras=[CAM_F0,CAM_L0,CAM_R0]", "model.max_pixels=[1000,2000]"],
            "model.max_pixels: expected one budget for every camera or one per camera (3",
        ),
        (["model.max_pixels=[0]"], "model.max_pixels: expected pixel counts >= 1, got [0]"),
        (["model.max_pixels=[900]", "model.min_pixels=1000"], "model.min_pixels: expected at most every max_pixels"),
    ],
)
def test_rules_between_fields(overrides, expected):
    assert expected in _error("debug", overrides)


def test_all_problems_are_reported_together():
    with pytest.raises(ConfigError) as info:
        load_config("debug", ["train.max_steps=ten", "train.lr_schedule=cosin", "train.nope=1"])
    assert str(info.value).startswith("3 problems:")
    assert len(info.value.problems) == 3


def test_file_errors_name_the_file_and_line(tmp_path):
    bad = _write(tmp_path / "bad.yaml", "train:\n  max_steps: [1\n")
    assert _error(bad).startswith(f"{bad}:3: not valid YAML")
    listing = _write(tmp_path / "list.yaml", "- 1\n")
    assert "expected a mapping of the config settings" in _error(listing)
    typed = _write(tmp_path / "typed.yaml", "train:\n  max_steps: ten\n")
    assert _error(typed) == f"{typed}: train.max_steps: expected an integer, got 'ten'"


def test_validate_config_checks_configs_built_in_code():
    config = get_preset("debug")
    validate_config(config)
    config.train = replace(config.train, max_steps="10")
    with pytest.raises(ConfigError, match=r"train.max_steps: expected an integer, got '10'"):
        validate_config(config)


# ------------------------------------------------------------------------------------------------ algorithm section


def test_the_algorithm_name_picks_its_config_class_and_its_fields():
    config = load_config("debug", ["algorithm.name=dipole", "algorithm.beta=2.5"])
    assert isinstance(config.algorithm, DipoleConfig) and config.algorithm.beta == 2.5
    assert config.algorithm.rollout_steps == DipoleConfig().rollout_steps  # unset fields: the class defaults
    assert set(ALGORITHM_NAMES) == set(ALGORITHMS) and "bc" in ALGORITHM_NAMES and "dipole" in ALGORITHM_NAMES


def test_a_field_of_another_algorithm_is_refused_naming_the_algorithm():
    message = _error("debug", ["algorithm.rollout_omega=2"])
    assert message == (
        "override 'algorithm.rollout_omega=2': algorithm.rollout_omega: not a setting of algorithm 'bc' "
        "(algorithm 'dipole' has it)"
    )
    assert "(algorithm 'dipole' or 'awr' or 'rwr' has it)" in _error("debug", ["algorithm.beta=2"])
    assert "algorithm.bta: not a setting of algorithm 'dipole'; did you mean 'algorithm.beta'?" in _error(
        "debug-rl", ["algorithm.bta=2"]
    )
    assert "configs/demo-dipole.yaml: algorithm.beta: not a setting of algorithm 'bc'" in _error(
        "demo-dipole", ["algorithm.name=bc"]
    )


def test_an_unknown_algorithm_lists_the_registered_ones():
    message = _error("debug", ["algorithm.name=no_such_algorithm"])
    assert message == (
        "override 'algorithm.name=no_such_algorithm': algorithm.name: expected one of "
        + ", ".join(ALGORITHMS)
        + ", got 'no_such_algorithm'"
    )


# ------------------------------------------------------------------------------------------------ base inheritance


def test_base_file_and_preset_inheritance(tmp_path):
    _write(tmp_path / "parent.yaml", "base: debug\nname: parent\ntrain:\n  max_steps: 8\n  batch_size: 3\n")
    child = _write(tmp_path / "sub" / "child.yaml", "base: ../parent.yaml\nname: child\ntrain:\n  max_steps: 9\n")
    config = load_config(child, ["train.log_every=2"])
    expected = get_preset("debug")
    expected = replace(expected, name="child", train=replace(expected.train, max_steps=9, batch_size=3, log_every=2))
    assert config == expected


def test_base_errors(tmp_path):
    loop = _write(tmp_path / "a.yaml", "base: b.yaml\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\n")
    assert "includes itself" in _error(loop)
    typo = _write(tmp_path / "typo.yaml", "base: debgu\n")
    assert f"{typo}: base: no preset or file named 'debgu' (did you mean 'debug'" in _error(typo)
    assert "no such config file" in _error(_write(tmp_path / "gone.yaml", "base: missing.yaml\n"))
    _write(tmp_path / "parent.yaml", "train:\n  max_step: 3\n")
    child = _write(tmp_path / "child.yaml", "base: parent.yaml\n")
    assert f"{tmp_path / 'parent.yaml'}: train.max_step: unknown field" in _error(child)


# ------------------------------------------------------------------------------------------------ paths


def test_validate_paths_names_the_missing_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENSCENE_DATA_ROOT", raising=False)
    monkeypatch.setenv("NUPLAN_MAPS_ROOT", str(tmp_path))
    monkeypatch.setenv("NAVSIM_DEVKIT_ROOT", str(tmp_path / "devkit"))
    config = load_config("navsim-dipole")
    with pytest.raises(ConfigError) as info:
        validate_paths(config)
    message = str(info.value)
    assert "data.data_root: not set and $OPENSCENE_DATA_ROOT is not set" in message
    assert f"data.train_split: split file '{tmp_path}/devkit/navsim/planning/" in message
    assert "train.init_from: model directory 'runs/navsim-imitation/model' does not exist" in message
    assert "data.maps_root" not in message
    monkeypatch.delenv("NAVSIM_DEVKIT_ROOT")
    with pytest.raises(ConfigError, match=r"data.val_split: \$NAVSIM_DEVKIT_ROOT is not set"):
        validate_paths(config)


def test_validate_paths_accepts_real_layouts_and_checks_split_files(tmp_path):
    splits = tmp_path / "splits"
    write_split(splits, Split("train", "trainval", SceneFilter(), "train"))
    (tmp_path / "maps").mkdir()
    overrides = [f"data.data_root={tmp_path}", f"data.maps_root={tmp_path}/maps", "data.val_split="]
    config = load_config("debug", [*overrides, "data.synthetic_world=", f"data.train_split={splits}/train.yaml"])
    with pytest.raises(ConfigError, match=r"data.train_split: its data_split 'trainval' reads .*navsim_logs/trainval"):
        validate_paths(config)
    (tmp_path / "navsim_logs" / "trainval").mkdir(parents=True)
    validate_paths(config)
    assert data_paths(config).train_split == splits / "train.yaml" and data_paths(config).val_split is None
    _write(splits / "broken.yaml", "data_split: trainval\n")
    broken = replace(config, data=replace(config.data, train_split=str(splits / "broken.yaml")))
    with pytest.raises(ConfigError, match=r"data.train_split: .*broken.yaml: expected 'defaults"):
        validate_paths(broken)


def test_synthetic_world_paths_may_be_missing(tmp_path):
    config = with_synthetic_world(get_preset("debug"), tmp_path / "world")
    assert config.data.train_split == f"{tmp_path}/world/splits/synthetic_train.yaml"
    validate_paths(config)  # nothing exists yet: the world will be generated
    outside = replace(config, data=replace(config.data, val_split=str(tmp_path / "elsewhere.yaml")))
    with pytest.raises(ConfigError, match=r"outside data\.synthetic_world"):
        validate_paths(outside)
    resume = load_config("debug", [f"train.resume={tmp_path}/ckpt"])
    with pytest.raises(ConfigError, match=r"train.resume: checkpoint .*ckpt' does not exist"):
        validate_paths(with_synthetic_world(resume, tmp_path / "world"))


# ------------------------------------------------------------------------------------------------ DeepSpeed


def test_deepspeed_dict_follows_the_config():
    config = load_config("navsim-imitation", ["train.grad_accumulation=2", "train.max_grad_norm=0.5"])
    ds = deepspeed_dict(config, world_size=4)
    assert ds["train_batch_size"] == 8 * 2 * 4 and ds["train_micro_batch_size_per_gpu"] == 8
    assert ds["gradient_accumulation_steps"] == 2 and ds["gradient_clipping"] == 0.5
    assert ds["zero_optimization"]["stage"] == 2 and ds["bf16"] == {"enabled": True}
    assert "optimizer" not in ds and "offload_optimizer" not in ds["zero_optimization"]
    z3 = load_config("navsim-imitation", ["distributed.zero_stage=3", "distributed.offload_params=true"])
    zero = deepspeed_dict(z3, 1)["zero_optimization"]
    assert zero["offload_param"]["device"] == "cpu" and zero["stage3_gather_16bit_weights_on_model_save"]


def _ds_config(tmp_path: Path, data: dict, *overrides: str):
    path = _write(tmp_path / "ds.json", json.dumps(data))
    return load_config("navsim-imitation", [f"distributed.deepspeed_config={path}", *overrides])


def test_deepspeed_file_contradictions_are_refused(tmp_path):
    assert check_deepspeed_file(get_preset("navsim-imitation")) is None
    contradicting = {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 2,
        "gradient_clipping": 0.5,
        "zero_optimization": {"stage": 3},
        "bf16": {"enabled": False},
    }
    with pytest.raises(ConfigError) as info:
        check_deepspeed_file(_ds_config(tmp_path, contradicting))
    problems = info.value.problems
    assert len(problems) == 5
    label = f"distributed.deepspeed_config '{tmp_path / 'ds.json'}'"
    assert f"{label}: 'train_micro_batch_size_per_gpu' is 4 but train.batch_size is 8" in problems
    assert f"{label}: 'gradient_accumulation_steps' is 2 but train.grad_accumulation is 1" in problems
    assert f"{label}: 'gradient_clipping' is 0.5 but train.max_grad_norm is 1.0" in problems
    assert f"{label}: 'zero_optimization.stage' is 3 but distributed.zero_stage is 2" in problems
    assert f"{label}: 'bf16.enabled' is false but train.mixed_precision is 'bf16'" in problems
    with pytest.raises(ConfigError, match=r"'train_batch_size' is 64 but train\.batch_size x train\.grad_accumulation"):
        check_deepspeed_file(_ds_config(tmp_path, {"train_batch_size": 64}), world_size=4)
    with pytest.raises(ConfigError, match=r"remove the 'optimizer' block; the trainer builds AdamW"):
        check_deepspeed_file(_ds_config(tmp_path, {"optimizer": {"type": "AdamW", "params": {"lr": 3e-4}}}))
    with pytest.raises(ConfigError, match=r"'fp16\.enabled' is true"):
        check_deepspeed_file(_ds_config(tmp_path, {"fp16": {"enabled": True}}))
    with pytest.raises(ConfigError, match=r"'zero_optimization.offload_optimizer.device' is 'cpu' but"):
        check_deepspeed_file(_ds_config(tmp_path, {"zero_optimization": {"offload_optimizer": {"device": "cpu"}}}))
    with pytest.raises(ConfigError, match=r"'zero_optimization\.stage' is 3"):  # checked before a run builds anything
        check_run(with_synthetic_world(_ds_config(tmp_path, {"zero_optimization": {"stage": 3}}), tmp_path))


def test_deepspeed_file_auto_values_are_filled_from_the_config(tmp_path):
    auto = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": {"stage": "auto", "overlap_comm": True},
        "bf16": {"enabled": "auto"},
    }
    resolved = check_deepspeed_file(_ds_config(tmp_path, auto), world_size=2)
    assert resolved["train_batch_size"] == 16 and resolved["train_micro_batch_size_per_gpu"] == 8
    assert resolved["gradient_accumulation_steps"] == 1 and resolved["gradient_clipping"] == 1.0
    assert resolved["zero_optimization"] == {"stage": 2, "overlap_comm": True} and resolved["bf16"]["enabled"] is True
    assert "train_batch_size" not in check_deepspeed_file(_ds_config(tmp_path, auto))  # DeepSpeed derives it
    agreeing = {"train_micro_batch_size_per_gpu": 8, "zero_optimization": {"stage": 2}, "gradient_clipping": 1}
    assert check_deepspeed_file(_ds_config(tmp_path, agreeing))["bf16"] == {"enabled": True}


def test_deepspeed_file_read_errors(tmp_path):
    (tmp_path / "ds.json").write_text("{not json")
    config = load_config("navsim-imitation", [f"distributed.deepspeed_config={tmp_path}/ds.json"])
    with pytest.raises(ConfigError, match=r"ds.json': not valid JSON \(line 1"):
        check_deepspeed_file(config)
    (tmp_path / "ds.json").unlink()
    with pytest.raises(ConfigError, match=r"ds.json': no such file"):
        check_deepspeed_file(config)


# ------------------------------------------------------------------------------------------------ run record


def test_save_run_config_writes_config_and_versions(tmp_path):
    config = load_config("debug", ["train.max_steps=3", "train.warmup_steps=0"])
    run_dir = save_run_config(config, tmp_path / "run")
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "versions.json"]
    assert load_config(run_dir / "config.yaml") == config
    versions = json.loads((run_dir / "versions.json").read_text())
    assert versions == json.loads(json.dumps(run_metadata()))
    for package in ("python", "torch", "transformers", "peft", "accelerate", "numpy", "vla_drive"):
        assert isinstance(versions[package], str), package


def test_backbone_and_input_settings_of_the_model_section(tmp_path):
    config = load_config(
        "debug",
        [
            "model.dtype=bfloat16",
            "model.attn_implementation=eager",
            "model.trust_remote_code=true",
            "model.cameras=[CAM_F0,CAM_L0]",
            "model.max_pixels=[50176,12544]",
            "model.min_pixels=3136",
            "model.history_frames=3",
            "model.ego_status=false",
        ],
    )
    model = config.model
    assert (model.dtype, model.attn_implementation, model.trust_remote_code) == ("bfloat16", "eager", True)
    assert model.max_pixels == (50176, 12544) and model.min_pixels == 3136
    assert model.history_frames == 3 and model.ego_status is False
    assert load_config(save_config(config, tmp_path / "run.yaml")) == config


# ------------------------------------------------------------------------------------------------ placeholders


def test_path_placeholders_name_other_config_values():
    config = load_config("debug-rl", ["algorithm.name=genpo"])
    assert config.train.output_dir == "runs/debug-rl-genpo"
    assert config.train.init_from == "runs/debug-coupled_flow/model" and config.train.init_preset == "debug"
    assert load_config("debug-rl", ["algorithm.name=fpo"]).train.init_from == "runs/debug-diffusion/model"
    assert load_config("debug-rl", ["train.output_dir=x/{train.seed}"]).train.output_dir == "x/0"
    kept = load_config("debug", ["train.output_dir=${HOME}/runs"]).train.output_dir  # an environment variable
    assert kept == "${HOME}/runs"
    assert "train.output_dir: {algorithm.nme} names no config value" in _error(
        "debug-rl", ["train.output_dir=runs/{algorithm.nme}"]
    )


def test_init_preset_needs_a_model_folder_and_a_known_preset(tmp_path):
    from vla_drive.config import validate_paths, with_synthetic_world

    config = with_synthetic_world(load_config("debug-rl", ["train.init_from=runs/imitation"]), tmp_path / "world")
    with pytest.raises(ConfigError, match=r"train\.init_from: expected a path ending in /model"):
        validate_paths(config)
    config = with_synthetic_world(load_config("debug-rl", ["train.init_preset=no-such-preset"]), tmp_path / "world")
    with pytest.raises(ConfigError, match=r"train\.init_preset: preset or config file .* does not exist"):
        validate_paths(config)


def test_the_initial_model_is_the_preset_with_the_algorithms_head_kind():
    from vla_drive.train.run import initial_model_config

    config = load_config("debug-rl", ["algorithm.name=genpo", "distributed.backend=deepspeed"])
    initial = initial_model_config(config)
    assert initial.algorithm.name == "bc" and initial.model.head.kind == "coupled_flow"
    assert initial.train.output_dir == "runs/debug-coupled_flow" and initial.distributed == config.distributed


def test_model_overrides_of_an_rl_run_reach_the_start_it_trains_first():
    from vla_drive.train.run import initial_model_config

    config = load_config("demo-genpo", ["model.head.depth=3", "model.head.sample_steps=7"])
    initial = initial_model_config(config)
    assert (initial.model.head.depth, initial.model.head.sample_steps) == (3, 7), "the start ignored model.* overrides"
    assert initial.algorithm.name == "bc" and initial.train.max_steps == load_config("demo-imitation").train.max_steps


@pytest.mark.parametrize("name", ["awr", "rwr", "diffgrpo", "dppo", "fpo", "genpo"])
def test_every_algorithm_has_a_demo_preset(name):
    config = load_config(f"demo-{name}")
    assert config.algorithm.name == name and config.train.init_preset == "demo-imitation"
    assert config.train.init_from.endswith("/model") and config.train.output_dir == f"runs/demo-{name}"
