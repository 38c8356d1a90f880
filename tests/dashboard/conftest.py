"""The dashboard in a real browser: headless Chromium (the system's, driven by Playwright) in
front of a real control plane served on a loopback port, with a real embedded neuron behind it.

- ``browser``: one Chromium for the session.
- ``page``: a fresh context (1280x800, empty localStorage) per test; any console error or
  uncaught page error fails the test at teardown, so every view is held to "loads clean".
  A test that provokes an error on purpose lists its pattern in ``console_allow``.
- ``shots_dir``: ``artifacts/screenshots`` at the repository root (git-ignored).
- :func:`control_plane`: a plane in front of one neuron; each module starts its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from neurons.api.app import NodeSpec, create_control_plane
from neurons.api.server import ServerThread
from neurons.config import Settings
from neurons.neuron.process import NeuronProcess
from tests.conftest import free_port

CHROMIUM = os.environ.get("NEURONS_TEST_CHROMIUM", "/usr/bin/chromium")
# Offline and quiet: no GPU, no QUIC, none of Chromium's own calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def control_plane(home: Path, neuron: NeuronProcess, **settings: Any) -> Iterator[str]:
    """A control plane in front of ``neuron`` as node ``n1``; yields its URL."""
    config = Settings(
        home=home,
        ollama_base_url="",
        import_default_models=False,
        health_interval_s=0.5,
        **settings,
    )
    app = create_control_plane(config, [NodeSpec("n1", neuron.url, "embedded")])
    with ServerThread(app, port=free_port()) as server:
        yield server.url


# Package-scoped, not session: Playwright's sync API runs an event loop in the main thread
# while it is open, and every later test's asyncio.run() would fail with "cannot be called
# from a running event loop". It closes after the last dashboard test.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright import sync_api  # a dev dependency: scripts/setup installs it

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/setup (or set NEURONS_TEST_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def console_allow() -> list[str]:
    """Regular expressions of console errors the test expects (none by default)."""
    return []


@pytest.fixture
def page(browser: Any, console_allow: list[str]) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and not any(re.search(p, message.text) for p in console_allow):
            problems.append(f"console error: {message.text} ({message.location.get('url')})")

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        yield opened
    finally:
        # Closed before the plane stops: the page's event streams end with it.
        context.close()
    if problems:
        pytest.fail("the page logged errors:\n" + "\n".join(problems))


@pytest.fixture(scope="session")
def shots_dir() -> Path:
    path = REPO / "artifacts" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path
