"""The summary's Server-Sent Events stream: one summary per interval, and it ends when the
control plane stops (a stream left open would hold a graceful shutdown to its deadline)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx

from neurons.api.app import create_control_plane
from neurons.api.server import ServerThread
from tests.api.test_metrics import settings_for
from tests.conftest import free_port


def test_stream_sends_summaries_and_ends_when_the_plane_stops(tmp_path: Path) -> None:
    app = create_control_plane(settings_for(tmp_path / "home"), [])
    server = ServerThread(app, port=free_port()).start()
    summaries: list[dict[str, object]] = []
    ended = threading.Event()
    two = threading.Event()

    def read() -> None:
        params = {"interval_s": 0.5, "window_s": 30}
        with httpx.stream("GET", server.url + "/api/ai/metrics/stream", params=params,
                          timeout=30) as response:  # fmt: skip
            assert response.headers["content-type"].startswith("text/event-stream")
            event = None
            for raw in response.iter_lines():
                if raw.startswith("event: "):
                    event = raw[len("event: ") :]
                elif raw.startswith("data: ") and event == "summary":
                    summaries.append(json.loads(raw[len("data: ") :]))
                    if len(summaries) == 2:
                        two.set()
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert two.wait(20), "two summaries did not come"
        first, second = summaries[:2]
        assert second["now"] > first["now"]  # type: ignore[operator]
        assert first["window_s"] == 30 and first["nodes"] == [] and first["jobs"] == []
    finally:
        started = time.monotonic()
        server.stop()
    assert ended.wait(10), "the stream outlived the control plane"
    assert time.monotonic() - started < 10


def test_summary_refuses_a_window_out_of_range(tmp_path: Path) -> None:
    app = create_control_plane(settings_for(tmp_path / "home"), [])
    with ServerThread(app, port=free_port()) as server:
        answer = httpx.get(server.url + "/api/ai/metrics/summary", params={"window_s": 5})
        assert answer.status_code == 422
        assert answer.json()["success"] is False
        fine = httpx.get(server.url + "/api/ai/metrics/summary", params={"window_s": 60}).json()
        assert fine["window_s"] == 60 and len(fine["series"]) == 60 // fine["step_s"]
