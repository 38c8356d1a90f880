"""The Ollama-style commands (``neurons run|list|ps|show|pull|create|cp|rm|stop``).

The formatting functions are tested on their own; the commands run as ``python -m neurons``
subprocesses against the session's real neuron (``NEURONS_HOST``), and the interactive
``neurons run`` in a real pseudo-terminal, driven as a person would type.
"""

from __future__ import annotations

import doctest
import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from neurons.cli import ollama_text
from neurons.cli.chat_repl import ProgressPrinter, ReplyPrinter, RunOptions
from neurons.cli.ollama_client import resolve_host
from neurons.cli.ollama_text import (
    go_duration,
    human_bytes,
    human_duration,
    human_time,
    list_table,
    metrics_summary,
    parse_host,
    processor,
    ps_table,
    show_info,
)
from neurons.neuron.process import NeuronProcess

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

# -- pure parts ------------------------------------------------------------------------------


def test_doctests() -> None:
    result = doctest.testmod(ollama_text)
    assert result.attempted > 20 and result.failed == 0


@pytest.mark.parametrize(
    ("value", "default_port", "url"),
    [
        ("", 11434, "http://127.0.0.1:11434"),
        ("myhost", 11434, "http://myhost:11434"),
        ("myhost:9000", 11434, "http://myhost:9000"),
        ("0.0.0.0", 11434, "http://127.0.0.1:11434"),
        ("0.0.0.0:8000", 11434, "http://127.0.0.1:8000"),
        ("http://myhost", 11434, "http://myhost:80"),
        ("https://myhost", 11434, "https://myhost:443"),
        ("http://myhost:1234/", 11434, "http://myhost:1234"),
        ("http://0.0.0.0:11435", 11434, "http://127.0.0.1:11435"),
        ("[::1]:9000", 11434, "http://[::1]:9000"),
        ("::1", 11434, "http://[::1]:11434"),
        ("[::]", 11434, "http://[::1]:11434"),
        ("  myhost  ", 8000, "http://myhost:8000"),
        ("myhost:notaport", 11434, "http://myhost:11434"),
    ],
)
def test_parse_host(value: str, default_port: int, url: str) -> None:
    assert parse_host(value, default_port) == url


