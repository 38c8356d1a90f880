"""``neurons plugins ls`` against the real installed example plugin."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from neurons.cli.plugins import plugins_app


def test_ls_json_shows_the_example_loaded_and_broken_failed() -> None:
    result = CliRunner().invoke(plugins_app, ["ls", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)

    assert report["success"] is True
    plugins = {p["name"]: p for p in report["plugins"]}
    assert plugins["example"]["status"] == "loaded"
    assert plugins["example"]["distribution"] == "neurons-example-plugin"
    assert plugins["example"]["hooks"] == [
        "neurons_cli_commands",
        "neurons_model_plugins",
        "neurons_routing_policies",
    ]
    assert plugins["broken"]["status"] == "failed"
    assert "neurons_example_plugin_missing_dependency" in plugins["broken"]["error"]
    assert report["routing_policies"] == [
        {"name": "balanced", "source": "built-in"},
        {"name": "example-first", "source": "example"},
        {"name": "round-robin", "source": "built-in"},
    ]
    assert report["model_plugins"] == ["neurons_example_plugin.SmolLM2Plugin"]


def test_ls_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(plugins_app, ["ls"])
    assert result.exit_code == 0, result.output
    for text in (
        "Plugins",
        "neurons-example-plugin",
        "loaded",
        "failed",
        "No module named 'neurons_example_plugin_missing_dependency'",
        "Routing policies",
        "example-first",
        "built-in",
        "neurons_example_plugin.SmolLM2Plugin",
    ):
        assert text in result.stdout
