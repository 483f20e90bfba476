"""A NAVSIM agent for a saved vla-drive model, so that the official ``run_pdm_score.py`` (and the submission
script) can run it: ``agent=vla_drive`` with ``_target_: vla_drive.navsim_agent.VLADriveAgent``.

navsim is optional: this module imports without it. When ``navsim.agents.abstract_agent`` is importable,
:class:`VLADriveAgent` subclasses its ``AbstractAgent`` (v1.1's ``__init__(requires_scene)`` and v2's
``__init__(trajectory_sampling, requires_scene)`` both work); otherwise instantiating it raises an ImportError that
says what to install. Hydra config for the official scripts::

    _target_: vla_drive.navsim_agent.VLADriveAgent
    model_dir: /path/to/exported/model      # vla-drive export --model ... --out ...
    omega: null                             # the model's chosen guidance omega
    steps: null                             # the model's default denoising steps
    seed: 0                                 # with each scene's token: the noise of its sample (as vla-drive eval)
    requires_scene: true                    # the token comes from the scene; false: from a hash of the inputs
    device: null                            # null: cuda when available, else cpu

Seeding: with ``requires_scene: true`` (what ``run_pdm_score.py`` supports) the official scripts pass the scene, and
the agent seeds each scene by its token exactly as ``vla-drive eval`` does, so both give the same trajectories. The
official ``run_create_submission_pickle.py`` refuses agents that require the scene: there set it to false; each
scene is then seeded by a hash of its inputs (``vla-drive submit`` writes leaderboard pickles without navsim and
seeds by token).
"""

from __future__ import annotations

import importlib
import inspect
import os
import zlib
from typing import Any

import numpy as np
from PIL import Image

CURRENT_FRAME = -1  # AgentInput lists the history frames oldest first; the last is the current frame


class _AgentLogic:
    """What the agent does, independent of navsim's base class (see :func:`_build_agent_class`)."""

    def _setup(
        self,
        model_dir: str | os.PathLike[str],
        omega: float | None,
        steps: int | None,
        seed: int | None,
        device: str | None,
    ) -> None:
        self.model_dir = str(model_dir)
        self.omega, self.steps, self.seed, self.device_name = omega, steps, seed, device
        self.model = None

    def name(self) -> str:
        return "vla_drive"

    def initialize(self) -> None:
        """Load the model (called once per worker by the official scripts)."""
        import torch

        from vla_drive.model.vla import DrivingVLA

        device = self.device_name or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = DrivingVLA.from_pretrained(self.model_dir).to(device).eval()

    def get_sensor_config(self):
        """The model's cameras at the current frame (and its history frames), no LiDAR."""
        config = {name: False for name in _SENSOR_NAMES}
        cameras, history = self._cameras()
        for camera in cameras:
            config[camera.lower()] = list(range(NUM_HISTORY_FRAMES - 1 - history, NUM_HISTORY_FRAMES))
        return _navsim().SensorConfig(**config)

    def compute_trajectory(self, agent_input, scene=None):
        """The model's trajectory (8 poses, 0.5 s apart, current ego frame) for an AgentInput (and its scene, whose
        token seeds the sample when the agent requires the scene)."""
        if self.model is None:
            self.initialize()
        sample = agent_input_to_sample(agent_input, self.model)
        if scene is not None:
            sample.token = scene.scene_metadata.initial_token
        else:
            sample.token = f"inputs-{_input_key(sample)}"
        poses = self.model.predict([sample], 1, self.steps, self.omega, seed=self.seed)[0, 0].astype(np.float32)
        official = _navsim()
        sampling = getattr(self, "_trajectory_sampling", None) or official.TrajectorySampling(
            num_poses=8, interval_length=0.5
        )
        return official.Trajectory(poses, sampling)

    def _cameras(self) -> tuple[tuple[str, ...], int]:
        """The model's cameras and how many past frames of each it reads."""
        if self.model is not None:
            config = self.model.config
        else:
            from vla_drive.model.vla import read_model_config

            config = read_model_config(self.model_dir)
        return tuple(config.cameras), config.history_frames


NUM_HISTORY_FRAMES = 4
_SENSOR_NAMES = ("cam_f0", "cam_l0", "cam_l1", "cam_l2", "cam_r0", "cam_r1", "cam_r2", "cam_b0", "lidar_pc")


