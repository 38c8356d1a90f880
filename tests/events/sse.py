"""A Server-Sent Events client for the tests: httpx streaming on a thread, parsing the wire
format as a browser's EventSource does (``field: value`` lines, a blank line ends a message,
``:`` starts a comment)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx

Until = Callable[[list[dict[str, Any]]], bool]


class SSEReader(threading.Thread):
    """Reads ``url`` as an event stream until ``until(events)`` holds, then hangs up."""

    def __init__(self, url: str, until: Until, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.until = until
        self.headers = {"Accept": "text/event-stream", **(headers or {})}
        self.events: list[dict[str, Any]] = []  # each: the data's JSON, with the wire id/event
        self.comments: list[str] = []
        self.fields: list[str] = []  # every field name seen, in order
        self.status: int | None = None
        self.content_type = ""
        self.error: BaseException | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(30.0)) as client,
                client.stream("GET", self.url, headers=self.headers) as response,
            ):
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "")
                self.connected.set()
                if response.status_code != 200:
                    response.read()
                    return
                self._read(response)
        except BaseException as exc:  # handed to the test, which asserts on it
            self.error = exc
        finally:
            self.connected.set()

    def _read(self, response: httpx.Response) -> None:
        message: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                self.comments.append(line)
                continue
            if line:
                name, _, value = line.partition(":")
                self.fields.append(name)
                message[name] = value.removeprefix(" ")
                continue
            if "data" in message:
                event = json.loads(message["data"])
                event["wire"] = {"id": message.get("id"), "event": message.get("event")}
                self.events.append(event)
                if self.until(self.events):
                    return
            message = {}

    def finish(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        self.join(timeout)
        assert not self.is_alive(), f"stream still open; got {self.events}"
        if self.error is not None:
            raise self.error
        return self.events


def ids(events: list[dict[str, Any]]) -> list[int]:
    return [int(e["id"]) for e in events]
