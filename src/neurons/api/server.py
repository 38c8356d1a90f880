"""Run an ASGI app with uvicorn on a background thread (tests, benchmarks, embedding neurons
in another program). The thread's server installs no signal handlers; ``stop`` ends it."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI

from neurons.errors import NodeUnreachableError

__all__ = ["ServerThread"]


class ServerThread:
    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.host = host
        self.port = port
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="on", ws="none"
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name=f"uvicorn-{port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0, ready_path: str = "/api/version") -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise NodeUnreachableError(f"server on {self.url} exited during start-up")
            if self.server.started:
                try:
                    if httpx.get(self.url + ready_path, timeout=1.0).status_code < 500:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise NodeUnreachableError(f"server on {self.url} not ready after {timeout:.0f}s")

    def stop(self, timeout: float = 15.0) -> None:
        from neurons.api.routes_events import end_event_streams

        end_event_streams(self.server.config.app)  # or an SSE client holds the shutdown
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
