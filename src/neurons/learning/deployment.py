"""A real Flower deployment of the federated apps: one SuperLink, N SuperNodes, ``flwr run``.

:class:`FlowerDeployment` runs it all on loopback (free ports, logs in ``work_dir/logs``). On
several machines the commands are the same (see :func:`superlink_command` and
:func:`supernode_command`): one machine runs ``flower-superlink ... --host 0.0.0.0 --port
8000``, each of the N others ``flower-supernode ... --superlink HOST:8000 --node-config
"partition-id=I num-partitions=N"`` with its own I (0 to N-1), and ``flwr run <FAB_DIR>
<connection> --run-config '...'`` is run from anywhere that reaches the SuperLink, the
connection named in ``$FLWR_HOME/config.toml``. Every machine needs ``neurons`` installed (the
FAB holds only a ``pyproject.toml``); runtime dependency installation stays off (Flower would
install packages, CUDA torch among them). ``--insecure`` is for trusted networks only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from contextlib import ExitStack, suppress
from pathlib import Path
from subprocess import PIPE, STDOUT, Popen
from typing import IO

from neurons.errors import InvalidRequestError, LearningStateError
from neurons.learning.federated import FederatedSettings

__all__ = [
    "FAB_DIR",
    "FlowerDeployment",
    "run_config_arg",
    "superlink_command",
    "supernode_command",
]

FAB_DIR = Path(__file__).parent / "flower_fab"
CONNECTION = "neurons-local"
_RUN_ID = re.compile(r"Successfully started run (\d+)")


def _program(name: str, bin_dir: Path | None, port: int) -> str:
    if not 0 < port < 65536:
        raise InvalidRequestError(f"port must be 1-65535, got {port}")
    return name if bin_dir is None else str(bin_dir / name)


def superlink_command(
    port: int = 8000,
    *,
    host: str = "0.0.0.0",
    database: str = ":flwr-in-memory:",
    insecure: bool = True,
    bin_dir: Path | None = None,
) -> list[str]:
    """argv of a SuperLink serving the Fleet, Control and ServerAppIo APIs on ``host:port``."""
    flags = ["--insecure"] if insecure else []
    flags += ["--isolation", "subprocess", "--disable-runtime-dependency-installation"]
    place = ["--host", host, "--port", str(port), "--database", database]
    return [_program("flower-superlink", bin_dir, port), *flags, *place]


def supernode_command(
    superlink: str,
    partition_id: int,
    num_partitions: int,
    *,
    port: int = 9094,
    host: str = "127.0.0.1",
    insecure: bool = True,
    bin_dir: Path | None = None,
) -> list[str]:
    """argv of a SuperNode training partition ``partition_id`` of ``num_partitions``;
    ``superlink`` is the SuperLink's ``HOST:PORT``, ``host:port`` its local runtime API."""
    if not 0 <= partition_id < num_partitions:
        raise InvalidRequestError(f"partition-id {partition_id} outside 0-{num_partitions - 1}")
    if ":" not in superlink:
        raise InvalidRequestError(f"superlink must be HOST:PORT, got {superlink!r}")
    flags = ["--insecure"] if insecure else []
    flags += ["--superlink", superlink, "--isolation", "subprocess"]
    place = ["--host", host, "--port", str(port)]
    node = f"partition-id={partition_id} num-partitions={num_partitions}"
    return [_program("flower-supernode", bin_dir, port), *flags, *place, "--node-config", node]