def agent_input_to_sample(agent_input: Any, model) -> Any:
    """A :class:`DrivingSample` from a navsim AgentInput (images of the current and history frames the model reads,
    ego status, past poses)."""
    from vla_drive.data.dataset import sample_from_parts

    statuses = agent_input.ego_statuses
    current = statuses[CURRENT_FRAME]
    history = model.config.history_frames
    images = []
    for camera in model.config.cameras:
        for frames_ago in range(history, -1, -1):
            frame = len(agent_input.cameras) - 1 - frames_ago
            image = getattr(agent_input.cameras[frame], camera.lower()).image if frame >= 0 else None
            if image is None:
                raise ValueError(
                    f"AgentInput has no {camera} image {frames_ago} frames before the current one: include it in the "
                    "sensor config (get_sensor_config asks for it)"
                )
            images.append(Image.fromarray(np.asarray(image, dtype=np.uint8)))
    past = None
    if model.config.include_history and len(statuses) > 1:
        past = np.array([np.asarray(s.ego_pose, dtype=np.float64) for s in statuses[:CURRENT_FRAME]])
    return sample_from_parts(
        "agent_input",
        images,
        current.ego_velocity,
        current.ego_acceleration,
        current.driving_command,
        model.backbone.processor,
        model.config.cameras,
        past,
        model.image_sizing,
        history,
        model.config.ego_status,
    )


def _input_key(sample: Any) -> int:
    """A number fixed by the scene's inputs (ego status and prompt), standing in for the token when the scene is not
    given, so a scene gets the same trajectory whichever worker and in whatever order the official scripts run it."""
    payload = np.asarray(sample.ego_status, dtype=np.float32).tobytes() + sample.prompt.encode()
    return zlib.crc32(payload) % (2**31)


def _navsim():
    """The official classes the agent needs (imported on use, so this module imports without navsim)."""
    from types import SimpleNamespace

    dataclasses = importlib.import_module("navsim.common.dataclasses")
    sampling = importlib.import_module("nuplan.planning.simulation.trajectory.trajectory_sampling")
    return SimpleNamespace(
        SensorConfig=dataclasses.SensorConfig,
        Trajectory=dataclasses.Trajectory,
        TrajectorySampling=sampling.TrajectorySampling,
    )


def _build_agent_class(abstract_agent: type) -> type:
    """``VLADriveAgent`` on navsim's ``AbstractAgent`` (whichever constructor signature it has)."""
    takes_sampling = "trajectory_sampling" in inspect.signature(abstract_agent.__init__).parameters

    class VLADriveAgent(_AgentLogic, abstract_agent):
        """Runs a saved vla-drive DrivingVLA as a NAVSIM agent (the scene, when given, only for its token)."""

        def __init__(
            self,
            model_dir: str,
            omega: float | None = None,
            steps: int | None = None,
            seed: int | None = 0,
            device: str | None = None,
            trajectory_sampling: Any = None,
            requires_scene: bool = True,
        ) -> None:
            if takes_sampling:
                sampling = trajectory_sampling or _navsim().TrajectorySampling(num_poses=8, interval_length=0.5)
                abstract_agent.__init__(self, trajectory_sampling=sampling, requires_scene=requires_scene)
                self._trajectory_sampling = sampling
            else:
                abstract_agent.__init__(self, requires_scene=requires_scene)
            self._setup(model_dir, omega, steps, seed, device)

    VLADriveAgent.__module__ = __name__
    return VLADriveAgent


def _missing_navsim_agent(error: ImportError) -> type:
    class VLADriveAgent:
        """Placeholder: navsim is not installed."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise ImportError(
                "vla_drive.navsim_agent.VLADriveAgent needs the official navsim (github.com/autonomousvision/navsim, "
                f"with nuplan-devkit) installed in this environment; importing it failed: {error}"
            )

    return VLADriveAgent


try:
    _ABSTRACT_AGENT = importlib.import_module("navsim.agents.abstract_agent").AbstractAgent
except (ImportError, AttributeError) as _error:  # navsim missing (or the unrelated PyPI package of that name)
    VLADriveAgent = _missing_navsim_agent(ImportError(str(_error)))
    NAVSIM_AVAILABLE = False
else:
    VLADriveAgent = _build_agent_class(_ABSTRACT_AGENT)
    NAVSIM_AVAILABLE = True
