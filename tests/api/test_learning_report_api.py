"""``GET /api/ai/learning/runs/{id}/report``: the report ``neurons learn report`` writes, as
JSON or as the HTML page; and the deploy fields refused over REST as the CLI refuses them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from neurons.api.app import create_control_plane
from neurons.config import Settings
from tests.api.envelope import error, ok
from tests.api.test_learning_api import BASE, TINY, wait_for


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path, health_interval_s=0.5, ollama_base_url="")
    with TestClient(create_control_plane(settings, [])) as test_client:
        yield test_client


def test_report_as_json_and_html(client: TestClient) -> None:
    run_id = ok(client.post(f"{BASE}/runs", json=TINY))["run_id"]
    wait_for(client, run_id, lambda s: s["status"] == "completed")
    report = ok(client.get(f"{BASE}/runs/{run_id}/report"))["report"]
    assert report["run"]["run_id"] == run_id
    assert [p[0] for p in report["series"]["global model · test"]] == [1, 2, 3]
    assert report["edges"] == []  # nobody teaches in fedavg
    page = client.get(f"{BASE}/runs/{run_id}/report", params={"format": "html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-series="global model · test"' in page.text
    error(client.get(f"{BASE}/runs/42/report"), 404, "learning_run_not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"deploy": "ray"},
        {"mode": "distill", "deploy": "flower"},
        {"superlink": "10.0.0.5:8000"},
        {"deploy": "flower", "superlink": "nohost"},
    ],
)
def test_bad_deploy_fields_are_refused(client: TestClient, body: dict[str, str]) -> None:
    error(client.post(f"{BASE}/runs", json=body), 400, "invalid_request")
    assert ok(client.get(f"{BASE}/runs"))["total"] == 0
