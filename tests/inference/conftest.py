"""One fp32 all-MiniLM load for the folder (seconds each): tests build services around it."""

from __future__ import annotations

import os

import pytest

from neurons.inference.config import InferenceConfig
from neurons.inference.model import Encoder, load_encoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def minilm() -> Encoder:
    return load_encoder(InferenceConfig())
