"""OllamaModelManager: plugins from entry points and from a package, load_model's checks."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from neurons.errors import PluginError
from neurons.plugins import OllamaModelManager, OllamaModelPlugin, PluginHost, hookimpl


@pytest.fixture
def manager(host: PluginHost) -> OllamaModelManager:
    return OllamaModelManager(plugin_manager=host)


def test_example_model_plugin_comes_from_its_entry_point(manager: OllamaModelManager) -> None:
    from neurons_example_plugin import SmolLM2Plugin

    assert manager.discovered_plugins == [SmolLM2Plugin]
    assert manager.available_models == {"smollm2:135m": SmolLM2Plugin}
    assert manager.failures == []


def test_default_plugin_manager_is_the_process_host() -> None:
    assert "smollm2:135m" in OllamaModelManager().available_models


LOAD_CASES = [
    ("smollm2:135m", None, None),
    ("smollm2:135m", {}, None),
    ("smollm2:135m", {"temperature": 0.7, "num_ctx": 2048}, None),
    ("smollm2:135m", {"temperature": 2}, None),
    ("smollm2:135m", {"temperature": 0}, None),
    ("registry.ollama.ai/library/smollm2:135m", None, None),
    ("smollm2:135m", {"temperature": 3}, "invalid configuration for model smollm2:135m"),
    ("smollm2:135m", {"temperature": -0.1}, "invalid configuration"),
    ("smollm2:135m", {"temperature": "hot"}, "refused by neurons_example_plugin.SmolLM2Plugin"),
    ("smollm2", None, "no model plugin for smollm2 (plugins serve: smollm2:135m)"),
    ("llama3", None, "no model plugin for llama3"),
]


@pytest.mark.parametrize(("model", "config", "error"), LOAD_CASES)
def test_load_model(
    manager: OllamaModelManager, model: str, config: dict[str, Any] | None, error: str | None
) -> None:
    if error is None:
        plugin = asyncio.run(manager.load_model(model, config))
        assert plugin.get_ollama_model_details()["name"] == "smollm2:135m"
        assert plugin.get_model_details() == plugin.get_ollama_model_details()
    else:
        with pytest.raises(PluginError, match=error.replace("(", r"\(").replace(")", r"\)")):
            asyncio.run(manager.load_model(model, config))


def test_load_model_does_not_let_the_plugin_mutate_the_config(
    manager: OllamaModelManager,
) -> None:
    config = {"temperature": 1.0}
    asyncio.run(manager.load_model("smollm2:135m", config))
    assert config == {"temperature": 1.0}


PACKAGE = {
    "__init__.py": "",
    "llama.py": """
        from typing import Any
        from neurons.plugins import OllamaModelPlugin
        from neurons_example_plugin import SmolLM2Plugin  # imported, not defined: ignored

        class Llama3Plugin(OllamaModelPlugin):
            def get_ollama_model_details(self) -> dict[str, Any]:
                return {"name": "llama3"}

            def validate_ollama_configuration(self, config: dict[str, Any]) -> bool:
                return "num_gpu" not in config

        class HalfDone(OllamaModelPlugin):  # abstract: ignored
            def get_ollama_model_details(self) -> dict[str, Any]:
                return {"name": "half"}
        """,
    "nameless.py": """
        from neurons.plugins import OllamaModelPlugin

        class Nameless(OllamaModelPlugin):
            def get_ollama_model_details(self):
                return {"size": 1}

            def validate_ollama_configuration(self, config):
                return True
        """,
    "broken.py": "raise RuntimeError('this module does not import')\n",
    "sub/__init__.py": "",
    "sub/deep.py": """
        from neurons.plugins import OllamaModelPlugin

        class Qwen3Plugin(OllamaModelPlugin):
            def get_ollama_model_details(self):
                return {"name": "qwen3:0.6b"}

            def validate_ollama_configuration(self, config):
                raise KeyError("plugin bug")
        """,
    "badsub/__init__.py": "import neurons_no_such_dependency\n",
}


@pytest.fixture
def plugin_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    root = tmp_path / "neurons_test_model_plugins"
    for name, source in PACKAGE.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(tmp_path)
    return root.name


def test_plugin_package_discovery(plugin_package: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="neurons.plugins.models"):
        manager = OllamaModelManager(plugin_package, plugin_manager=PluginHost())

    assert sorted(cls.__name__ for cls in manager.discovered_plugins) == [
        "Llama3Plugin",
        "Nameless",
        "Qwen3Plugin",
    ]
    assert sorted(manager.available_models) == ["llama3:latest", "qwen3:0.6b"]
    failures = {f.name: f.error for f in manager.failures}
    assert failures == {
        f"{plugin_package}.badsub": "ModuleNotFoundError: "
        "No module named 'neurons_no_such_dependency'",
        f"{plugin_package}.broken": "RuntimeError: this module does not import",
        "Nameless": "PluginError: "
        f"{plugin_package}.nameless.Nameless: model details have no 'name'",
    }
    assert "this module does not import" in caplog.text


@pytest.mark.parametrize(
    ("model", "config", "error"),
    [
        ("llama3", None, None),
        ("llama3:latest", {"num_ctx": 4096}, None),
        ("library/llama3", None, None),
        ("llama3:8b", None, "no model plugin for llama3:8b"),
        ("llama3", {"num_gpu": 1}, "invalid configuration for model llama3"),
        ("qwen3:0.6b", None, "failed validating the configuration of qwen3:0.6b: KeyError"),
    ],
)
def test_load_model_from_a_plugin_package(
    plugin_package: str, model: str, config: dict[str, Any] | None, error: str | None
) -> None:
    manager = OllamaModelManager(plugin_package, plugin_manager=PluginHost())
    if error is None:
        assert type(asyncio.run(manager.load_model(model, config))).__name__ == "Llama3Plugin"
    else:
        with pytest.raises(PluginError, match=error):
            asyncio.run(manager.load_model(model, config))


def test_a_missing_plugin_package_is_reported_not_raised() -> None:
    manager = OllamaModelManager("neurons_no_such_package", plugin_manager=PluginHost())
    assert manager.discovered_plugins == []
    assert [(f.name, f.error) for f in manager.failures] == [
        (
            "neurons_no_such_package",
            "ModuleNotFoundError: No module named 'neurons_no_such_package'",
        )
    ]


def test_plugins_from_both_sources_first_claim_wins(
    host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "neurons_test_rival.py").write_text(
        textwrap.dedent(
            """
            from neurons.plugins import OllamaModelPlugin

            class RivalSmolLM2(OllamaModelPlugin):
                def get_ollama_model_details(self):
                    return {"name": "smollm2:135m"}

                def validate_ollama_configuration(self, config):
                    return False
            """
        )
    )
    monkeypatch.syspath_prepend(tmp_path)
    manager = OllamaModelManager("neurons_test_rival", plugin_manager=host)
    assert [cls.__name__ for cls in manager.discovered_plugins] == ["SmolLM2Plugin", "RivalSmolLM2"]
    assert manager.available_models["smollm2:135m"].__name__ == "SmolLM2Plugin"


def test_a_hook_listing_the_same_class_twice_counts_once(host: PluginHost) -> None:
    from neurons_example_plugin import SmolLM2Plugin

    def twice() -> list[type[OllamaModelPlugin]]:
        return [SmolLM2Plugin]

    host.register(SimpleNamespace(neurons_model_plugins=hookimpl(twice)), "again")
    assert OllamaModelManager(plugin_manager=host).discovered_plugins == [SmolLM2Plugin]
