"""Typed experiment configs: the schema (:mod:`.schema`), reading and validating YAML with overrides
(:mod:`.loader`), data paths (:mod:`.paths`) and the run record (:mod:`.record`). Presets are the YAML files in
``configs/``."""

from vla_drive.config.loader import (
    CONFIG_DIR,
    PRESETS,
    ConfigError,
    UnknownPresetError,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    get_preset,
    load_config,
    save_config,
    validate_config,
)
from vla_drive.config.paths import DataPaths, data_paths, synthetic_data, validate_paths, with_synthetic_world
from vla_drive.config.record import RUN_CONFIG_FILE, run_metadata, save_run_config
from vla_drive.config.schema import (
    ALGORITHM_NAMES,
    DataConfig,
    DistributedConfig,
    EvalConfig,
    ExperimentConfig,
    TrainConfig,
)

__all__ = [
    "ALGORITHM_NAMES",
    "CONFIG_DIR",
    "PRESETS",
    "RUN_CONFIG_FILE",
    "ConfigError",
    "DataConfig",
    "DataPaths",
    "DistributedConfig",
    "EvalConfig",
    "ExperimentConfig",
    "TrainConfig",
    "UnknownPresetError",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "data_paths",
    "get_preset",
    "load_config",
    "run_metadata",
    "save_config",
    "save_run_config",
    "synthetic_data",
    "validate_config",
    "validate_paths",
    "with_synthetic_world",
]
