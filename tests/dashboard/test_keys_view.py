"""The dashboard with keys on, in headless Chromium over a real control plane and neuron: the
page asks for a key before it calls anything, the master key opens the keys list and the
audit trail, a key made in the page shows its secret once and appears in the audit trail, a
read key sees the models without the manage buttons, and a 401 from a call (the key revoked
under the page) brings the prompt back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from neurons.neuron.process import NeuronProcess
from tests.dashboard.conftest import control_plane

MASTER = "dashboard-keys-master-key-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}


@pytest.fixture(scope="module")
def plane(neuron: NeuronProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("dash-keys") / "home"
    with control_plane(home, neuron, master_key=MASTER) as url:
        created = httpx.post(
            url + "/api/ai/keys", json={"name": "ci-bot", "scope": "inference"}, headers=ADMIN
        )
        assert created.status_code == 201, created.text
        yield url


def create_key(plane: str, name: str, scope: str) -> dict[str, Any]:
    response = httpx.post(
        plane + "/api/ai/keys", json={"name": name, "scope": scope}, headers=ADMIN, timeout=10
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def enter_key(page: Any, key: str) -> None:
    page.wait_for_selector("#key-dialog[open]")
    page.fill('[data-testid="key-input"]', key)
    page.click('[data-testid="key-save"]')


def test_the_page_asks_for_a_key_then_shows_keys_and_audit(
    page: Any, plane: str, shots_dir: Path
) -> None:
    page.goto(f"{plane}/dashboard#/keys")
    # Asked before any call: the view stays locked and nothing was refused (no 401 logged).
    page.wait_for_selector("#key-dialog[open]")
    assert page.get_attribute("#view", "data-state") == "locked"
    enter_key(page, "nk-not-a-key")
    page.wait_for_selector("#key-dialog[open]")
    assert page.inner_text("#key-error") == "invalid API key"
    enter_key(page, MASTER)
    page.wait_for_selector('#view[data-view="keys"][data-state="ready"]')
    assert page.inner_text('[data-testid="who"]') == "master · admin"
    keys = page.locator('[data-testid="keys-table"] tbody')
    assert "ci-bot" in keys.inner_text()
    # The fixture's creation is in the trail, by the master key.
    assert "POST /api/ai/keys" in page.inner_text('[data-testid="audit-table"]')

    page.fill('[data-testid="new-key-name"]', "from-the-page")
    page.select_option('select[name="scope"]', "read")
    page.click('[data-testid="create-key"]')
    secret = page.locator('[data-testid="secret"] code')
    secret.wait_for()
    assert secret.inner_text().strip()
    row = page.locator('tr[data-name="from-the-page"]')
    row.wait_for()
    assert "read" in row.inner_text()
    listed = httpx.get(plane + "/api/ai/keys", headers=ADMIN, timeout=10).json()["keys"]
    assert "from-the-page" in [k["name"] for k in listed]
    # The secret shown works, with the scope chosen.
    shown = {"Authorization": f"Bearer {secret.inner_text().strip()}"}
    assert httpx.get(plane + "/api/tags", headers=shown, timeout=10).status_code == 200
    assert httpx.get(plane + "/api/ai/keys", headers=shown, timeout=10).status_code == 403

    page.wait_for_function(
        "document.querySelector('[data-testid=\"audit-table\"]').innerText"
        ".split('POST /api/ai/keys').length > 2"
    )
    page.screenshot(path=shots_dir / "keys.png", full_page=True)

    # Revoke with two clicks; the key is refused from then on.
    row.locator('button[data-action="revoke"]').click()
    row.locator('button[data-action="revoke"]').click()
    page.wait_for_selector('tr[data-name="from-the-page"] .badge:text-is("revoked")')
    assert httpx.get(plane + "/api/tags", headers=shown, timeout=10).status_code == 401

    # The key stays in the browser: a reload does not ask again.
    page.reload()
    page.wait_for_selector('#view[data-view="keys"][data-state="ready"]')
    assert not page.is_visible("#key-dialog")


def test_a_read_key_and_a_401_under_the_page(
    page: Any, plane: str, console_allow: list[str]
) -> None:
    console_allow.append(r"status of 401")  # the refused call this test provokes on purpose
    reader = create_key(plane, "dash-reader", "read")
    page.goto(f"{plane}/dashboard#/models")
    enter_key(page, reader["secret"])
    page.wait_for_selector('#view[data-view="models"][data-state="ready"]')
    page.locator('tr[data-model="smollm2:135m"]').wait_for()
    # Read scope: no pull form, no copy or delete.
    assert page.locator("#pull-form").count() == 0
    assert page.locator('button[data-action="delete"]').count() == 0

    revoked = httpx.delete(f"{plane}/api/ai/keys/{reader['key']['id']}", headers=ADMIN)
    assert revoked.status_code == 200
    page.click("#refresh")
    page.wait_for_selector("#key-dialog[open]")
    assert page.inner_text("#key-error") == "this API key was revoked"
