"""Every view in headless Chromium over a real control plane and neuron (keys off): each loads
with no console error, the overview's numbers move when requests go through the gateway, the
models view shows where smollm2 is and what it can do, and the playground streams its answer.
A full-page screenshot of each view lands in ``artifacts/screenshots``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from neurons.neuron.process import NeuronProcess
from tests.dashboard.conftest import control_plane

SMOL = "smollm2:135m"
VIEWS = ["overview", "models", "jobs", "keys", "playground"]


@pytest.fixture(scope="module")
def plane(neuron: NeuronProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with control_plane(tmp_path_factory.mktemp("dash-views") / "home", neuron) as url:
        yield url


def open_view(page: Any, plane: str, view: str) -> None:
    """Load the dashboard on ``view`` and wait until the view says it rendered."""
    page.goto(f"{plane}/dashboard#/{view}")
    page.wait_for_selector(f'#view[data-view="{view}"]:not([data-state="loading"])')
    state = page.get_attribute("#view", "data-state")
    assert state == "ready", page.inner_text("#view")


def number(page: Any, selector: str) -> float:
    return float(page.inner_text(selector).replace(",", ""))


@pytest.mark.parametrize("view", VIEWS)
def test_each_view_loads_clean(page: Any, plane: str, view: str) -> None:
    """No console error, no page error (the page fixture checks), and a rendered view; the
    jobs view too, whose module another file provides."""
    open_view(page, plane, view)
    assert page.get_attribute(f'#nav a[data-view="{view}"]', "class") == "active"


def test_overview_counts_requests_through_the_gateway(
    page: Any, plane: str, shots_dir: Path
) -> None:
    open_view(page, plane, "overview")
    total = '[data-testid="total-requests"]'
    page.wait_for_function(f"document.querySelector('{total}').textContent !== '—'")
    page.wait_for_selector("#live:not([hidden])")  # the metrics stream is connected
    before = number(page, total)
    sent = 3
    with httpx.Client(base_url=plane, timeout=120) as client:
        for i in range(sent):
            body = {"model": SMOL, "prompt": f"Count to {i + 2}.", "stream": False,
                    "options": {"num_predict": 8}}  # fmt: skip
            assert client.post("/api/generate", json=body).status_code == 200
    # The next summary on the stream carries them; nothing reloads the page.
    shown = f"Number(document.querySelector('{total}').textContent.replace(/,/g, ''))"
    page.wait_for_function(f"{shown} >= {before + sent}", timeout=20_000)
    assert page.locator('tr[data-node="n1"]').inner_text().split()[:2] == ["n1", "online"]
    for chart in ("chart-rps", "chart-latency", "chart-tps", "chart-errors"):
        points = page.get_attribute(f"#{chart} svg.chart", "data-points")
        assert points is not None and int(points) > 0, chart
    # The latency curve has a point once a request finished in the window.
    page.wait_for_function(
        "Number(document.querySelector('#chart-latency svg').dataset.points) > 0"
    )
    page.screenshot(path=shots_dir / "overview.png", full_page=True)


def test_models_view_shows_where_the_model_is(page: Any, plane: str, shots_dir: Path) -> None:
    open_view(page, plane, "models")
    row = page.locator(f'tr[data-model="{SMOL}"]')
    row.wait_for()
    assert row.locator('[data-testid="model-nodes"] .chip').all_inner_texts() == ["n1"]
    capabilities = row.locator('[data-testid="model-capabilities"] .chip').all_inner_texts()
    assert "completion" in capabilities
    # Keys are off: the caller may manage, so the buttons are there.
    assert row.locator('button[data-action="delete"]').count() == 1
    assert page.locator("#pull-form").count() == 1
    # Per node: the detail row opens under the model.
    row.locator('button[data-action="toggle"]').click()
    assert "n1" in page.locator("tr.detail").inner_text()
    page.screenshot(path=shots_dir / "models.png", full_page=True)


def test_playground_streams_the_answer(page: Any, plane: str, shots_dir: Path) -> None:
    open_view(page, plane, "playground")
    page.wait_for_selector(f'#model option:text-is("{SMOL}")', state="attached")
    page.select_option("#model", SMOL)
    page.fill('input[name="num_predict"]', "48")
    page.fill('textarea[name="system"]', "You answer in full sentences.")
    page.fill('[data-testid="prompt"]', "Tell me about the sea.")
    # Record the reply's length at every change while it streams: a MutationObserver sees
    # each DOM update, which a poll from here could miss between two of its looks.
    page.evaluate(
        """() => {
        window.__lengths = [];
        new MutationObserver(() => {
          const reply = [...document.querySelectorAll('[data-testid="reply"]')].pop();
          if (reply) window.__lengths.push([reply.textContent.length, reply.dataset.state]);
        }).observe(document.getElementById('messages'),
                   {childList: true, subtree: true, characterData: true, attributes: true});
      }"""
    )
    page.click('[data-testid="send"]')
    page.wait_for_selector('[data-testid="reply"][data-state="done"]', timeout=60_000)
    lengths: list[tuple[int, str]] = page.evaluate("window.__lengths")
    growing = sorted({n for n, state in lengths if state == "streaming" and n > 0})
    assert len(growing) >= 2, lengths
    reply = page.locator('[data-testid="reply"]')
    assert len(reply.inner_text()) >= growing[-1]
    assert int(reply.get_attribute("data-chunks") or 0) >= 2
    assert "tokens" in page.locator('[data-testid="reply-stats"]').inner_text()
    page.screenshot(path=shots_dir / "playground.png", full_page=True)


def test_models_view_copies_and_deletes(page: Any, plane: str) -> None:
    """Copy and delete go through the gateway's fan-out like any Ollama client's calls."""
    copy = "dash-copy:latest"
    open_view(page, plane, "models")
    try:
        row = page.locator(f'tr[data-model="{SMOL}"]')
        row.locator('button[data-action="copy"]').click()
        row.locator("input").fill(copy)
        row.locator('button[data-action="copy-go"]').click()
        copied = page.locator(f'tr[data-model="{copy}"]')
        copied.wait_for()
        assert copied.locator('[data-testid="model-nodes"] .chip').all_inner_texts() == ["n1"]
        # Two clicks: the first only arms the button.
        copied.locator('button[data-action="delete"]').click()
        assert copied.locator('button[data-action="delete"]').inner_text() == "Confirm delete"
        copied.locator('button[data-action="delete"]').click()
        copied.wait_for(state="detached")
        names = [m["name"] for m in httpx.get(plane + "/api/tags", timeout=10).json()["models"]]
        assert copy not in names and SMOL in names
    finally:
        httpx.request("DELETE", plane + "/api/delete", json={"model": copy}, timeout=30)