def test_resolve_host_order(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NEURONS_HOST", "NEURONS_PORT", "OLLAMA_HOST"):
        monkeypatch.delenv(name, raising=False)
    env = {"NEURONS_HOST": "n:1", "OLLAMA_HOST": "o:2"}
    assert resolve_host("opt:3", env) == "http://opt:3"
    assert resolve_host(None, env) == "http://n:1"
    assert resolve_host(None, {"OLLAMA_HOST": "o"}) == "http://o:11434"
    assert resolve_host(None, {"OLLAMA_HOST": "0.0.0.0"}) == "http://127.0.0.1:11434"
    assert resolve_host(None, {}) == "http://127.0.0.1:8000"  # the control plane
    monkeypatch.setenv("NEURONS_HOST", "0.0.0.0")  # Settings.host: what `neurons up` binds
    monkeypatch.setenv("NEURONS_PORT", "9000")
    assert resolve_host(None, {}) == "http://127.0.0.1:9000"
    assert resolve_host("somehost", {}) == "http://somehost:9000"


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 KB"),
        (1500, "1.5 KB"),
        (105_000_000, "105 MB"),
        (98_363_720, "98 MB"),
        (2_000_000_000, "2 GB"),
        (4_660_000_000, "4.7 GB"),
        (12_300_000_000, "12 GB"),
    ],
)
def test_human_bytes(size: int, text: str) -> None:
    assert human_bytes(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (59 * 60, "59 minutes"),
        (3600, "About an hour"),
        (5 * 3600, "5 hours"),
        (47 * 3600, "47 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (3 * 365 * 86400, "3 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_human_time() -> None:
    assert human_time(datetime(2025, 6, 1, 11, 58, tzinfo=UTC), "Never", NOW) == "2 minutes ago"
    assert human_time(datetime(2025, 6, 1, 12, 4, 30, tzinfo=UTC), "-", NOW) == (
        "4 minutes from now"
    )
    assert human_time(datetime(2300, 1, 1, tzinfo=UTC), "-", NOW) == "Forever"
    assert human_time(None, "Never", NOW) == "Never"


def test_go_duration_and_processor() -> None:
    assert go_duration(14_443_366_358) == "14.443366358s"
    assert go_duration(3_695_166_109 * 100) == "6m9.5166109s"
    assert go_duration(2 * 3600 * 10**9) == "2h0m0s"
    assert processor(1000, 0) == "100% CPU"
    assert processor(1000, 1000) == "100% GPU"
    assert processor(1000, 400) == "60%/40% CPU/GPU"


def test_tables() -> None:
    model = {
        "name": "smollm2:135m",
        "digest": "12b196e56e7dc08d481e51fad4977351a07e010af0869e21b507506ae9060623",
        "size": 98_363_720,
        "modified_at": "2025-06-01T11:57:30.123456789Z",
    }
    assert list_table([model], now=NOW).splitlines() == [
        "NAME            ID              SIZE     MODIFIED",
        "smollm2:135m    12b196e56e7d    98 MB    2 minutes ago",
    ]
    assert list_table([model], "gemma") == "NAME    ID    SIZE    MODIFIED"
    loaded = {**model, "size": 475_849_792, "size_vram": 0, "context_length": 4096}
    rows = ps_table(
        [
            {**loaded, "expires_at": "2025-06-01T12:04:30Z"},
            {**loaded, "name": "forever:1", "expires_at": "2318-01-01T00:00:00Z"},
        ],
        now=NOW,
    ).splitlines()
    assert rows[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert re.split(r"\s{4,}", rows[1]) == [
        "smollm2:135m",
        "12b196e56e7d",
        "475 MB",
        "100% CPU",
        "4096",
        "4 minutes from now",
    ]
    assert rows[2].endswith("Forever")


def test_show_info_sections() -> None:
    text = show_info(
        {
            "details": {"parameter_size": "134.52M", "quantization_level": "Q4_1"},
            "model_info": {
                "general.architecture": "llama",
                "llama.context_length": 8192,
                "llama.embedding_length": 576,
            },
            "capabilities": ["completion", "tools"],
            "parameters": f'{"num_predict":<30} 8\n{"stop":<30} "<|im_end|>"',
            "system": "Line one.\nLine two.\nLine three.",
            "license": "Apache License\nVersion 2.0",
        }
    )
    assert text.splitlines() == [
        "  Model",
        "    architecture        llama",
        "    parameters          134.52M",
        "    context length      8192",
        "    embedding length    576",
        "    quantization        Q4_1",
        "",
        "  Capabilities",
        "    completion",
        "    tools",
        "",
        "  Parameters",
        "    num_predict    8",
        '    stop           "<|im_end|>"',
        "",
        "  System",
        "    Line one.",
        "    Line two.",
        "    ...",
        "",
        "  License",
        "    Apache License",
        "    Version 2.0",
    ]


def test_verbose_summary_and_printers() -> None:
    final = {
        "done": True,
        "total_duration": 1_500_000_000,
        "load_duration": 2_000_000,
        "prompt_eval_count": 10,
        "prompt_eval_duration": 500_000_000,
        "eval_count": 8,
        "eval_duration": 400_000_000,
    }
    assert metrics_summary(final) == [
        "total duration:       1.5s",
        "load duration:        2ms",
        "prompt eval count:    10 token(s)",
        "prompt eval duration: 500ms",
        "prompt eval rate:     20.00 tokens/s",
        "eval count:           8 token(s)",
        "eval duration:        400ms",
        "eval rate:            20.00 tokens/s",
    ]
    out, err = io.StringIO(), io.StringIO()
    printer = ReplyPrinter(out)
    for item in (
        {"message": {"role": "assistant", "content": "", "thinking": "Hmm"}},
        {"message": {"role": "assistant", "content": "Hi"}},
        {"message": {"role": "assistant", "content": "!"}, **final},
    ):
        printer.feed(item)
    printer.finish(err, verbose=True)
    assert out.getvalue() == "Thinking...\nHmm\n...done thinking.\n\nHi!\n\n"
    assert err.getvalue().startswith("total duration:       1.5s\n")
    assert printer.message() == {"role": "assistant", "content": "Hi!", "thinking": "Hmm"}
    hidden = ReplyPrinter(out := io.StringIO(), hide_thinking=True)
    hidden.feed({"response": "", "thinking": "Hmm"})
    hidden.feed({"response": "Yes"})
    assert out.getvalue() == "Yes"
    progress = ProgressPrinter(out := io.StringIO())
    for update in (
        {"status": "pulling manifest"},
        {"status": "pulling abc", "digest": "sha256:abc", "total": 200, "completed": 0},
        {"status": "pulling abc", "digest": "sha256:abc", "total": 200, "completed": 100},
        {"status": "pulling abc", "digest": "sha256:abc", "total": 200, "completed": 200},
        {"status": "success"},
    ):
        progress(update)
    assert out.getvalue().splitlines() == [
        "pulling manifest",
        "pulling abc:   0% 0 B/200 B",
        "pulling abc: 100% 200 B/200 B",
        "success",
    ]
    options = RunOptions("m", {"num_predict": 8}, format="json", keep_alive=0, think=False)
    assert options.body(prompt="p") == {
        "model": "m",
        "prompt": "p",
        "options": {"num_predict": 8},
        "format": "json",
        "think": False,
        "keep_alive": 0,
    }


# -- the commands against a real neuron ------------------------------------------------------

TINY = "neurons-cli-tiny:latest"


def cli(neuron: NeuronProcess, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEURONS_HOST": neuron.url}
    result = subprocess.run(
        [sys.executable, "-m", "neurons", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check:
        assert result.returncode == 0, (result.stdout, result.stderr)
    return result


@pytest.fixture(scope="module")
def tiny(neuron: NeuronProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A model made with ``neurons create`` whose answers stop after 8 tokens."""
    modelfile = tmp_path_factory.mktemp("modelfile") / "Modelfile"
    modelfile.write_text("FROM smollm2:135m\nPARAMETER num_predict 8\nSYSTEM Be brief.\n")
    created = cli(neuron, "create", TINY, "-f", str(modelfile))
    assert created.stderr.splitlines()[-1] == "success"
    assert "writing manifest" in created.stderr
    try:
        yield TINY
    finally:
        cli(neuron, "rm", TINY, check=False)


def test_list(neuron: NeuronProcess) -> None:
    lines = cli(neuron, "list").stdout.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    row = next(line for line in lines if line.startswith("smollm2:135m "))
    name, digest, size, rest = re.split(r"\s{4,}", row, maxsplit=3)
    assert re.fullmatch(r"[0-9a-f]{12}", digest)
    assert re.fullmatch(r"\d+(\.\d)? MB", size)
    assert rest.endswith("ago")
    assert cli(neuron, "ls", "gemma").stdout.splitlines()[1].startswith("gemma3:270m ")


def test_show(neuron: NeuronProcess) -> None:
    text = cli(neuron, "show", "smollm2:135m").stdout
    assert text.startswith("  Model\n    architecture        llama\n")
    assert re.search(r"^    context length\s+\d+$", text, re.M)
    assert "  Capabilities\n    completion\n" in text
    modelfile = cli(neuron, "show", "--modelfile", "smollm2:135m").stdout
    assert re.search(r"^FROM ", modelfile, re.M) and "TEMPLATE" in modelfile
    missing = cli(neuron, "show", "no-such-model:1", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: model 'no-such-model:1' not found"


def test_cp_and_rm(neuron: NeuronProcess) -> None:
    copied = cli(neuron, "cp", "smollm2:135m", "neurons-cli-copy:1")
    assert copied.stdout == "copied 'smollm2:135m' to 'neurons-cli-copy:1'\n"
    assert "neurons-cli-copy:1 " in cli(neuron, "list").stdout
    assert cli(neuron, "rm", "neurons-cli-copy:1").stdout == "deleted 'neurons-cli-copy:1'\n"
    assert "neurons-cli-copy:1" not in cli(neuron, "list").stdout
    again = cli(neuron, "rm", "neurons-cli-copy:1", check=False)
    assert (again.returncode, again.stderr.startswith("Error: ")) == (1, True)


def test_create_run_ps_stop(neuron: NeuronProcess, tiny: str) -> None:
    assert "num_predict" in cli(neuron, "show", tiny, "--parameters").stdout
    assert cli(neuron, "show", tiny, "--system").stdout == "Be brief.\n"
    answer = cli(neuron, "run", tiny, "Say hi", "--verbose")
    assert answer.stdout.strip() and answer.stdout.endswith("\n\n")
    assert re.search(r"^eval count:\s+\d+ token\(s\)$", answer.stderr, re.M)
    ps = cli(neuron, "ps").stdout.splitlines()
    assert ps[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    row = next(line for line in ps if line.startswith(tiny + " "))
    assert "100% CPU" in row and row.endswith("from now")
    assert cli(neuron, "stop", tiny).stdout == ""
    assert tiny not in cli(neuron, "ps").stdout
    missing = cli(neuron, "stop", "no-such-model:1", check=False)
    assert missing.stderr.strip() == 'Error: couldn\'t find model "no-such-model:1" to stop'


def test_errors_name_the_server(neuron: NeuronProcess) -> None:
    gone = cli(neuron, "list", "--host", "127.0.0.1:9", check=False)
    assert gone.returncode == 1
    assert gone.stderr.startswith("Error: could not connect to a neurons server at ")
    assert "http://127.0.0.1:9" in gone.stderr
    # offline there is no registry: the pull fails, and says why
    pulled = cli(neuron, "pull", "no-such-model:1", check=False)
    assert pulled.returncode == 1
    assert "pulling manifest" in pulled.stderr and "Error: " in pulled.stderr


# -- the interactive chat in a real terminal -------------------------------------------------


def _take_terminal() -> None:  # runs in the child: the pty becomes its controlling terminal
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A child process on a pseudo-terminal, read and typed into like a person would."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.process = subprocess.Popen(
            args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(slave)
        self.fd = master
        self.output = b""
        self.seen = 0

    def expect(self, pattern: str, timeout: float = 60.0) -> str:
        """Wait for ``pattern`` (a regex) after what was already matched; return the text
        from there up to the end of the match."""
        regex = re.compile(pattern.encode(), re.S)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output, self.seen)
            if match:
                text = self.output[self.seen : match.end()].decode(errors="replace")
                self.seen = match.end()
                return text
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select([self.fd], [], [], min(remaining, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    break
                self.output += chunk
        tail = self.output[self.seen :].decode(errors="replace")
        raise AssertionError(f"{pattern!r} not seen within {timeout}s; after last match: {tail!r}")

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        os.close(self.fd)


def _reply(text: str, typed: str) -> str:
    """What the model said: the turn's output without the echoed input and the prompt."""
    return text.split(typed, 1)[-1].replace(">>> ", "").strip()


def test_interactive_run_in_a_terminal(neuron: NeuronProcess) -> None:
    env = {**os.environ, "NEURONS_HOST": neuron.url, "TERM": "dumb"}
    terminal = Terminal([sys.executable, "-m", "neurons", "run", "smollm2:135m"], env)
    try:
        assert "Send a message (/? for help)" in terminal.expect(">>> ", 120)
        terminal.type("/set parameter num_predict 8")
        terminal.expect(r"Set parameter 'num_predict' to '8'.*>>> ")
        terminal.type("Say hi")
        assert _reply(terminal.expect(r"Say hi.*\n.*>>> ", 120), "Say hi")

        terminal.type('"""')
        terminal.expect(r"\.\.\. ")
        terminal.type("Name a colour")
        terminal.expect(r"\.\.\. ")
        terminal.type('and a fruit."""')
        assert _reply(terminal.expect(r'fruit\."""\s*\n.*>>> ', 120), 'fruit."""')

        terminal.type("/show info")
        shown = terminal.expect(r"  Capabilities.*>>> ")
        assert "  Model" in shown and "architecture        llama" in shown

        # Ctrl-C stops a long reply and the chat goes on
        terminal.type("/set parameter num_predict 400")
        terminal.expect("Set parameter 'num_predict' to '400'.*>>> ")
        terminal.type("Tell me a long story about a dragon")
        terminal.expect(r"dragon\r?\n\s*\S", 120)  # the reply has started
        os.write(terminal.fd, b"\x03")
        terminal.expect(">>> ", 30)
        terminal.type("/clear")
        terminal.expect("Cleared session context.*>>> ")
        terminal.type("/set parameter num_predict 4")
        terminal.expect("Set parameter 'num_predict' to '4'.*>>> ")
        terminal.type("Hello again")  # the session still talks after a stopped reply
        assert _reply(terminal.expect(r"again.*\n.*>>> ", 120), "again")

        terminal.type("/bye")
        assert terminal.process.wait(30) == 0
    finally:
        terminal.close()
