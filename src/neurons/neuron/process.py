"""Start and stop an embedded neuron as a child process (``neurons serve-node``).

The control plane never runs llama.cpp in its own process: a crash there cannot take it
down. On Linux the child gets ``PR_SET_PDEATHSIG`` so it dies with its parent even when the
parent is killed hard, so no orphan keeps a port or gigabytes of RAM.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from neurons.errors import NodeUnreachableError

__all__ = ["NeuronProcess"]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class NeuronProcess:
    def __init__(
        self,
        home: Path,
        host: str = "127.0.0.1",
        port: int = 11435,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        token: str | None = None,
        own_session: bool = False,
    ) -> None:
        self.home = home
        # Passed in the environment, not argv: the process list shows arguments to everyone.
        self.token = token
        self.host = host
        self.port = port
        self.extra_args = extra_args or []
        self.env = env
        self.log_path = log_path
        # In a session of its own, a terminal's Ctrl-C (sent to the whole foreground group)
        # does not reach the child: its parent decides when it stops (after draining).
        self.own_session = own_session
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 300.0) -> NeuronProcess:
        """Spawn the neuron and wait until it answers (or fail, naming its log)."""
        self.spawn()
        self.wait_ready(timeout)
        return self

    def spawn(self) -> None:
        """Start the child without waiting for it. Call it from a thread that outlives the
        child: Linux sends the parent-death signal when the spawning *thread* exits."""
        command = [
            sys.executable, "-m", "neurons", "serve-node",
            "--host", self.host, "--port", str(self.port), "--home", str(self.home),
            *self.extra_args,
        ]  # fmt: skip
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path or os.devnull, "ab")  # noqa: SIM115 - owned by the child
        env = {**os.environ, **(self.env or {})}
        if self.token is not None:
            env["NEURONS_NODE_TOKEN"] = self.token
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            start_new_session=self.own_session,
        )
        log.close()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise NodeUnreachableError(
                    f"neuron exited with code {self.process.returncode} before it was ready"
                    + (f" (log: {self.log_path})" if self.log_path else "")
                )
            try:
                if (
                    httpx.get(
                        self.url + "/api/version", headers=self.headers, timeout=1.0
                    ).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise NodeUnreachableError(f"neuron at {self.url} not ready after {timeout:.0f}s")

    @property
    def headers(self) -> dict[str, str]:
        """What a client of this neuron sends: its token, when it has one."""
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> NeuronProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
