"""PluginHost: real entry points of an installed distribution, failures reported not raised."""

from __future__ import annotations

import importlib.metadata
import logging
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from neurons.network.routing import BUILTIN_POLICIES, NodeView, RouteRequest, RoutingPolicy
from neurons.plugins import BUILTIN_SOURCE, PluginFailure, PluginHost, hookimpl
from tests.plugins.conftest import EXAMPLE_DIST, example_entry_points

EXAMPLE_HOOKS = ["neurons_cli_commands", "neurons_model_plugins", "neurons_routing_policies"]
MISSING = "neurons_example_plugin_missing_dependency"


def test_example_plugin_is_discovered_through_entry_points(host: PluginHost) -> None:
    infos = {info.name: info for info in host.infos()}
    example = infos["example"]
    assert example.to_dict() == {
        "name": "example",
        "value": "neurons_example_plugin",
        "distribution": EXAMPLE_DIST,
        "version": importlib.metadata.version(EXAMPLE_DIST),
        "hooks": EXAMPLE_HOOKS,
        "status": "loaded",
        "error": None,
    }
    assert host.pm.has_plugin("example")


@pytest.mark.parametrize("order", [["broken", "example"], ["example", "broken"]])
def test_broken_plugin_is_reported_and_the_rest_load(
    order: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    entry_points = example_entry_points()
    host = PluginHost()
    with caplog.at_level(logging.WARNING, logger="neurons.plugins.loader"):
        host.load_entry_points(entry_points[name] for name in order)

    assert [info.name for info in host.infos()] == order
    infos = {info.name: info for info in host.infos()}
    assert infos["broken"].status == "failed"
    assert infos["broken"].hooks == []
    assert infos["broken"].error == f"ModuleNotFoundError: No module named '{MISSING}'"
    assert infos["broken"].distribution == EXAMPLE_DIST
    assert host.failures == [
        PluginFailure("broken", "neurons_example_plugin.broken", infos["broken"].error)
    ]
    assert "plugin broken (neurons_example_plugin.broken) failed to load" in caplog.text
    assert infos["example"].status == "loaded"
    assert "example-first" in host.routing_policies()


def test_loading_again_adds_nothing(host: PluginHost) -> None:
    before = [info.to_dict() for info in host.infos()]
    assert host.load_entry_points() == []
    assert [info.to_dict() for info in host.infos()] == before
    assert len(host.failures) == 1


BAD_ENTRY_POINTS = [
    pytest.param(
        "from neurons.plugins import hookimpl\n"
        "@hookimpl\n"
        "def neurons_routing_policy():\n"
        "    return []\n",
        "",
        "implements hooks neurons does not define: neurons_routing_policy",
        id="misspelt-hook",
    ),
    pytest.param(
        "from neurons.plugins import hookimpl\n"
        "@hookimpl\n"
        "def neurons_cli_commands(application):\n"
        "    pass\n",
        "",
        "application",
        id="wrong-argument",
    ),
    pytest.param("", ":missing", "AttributeError", id="missing-attribute"),
    pytest.param("raise RuntimeError('plugin exploded')\n", "", "plugin exploded", id="raises"),
]


@pytest.mark.parametrize(("source", "suffix", "error"), BAD_ENTRY_POINTS)
def test_entry_point_that_fails_to_load_or_register(
    source: str,
    suffix: str,
    error: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    module = "neurons_test_bad_" + request.node.callspec.id.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(tmp_path)
    bad = importlib.metadata.EntryPoint("bad", module + suffix, "neurons")
    good = example_entry_points()["example"]

    host = PluginHost()
    host.load_entry_points([bad, good])

    infos = {info.name: info for info in host.infos()}
    assert infos["bad"].status == "failed"
    assert infos["bad"].error is not None and error in infos["bad"].error
    assert [f.name for f in host.failures] == ["bad"]
    assert not host.pm.has_plugin("bad")
    assert infos["example"].status == "loaded"
    assert set(host.routing_policies()) == {*BUILTIN_POLICIES, "example-first"}


def test_the_same_module_under_two_names_is_a_failure(host: PluginHost) -> None:
    twin = importlib.metadata.EntryPoint("twin", "neurons_example_plugin", "neurons")
    (info,) = host.load_entry_points([twin])
    assert info.status == "failed"
    assert info.error is not None and "already registered" in info.error


def test_register_refuses_a_taken_name(host: PluginHost) -> None:
    with pytest.raises(ValueError, match="already known"):
        host.register(SimpleNamespace(), "example")


def _nodes(*names: str) -> list[NodeView]:
    return [NodeView(id=f"id-{n}", name=n, url=f"http://{n}", kind="embedded") for n in names]


def test_routing_policies_are_builtins_plus_example_first(host: PluginHost) -> None:
    policies = host.routing_policies()
    assert {name: policies[name] for name in BUILTIN_POLICIES} == BUILTIN_POLICIES
    assert set(policies) == {*BUILTIN_POLICIES, "example-first"}
    assert host.policy_sources() == {
        **dict.fromkeys(BUILTIN_POLICIES, BUILTIN_SOURCE),
        "example-first": "example",
    }
    ordered = policies["example-first"]().order(RouteRequest("m"), _nodes("c", "a", "b"))
    assert [node.name for node in ordered] == ["a", "b", "c"]


class _Abstract(RoutingPolicy):
    name = "abstract"


class _Shadow(RoutingPolicy):
    name = "balanced"

    def order(self, request: RouteRequest, candidates: Any) -> list[NodeView]:
        return list(candidates)


class _Nameless(RoutingPolicy):
    def order(self, request: RouteRequest, candidates: Any) -> list[NodeView]:
        return list(candidates)


def _boom() -> list[type[RoutingPolicy]]:
    raise RuntimeError("boom")


MISBEHAVING_POLICY_HOOKS: list[Any] = [
    pytest.param(_boom, "RuntimeError: boom", id="raises"),
    pytest.param(lambda: _Shadow, "expected a list", id="not-a-list"),
    pytest.param(lambda: [int], "is not a concrete RoutingPolicy subclass", id="not-a-policy"),
    pytest.param(lambda: [_Abstract], "is not a concrete RoutingPolicy subclass", id="abstract"),
    pytest.param(lambda: [_Shadow], "'balanced' is already provided by built-in", id="clash"),
    pytest.param(lambda: [_Nameless], "_Nameless has no name", id="nameless"),
]


@pytest.mark.parametrize(("hook", "error"), MISBEHAVING_POLICY_HOOKS)
def test_a_misbehaving_policy_hook_is_reported_and_builtins_remain(
    host: PluginHost, hook: Callable[[], Any], error: str
) -> None:
    host.register(SimpleNamespace(neurons_routing_policies=hookimpl(hook)), "bad")

    policies = host.routing_policies()
    host.routing_policies()  # the failure is reported once, not on every call

    assert policies["balanced"] is BUILTIN_POLICIES["balanced"]
    assert set(policies) == {*BUILTIN_POLICIES, "example-first"}
    (failure,) = [f for f in host.failures if f.name == "bad"]
    assert failure.error.startswith("neurons_routing_policies: ")
    assert error in failure.error
    bad = {info.name: info for info in host.infos()}["bad"]
    assert bad.status == "loaded" and bad.error == failure.error


def test_a_raising_model_hook_is_reported(host: PluginHost) -> None:
    host.register(SimpleNamespace(neurons_model_plugins=hookimpl(_boom)), "bad")
    assert [cls.__name__ for cls in host.model_plugins()] == ["SmolLM2Plugin"]
    assert [(f.name, f.error) for f in host.failures if f.name == "bad"] == [
        ("bad", "neurons_model_plugins: RuntimeError: boom")
    ]


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """A root with a callback, so that even one command stays a subcommand."""

    return app


def test_cli_hook_adds_example_hello() -> None:
    from neurons_example_plugin import HELLO

    host = PluginHost()
    host.load_entry_points()
    app = _app()
    host.add_cli_commands(app)

    result = CliRunner().invoke(app, ["example-hello"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{HELLO}\n"


def test_a_raising_cli_hook_is_reported_and_the_cli_still_works(host: PluginHost) -> None:
    def broken_commands(app: typer.Typer) -> None:
        app.command("half-added")(lambda: None)
        raise ImportError("needs an extra")

    host.register(SimpleNamespace(neurons_cli_commands=hookimpl(broken_commands)), "bad")
    app = _app()
    host.add_cli_commands(app)

    assert [(f.name, f.error) for f in host.failures if f.name == "bad"] == [
        ("bad", "neurons_cli_commands: ImportError: needs an extra")
    ]
    result = CliRunner().invoke(app, ["example-hello"])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(app, ["half-added"]).exit_code == 2  # taken back


def test_a_plugin_cannot_shadow_a_command(host: PluginHost) -> None:
    app = _app()

    @app.command()
    def version() -> None:
        typer.echo("built-in version")

    models = typer.Typer()
    models.command("ls")(lambda: None)
    app.add_typer(models, name="models")

    def shadowing_commands(app: typer.Typer) -> None:
        app.command("version")(lambda: typer.echo("hijacked"))
        app.add_typer(typer.Typer(name="models"))
        app.command("extra")(lambda: typer.echo("extra"))

    host.register(SimpleNamespace(neurons_cli_commands=hookimpl(shadowing_commands)), "bad")
    host.add_cli_commands(app)

    assert [f.error for f in host.failures if f.name == "bad"] == [
        "neurons_cli_commands: command 'version' is already taken",
        "neurons_cli_commands: command 'models' is already taken",
    ]
    runner = CliRunner()
    assert runner.invoke(app, ["version"]).stdout == "built-in version\n"
    assert runner.invoke(app, ["extra"]).stdout == "extra\n"
    assert runner.invoke(app, ["example-hello"]).exit_code == 0


def test_default_host_is_loaded_once() -> None:
    from neurons.plugins import default_host

    assert default_host() is default_host()
    assert {info.name for info in default_host().infos()} >= {"example", "broken"}


def test_a_plugin_module_written_like_a_third_party_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "neurons_test_thirdparty.py").write_text(
        textwrap.dedent(
            """
            from neurons.network.routing import RoutingPolicy
            from neurons.plugins import hookimpl

            class Last(RoutingPolicy):
                name = "last-first"

                def order(self, request, candidates):
                    return list(reversed(candidates))

            @hookimpl
            def neurons_routing_policies():
                return [Last]
            """
        )
    )
    monkeypatch.syspath_prepend(tmp_path)
    host = PluginHost()
    (info,) = host.load_entry_points(
        [importlib.metadata.EntryPoint("third", "neurons_test_thirdparty", "neurons")]
    )
    assert (info.status, info.hooks, info.distribution) == (
        "loaded",
        ["neurons_routing_policies"],
        None,
    )
    policy = host.routing_policies()["last-first"]()
    assert [n.name for n in policy.order(RouteRequest("m"), _nodes("a", "b"))] == ["b", "a"]
