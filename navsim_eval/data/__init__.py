"""OpenScene / NAVSIM data: log pickles, scene filters, split files, dataset paths and the scene loader."""

from navsim_eval.data.loader import LoadReport, SceneLoader, SkipRecord
from navsim_eval.data.openscene import (
    CAMERA_NAMES,
    Annotations,
    Camera,
    LogFrame,
    decode_frame,
    load_log_pickle,
    quaternion_yaw,
    read_log,
)
from navsim_eval.data.openscene_writer import (
    canonical_frames,
    encode_frame,
    write_log,
    write_split_log,
    yaw_to_quaternion,
)
from navsim_eval.data.paths import DatasetPathError, OpenScenePaths
from navsim_eval.data.scene_filter import SceneFilter, SceneFilterError, filter_scenes
from navsim_eval.data.splits import Split, load_split, read_scene_filter, write_scene_filter, write_split

__all__ = [
    "CAMERA_NAMES",
    "Annotations",
    "Camera",
    "DatasetPathError",
    "LoadReport",
    "LogFrame",
    "OpenScenePaths",
    "SceneFilter",
    "SceneFilterError",
    "SceneLoader",
    "SkipRecord",
    "Split",
    "canonical_frames",
    "decode_frame",
    "encode_frame",
    "filter_scenes",
    "load_log_pickle",
    "load_split",
    "quaternion_yaw",
    "read_log",
    "read_scene_filter",
    "write_log",
    "write_scene_filter",
    "write_split",
    "write_split_log",
    "yaw_to_quaternion",
]
