from __future__ import annotations

from pathlib import Path

import pytest

from neurons.hardware.locate import locate_gguf


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return locate_gguf("smollm2:135m", Path("/nonexistent"), Path("/nonexistent"))


@pytest.fixture(scope="session")
def gemma3_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return locate_gguf("gemma3:270m", Path("/nonexistent"), tmp_path_factory.mktemp("cache"))
