"""Model tests use tiny networks: one intra-op thread is fastest, and robust when the machine is busy."""

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")  # the suite never reaches W&B's servers


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
