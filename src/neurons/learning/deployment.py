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

:class:`SuperLinkClient` is the ``flwr run`` side against any SuperLink (the loopback one or
another machine's): it follows the run's log stream, where the ServerApp prints one
``neurons-round {json}`` line per round, so a run's rounds are known as they end even when the
SuperLink's disk is out of reach. :func:`run_superlink` and :func:`run_supernode` are
``neurons learn superlink`` and ``neurons learn node``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import ExitStack, suppress
from pathlib import Path
from subprocess import PIPE, STDOUT, Popen
from typing import IO, Any

from neurons.errors import InvalidRequestError, LearningStateError
from neurons.learning.federated import FederatedSettings

__all__ = [
    "FAB_DIR",
    "ROUND_MARK",
    "FlowerDeployment",
    "SuperLinkClient",
    "check_address",
    "flower_env",
    "run_config_arg",
    "run_superlink",
    "run_supernode",
    "stop_process_tree",
    "superlink_command",
    "supernode_command",
]

FAB_DIR = Path(__file__).parent / "flower_fab"
CONNECTION = "neurons-local"
_RUN_ID = re.compile(r"Successfully started run (\d+)")
# The ServerApp prints this before each round's JSON; `flwr run --stream` relays it.
ROUND_MARK = "neurons-round "
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
RoundSeen = Callable[[dict[str, float]], None]


def _program(name: str, bin_dir: Path | None, port: int) -> str:
    if not 0 < port < 65536:
        raise InvalidRequestError(f"port must be 1-65535, got {port}")
    return name if bin_dir is None else str(bin_dir / name)


def check_address(address: str) -> str:
    """``address`` if it is ``HOST:PORT`` (``[IPv6]:PORT`` too) with a port in 1-65535.

    >>> check_address("10.0.0.5:8000")
    '10.0.0.5:8000'
    >>> check_address("localhost")
    Traceback (most recent call last):
    ...
    neurons.errors.InvalidRequestError: superlink must be HOST:PORT, got 'localhost'
    """
    found = _ADDRESS.match(address)
    if found is None or not 0 < int(found.group(2)) < 65536:
        raise InvalidRequestError(f"superlink must be HOST:PORT, got {address!r}")
    return address


def flower_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment for Flower's programs: no telemetry or update check, no
    runtime dependency installation (it would pull CUDA torch), ``bin_dir`` first on PATH
    (a SuperNode starts ``flwr-clientapp`` by name)."""
    env = dict(os.environ)
    env.update(
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        FLWR_SUPEREXEC_TASK_POLL_INTERVAL="0.2",
        PATH=str(bin_dir) + os.pathsep + os.environ.get("PATH", ""),
        **extra,
    )
    return env


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
    check_address(superlink)
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


def stop_process_tree(proc: subprocess.Popen[Any], wait_s: float = 10.0) -> None:
    """SIGTERM ``proc`` (SIGKILL after ``wait_s``), give what it started 5 s to follow, then
    SIGKILL those left: Flower starts its superexecs in new sessions, out of its group."""
    kids = _descendants(proc.pid)
    proc.terminate()  # a no-op once it has exited
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(pid_alive(k) for k in kids):
        time.sleep(0.1)
    for kid in filter(pid_alive, kids):
        with suppress(ProcessLookupError):
            os.kill(kid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    with suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class SuperLinkClient:
    """``flwr`` against the SuperLink at ``address``, with a ``FLWR_HOME`` of its own under
    ``work_dir`` naming it (``flwr run`` takes a connection name, not an address)."""

    def __init__(self, address: str, work_dir: Path | str, *, bin_dir: Path | None = None) -> None:
        self.address = check_address(address)
        self.work_dir = Path(work_dir).resolve()
        self.logs = self.work_dir / "logs"
        self._bin = bin_dir or Path(sys.executable).parent
        home = self.work_dir / "flwr_home"
        home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{address}"\ninsecure = true\n'
        )
        self.env = flower_env(self._bin, FLWR_HOME=str(home))
        self._runs = 0

    def run(
        self,
        settings: FederatedSettings,
        on_round: RoundSeen | None = None,
        *,
        timeout: float = 600,
        stop: threading.Event | None = None,
    ) -> list[dict[str, float]]:
        """``settings`` run by ``flwr run``: the ServerApp's ``{"round", "val_accuracy",
        "test_accuracy"}`` per round, each handed to ``on_round`` as it arrives, or
        :class:`LearningStateError` with Flower's status. ``stop`` set, or ``timeout``
        passed, stops the Flower run; an error raised by ``on_round`` stops it too."""
        self._runs += 1
        config = run_config_arg(settings.to_run_config())
        argv = ["run", str(FAB_DIR), CONNECTION, "--stream", "--run-config", config]
        proc = Popen(
            [str(self._bin / "flwr"), *argv],
            env=self.env,
            stdout=PIPE,
            stderr=STDOUT,
            text=True,
            errors="replace",
        )
        why: list[str] = []  # set by the watcher when it ended the stream
        watcher = threading.Thread(target=self._watch, args=(proc, timeout, stop, why), daemon=True)
        watcher.start()
        lines: list[str] = []
        rows: list[dict[str, float]] = []
        run_id = ""
        finished = False
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if not run_id and (found := _RUN_ID.search(line)):
                    run_id = found.group(1)
                if ROUND_MARK in line:
                    row = json.loads(line.split(ROUND_MARK, 1)[1])
                    rows.append(row)
                    if on_round is not None:
                        on_round(row)
            proc.wait()
            finished = not why
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            (self.logs / f"flwr-run-{self._runs}.log").write_text("".join(lines), "utf-8")
            if run_id and not finished:
                self.flwr(["stop", run_id, CONNECTION], 60)  # else it trains on, unseen
        text = "".join(lines)
        if why:
            raise LearningStateError(f"Flower run {run_id or '?'} {why[0]}:\n{_tail(text)}")
        if proc.returncode != 0 or not run_id:
            raise LearningStateError(f"flwr run failed:\n{_tail(text)}")
        status, details = self._status(run_id)
        if status != "finished:completed":
            raise LearningStateError(f"Flower run ended {status}: {details}\n{_tail(text)}")
        if len(rows) != settings.rounds:
            raise LearningStateError(
                f"Flower run completed with {len(rows)} of {settings.rounds} rounds reported"
            )
        return rows

    def flwr(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """``flwr ARGV...`` against this SuperLink, stdout and stderr together."""
        cmd = [str(self._bin / "flwr"), *argv]
        return subprocess.run(
            cmd, env=self.env, timeout=timeout, stdout=PIPE, stderr=STDOUT, text=True
        )

    @staticmethod
    def _watch(
        proc: Popen[str], timeout: float, stop: threading.Event | None, why: list[str]
    ) -> None:
        """End ``proc``'s stream when ``stop`` is set or ``timeout`` passes (the reader
        blocks on the stream, so only closing it wakes the reader)."""
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if stop is not None and stop.is_set():
                why.append("stopped")
            elif time.monotonic() > deadline:
                why.append(f"still going after {timeout:g} s")
            if why:
                proc.kill()
                return
            time.sleep(0.2)

    def _status(self, run_id: str) -> tuple[str, str]:
        """The run's status and details, once Flower has marked it finished (or 30 s)."""
        argv = ["ls", CONNECTION, "--run-id", run_id, "--format", "json"]
        status, details = "unknown", ""
        for _ in range(60):
            out = self.flwr(argv, 60).stdout
            try:
                row = json.JSONDecoder().raw_decode(out, out.index("{"))[0]["runs"][0]
                status, details = str(row["status"]), str(row.get("status-details", ""))
            except (ValueError, KeyError, IndexError, TypeError):
                details = _tail(out, 10)
            if status.startswith("finished"):
                break
            time.sleep(0.5)
        return status, details


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
        self._client: SuperLinkClient | None = None

    @property
    def pids(self) -> list[int]:
        """The SuperLink's and SuperNodes' pids and those of their live descendants."""
        tops = [proc.pid for _, proc in self._procs]
        return tops + [kid for pid in tops for kid in _descendants(pid)]

    @property
    def client(self) -> SuperLinkClient:
        """``flwr`` against this deployment's SuperLink (once started)."""
        if self._client is None:
            raise LearningStateError("the Flower deployment is not started")
        return self._client

    def __enter__(self) -> FlowerDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> FlowerDeployment:
        if self._procs:
            raise LearningStateError("the Flower deployment is already started")
        link_port, *node_ports = _free_ports(self.num_nodes + 1)
        link, n, where = f"127.0.0.1:{link_port}", self.num_nodes, self._bin
        self._client = SuperLinkClient(link, self.work_dir, bin_dir=where)
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

    def run(
        self,
        settings: FederatedSettings,
        timeout: float = 600,
        *,
        on_round: RoundSeen | None = None,
        stop: threading.Event | None = None,
    ) -> list[dict[str, float]]:
        """``settings`` run by ``flwr run`` (see :meth:`SuperLinkClient.run`)."""
        if not self._procs:
            raise LearningStateError("the Flower deployment is not started")
        if settings.num_nodes != self.num_nodes:
            raise InvalidRequestError(
                f"{settings.num_nodes} nodes asked, {self.num_nodes} deployed"
            )
        return self.client.run(settings, on_round, timeout=timeout, stop=stop)

    def close(self) -> None:
        """Stop the SuperNodes, then the SuperLink, then whatever they left running."""
        procs, self._procs = self._procs, []
        for _, proc in reversed(procs):
            stop_process_tree(proc)
        for handle in self._files:
            handle.close()
        self._files = []

    def _spawn(self, name: str, argv: list[str]) -> None:
        handle = (self.logs / f"{name}.log").open("wb")
        self._files.append(handle)
        env = self.client.env
        proc = Popen(argv, env=env, cwd=self.work_dir, stdout=handle, stderr=STDOUT)
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


def run_superlink(port: int = 8000, *, host: str = "0.0.0.0") -> None:
    """Become a SuperLink on ``host:port`` (see :func:`run_supernode`)."""
    bin_dir = Path(sys.executable).parent
    _become(superlink_command(port, host=host, bin_dir=bin_dir), bin_dir)


def run_supernode(
    superlink: str, partition_id: int, num_partitions: int, *, port: int = 9094
) -> None:
    """Become a SuperNode for partition ``partition_id`` of ``num_partitions`` against
    ``superlink`` (this process is replaced, so a signal sent to it reaches the SuperNode
    and no orphan is left). Returns only by raising: a bad argument, or a failed exec."""
    bin_dir = Path(sys.executable).parent
    argv = supernode_command(superlink, partition_id, num_partitions, port=port, bin_dir=bin_dir)
    _become(argv, bin_dir)


def _become(argv: list[str], bin_dir: Path) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, flower_env(bin_dir))


def _free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that are free now (held open together)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