def run_config_arg(config: Mapping[str, str | int | float | bool]) -> str:
    """``flwr run --run-config`` text: TOML values, strings quoted, bools lowercase."""
    parts = []
    for key, value in config.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            if '"' in value or "\n" in value:
                raise InvalidRequestError(f"run-config value of {key} cannot hold quotes")
            text = json.dumps(value)
        else:
            text = repr(value)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``. Flower starts its superexec in a new session, so
    process groups miss them; the parent links in /proc do not."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with suppress(OSError, IndexError, ValueError):
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    stack = [pid]
    while stack:
        kids = children.get(stack.pop(), [])
        found, stack = found + kids, stack + kids
    return found


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    with suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class FlowerDeployment:
    """A SuperLink and ``num_nodes`` SuperNodes on loopback, started on ``__enter__``
    (or :meth:`start`) and stopped, process trees included, by :meth:`close`."""

    def __init__(self, num_nodes: int, work_dir: Path | str, *, start_timeout: float = 60) -> None:
        if num_nodes < 1:
            raise InvalidRequestError("a deployment needs at least one SuperNode")
        self.num_nodes = num_nodes
        self.work_dir = Path(work_dir).resolve()
        self.logs = self.work_dir / "logs"
        self._start_timeout = start_timeout
        self._bin = Path(sys.executable).parent
        self._procs: list[tuple[str, Popen[bytes]]] = []
        self._files: list[IO[bytes]] = []
        self._runs = 0
        self._env: dict[str, str] = {}

    @property
    def pids(self) -> list[int]:
        """The SuperLink's and SuperNodes' pids and those of their live descendants."""
        tops = [proc.pid for _, proc in self._procs]
        return tops + [kid for pid in tops for kid in _descendants(pid)]

    def __enter__(self) -> FlowerDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> FlowerDeployment:
        if self._procs:
            raise LearningStateError("the Flower deployment is already started")
        home = self.work_dir / "flwr_home"
        home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        link_port, *node_ports = _free_ports(self.num_nodes + 1)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{link_port}"\ninsecure = true\n'
        )
        self._env = dict(os.environ)
        self._env.update(
            FLWR_HOME=str(home),
            FLWR_TELEMETRY_ENABLED="0",
            FLWR_DISABLE_UPDATE_CHECK="1",
            FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
            FLWR_SUPEREXEC_TASK_POLL_INTERVAL="0.2",
            PATH=str(self._bin) + os.pathsep + os.environ.get("PATH", ""),
        )
        link, n, where = f"127.0.0.1:{link_port}", self.num_nodes, self._bin
        try:
            self._spawn("superlink", superlink_command(link_port, host="127.0.0.1", bin_dir=where))
            self._wait_healthy(link_port)
            for i, port in enumerate(node_ports):
                self._spawn(
                    f"supernode-{i}", supernode_command(link, i, n, port=port, bin_dir=where)
                )
        except BaseException:
            self.close()
            raise
        return self

    def run(self, settings: FederatedSettings, timeout: float = 600) -> list[dict[str, float]]:
        """``settings`` run by ``flwr run``: the ServerApp's ``{"round", "val_accuracy",
        "test_accuracy"}`` per round, or :class:`LearningStateError` with Flower's status."""
        if not self._procs:
            raise LearningStateError("the Flower deployment is not started")
        if settings.num_nodes != self.num_nodes:
            raise InvalidRequestError(
                f"{settings.num_nodes} nodes asked, {self.num_nodes} deployed"
            )
        self._runs += 1
        out = self.work_dir / f"rounds-{self._runs}.jsonl"
        out.unlink(missing_ok=True)
        config = {**settings.to_run_config(), "out-path": str(out)}
        argv = ["run", str(FAB_DIR), CONNECTION, "--stream", "--run-config", run_config_arg(config)]
        try:
            done = self._flwr(argv, timeout)
        except subprocess.TimeoutExpired as exc:
            text = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else ""
            message = f"Flower run still going after {timeout:g} s:\n{_tail(text)}"
            raise LearningStateError(message) from None
        (self.logs / f"flwr-run-{self._runs}.log").write_text(done.stdout, encoding="utf-8")
        found = _RUN_ID.search(done.stdout)
        if done.returncode != 0 or found is None:
            raise LearningStateError(f"flwr run failed:\n{_tail(done.stdout)}")
        status, details = self._status(found.group(1))
        if status != "finished:completed":
            raise LearningStateError(f"Flower run ended {status}: {details}\n{_tail(done.stdout)}")
        if not out.exists():
            raise LearningStateError(f"Flower run completed without writing {out}")
        lines = out.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def close(self) -> None:
        """Stop the SuperNodes, then the SuperLink, then whatever they left running."""
        procs, self._procs = self._procs, []
        for _, proc in reversed(procs):
            kids = _descendants(proc.pid)
            proc.terminate()  # a no-op once it has exited
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(pid_alive(k) for k in kids):
                time.sleep(0.1)
            for kid in filter(pid_alive, kids):
                with suppress(ProcessLookupError):
                    os.kill(kid, signal.SIGKILL)
        for handle in self._files:
            handle.close()
        self._files = []

    def _flwr(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """``flwr ARGV...`` against this deployment, stdout and stderr together."""
        cmd = [str(self._bin / "flwr"), *argv]
        return subprocess.run(
            cmd, env=self._env, timeout=timeout, stdout=PIPE, stderr=STDOUT, text=True
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        handle = (self.logs / f"{name}.log").open("wb")
        self._files.append(handle)
        proc = Popen(argv, env=self._env, cwd=self.work_dir, stdout=handle, stderr=STDOUT)
        self._procs.append((name, proc))

    def _wait_healthy(self, port: int) -> None:
        deadline = time.monotonic() + self._start_timeout
        url = f"http://127.0.0.1:{port}/health"
        while time.monotonic() < deadline:
            for name, proc in self._procs:
                if proc.poll() is not None:
                    text = (self.logs / f"{name}.log").read_text(errors="replace")
                    raise LearningStateError(f"{name} exited at start:\n{_tail(text)}")
            with suppress(OSError), urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
            time.sleep(0.3)
        raise LearningStateError(f"the SuperLink was not healthy after {self._start_timeout:g} s")

    def _status(self, run_id: str) -> tuple[str, str]:
        """The run's status and details, once Flower has marked it finished (or 30 s)."""
        argv = ["ls", CONNECTION, "--run-id", run_id, "--format", "json"]
        status, details = "unknown", ""
        for _ in range(60):
            out = self._flwr(argv, 60).stdout
            try:
                row = json.JSONDecoder().raw_decode(out, out.index("{"))[0]["runs"][0]
                status, details = str(row["status"]), str(row.get("status-details", ""))
            except (ValueError, KeyError, IndexError, TypeError):
                details = _tail(out, 10)
            if status.startswith("finished"):
                break
            time.sleep(0.5)
        return status, details


def _free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that are free now (held open together)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
