"""``neurons run``: a one-shot streamed generation, or ``ollama run``'s interactive chat.

The chat reads lines with plain :func:`input` (readline editing on a terminal), keeps the
conversation and sends all of it to ``/api/chat`` each turn; tools are never sent. One
``asyncio.Runner`` and one client live for the whole session, so a turn stopped with Ctrl-C
(the runner cancels the request and raises KeyboardInterrupt) leaves both usable for the
next one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

import typer

from neurons.cli.common import INTERRUPTED
from neurons.cli.ollama_client import OllamaAPI, call, reaching
from neurons.cli.ollama_text import human_bytes, metrics_summary, show_field, show_info
from neurons.errors import ModelfileError, NeuronsError
from neurons.modelfile import coerce_parameter

__all__ = ["ProgressPrinter", "ReplyPrinter", "RunOptions", "interactive", "run_once"]

T = TypeVar("T")

HINT = "Send a message (/? for help)"
HELP = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message.
"""
SET_HELP = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking
"""
SHOW_HELP = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template
"""
SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + a            Move to the beginning of the line (Home)
  Ctrl + e            Move to the end of the line (End)
  Ctrl + k            Delete the sentence after the cursor
  Ctrl + u            Delete the sentence before the cursor
  Ctrl + w            Delete the word before the cursor

  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit neurons (/bye)
"""
PARAMETER_HELP = """Available Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter num_gpu <int>          The number of layers to send to the GPU
  /set parameter stop <string> <string> ...   Set the stop parameters
"""
_DIM, _BOLD, _RESET = "\x1b[2m", "\x1b[1m", "\x1b[0m"


def _color(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


@dataclass
class RunOptions:
    """What every request of a ``run`` carries besides the prompt or messages."""

    model: str
    options: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    format: str | None = None
    keep_alive: str | int | None = None
    think: bool | None = None
    hide_thinking: bool = False
    verbose: bool = False

    def infer_think(self, show: Mapping[str, Any]) -> None:
        """Think by default where the model can, as ollama does, unless told either way."""
        if self.think is None and "thinking" in (show.get("capabilities") or []):
            self.think = True

    def body(self, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, **fields}
        if self.options:
            body["options"] = dict(self.options)
        if self.format:
            # "json", or a JSON schema given as text (as ollama's --format takes it)
            try:
                body["format"] = json.loads(self.format)
            except ValueError:
                body["format"] = self.format
        if self.think is not None:
            body["think"] = self.think
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        return body


class ReplyPrinter:
    """Prints a streamed reply as it arrives: thinking between ``Thinking...`` and
    ``...done thinking.`` (dimmed on a terminal, left out when hidden), then the content;
    keeps both, and the last chunk (its timings), for the history and ``--verbose``."""

    def __init__(self, out: TextIO, *, hide_thinking: bool = False) -> None:
        self.out = out
        self.hide_thinking = hide_thinking
        self.color = _color(out)
        self.content: list[str] = []
        self.thinking: list[str] = []
        self.final: dict[str, Any] | None = None
        self.written = False
        self._thinking_open = False

    def _write(self, text: str) -> None:
        self.written = True
        self.out.write(text)
        self.out.flush()

    def feed(self, item: dict[str, Any]) -> None:
        message = item.get("message")
        if isinstance(message, dict):  # /api/chat
            content, thinking = message.get("content") or "", message.get("thinking") or ""
        else:  # /api/generate
            content, thinking = item.get("response") or "", item.get("thinking") or ""
        if thinking:
            self.thinking.append(thinking)
            if not self.hide_thinking:
                if not self._thinking_open:
                    self._thinking_open = True
                    head = "Thinking...\n"
                    self._write(f"{_DIM}{_BOLD}{head}{_RESET}{_DIM}" if self.color else head)
                self._write(thinking)
        if content:
            self._end_thinking()
            self.content.append(content)
            self._write(content)
        if item.get("done"):
            self.final = item

    def _end_thinking(self) -> None:
        if not self._thinking_open:
            return
        self._thinking_open = False
        tail = ("" if "".join(self.thinking).endswith("\n") else "\n") + "...done thinking.\n\n"
        self._write(f"{_RESET}{_DIM}{_BOLD}{tail}{_RESET}" if self.color else tail)

    def finish(self, err: TextIO, verbose: bool) -> None:
        """End the reply as ollama does (a blank line), then the timings if asked."""
        self._end_thinking()
        self._write("\n\n")
        if verbose and self.final is not None:
            err.write("".join(line + "\n" for line in metrics_summary(self.final)))
            err.flush()

    def stop(self, *, newline: bool = True) -> None:
        """The reply was cut off: reset the colour and leave the cursor on a fresh line."""
        if self._thinking_open and self.color:
            self._write(_RESET)
        self._thinking_open = False
        if newline:
            self._write("\n")

    def message(self) -> dict[str, Any]:
        reply = {"role": "assistant", "content": "".join(self.content)}
        if self.thinking:
            reply["thinking"] = "".join(self.thinking)
        return reply


class ProgressPrinter:
    """Pull and create progress: each new status on a line of its own, a layer's
    percentage rewritten in place on a terminal (else printed as it starts and ends)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._status: str | None = None
        self._open = False
        self._printed: set[tuple[str, bool]] = set()

    def _line(self, text: str, *, keep_open: bool = False) -> None:
        if self.tty and keep_open:
            self.out.write(f"\r{text}\x1b[K")
        else:
            self.out.write(("\r" if self._open else "") + text + "\n")
        self._open = self.tty and keep_open
        self.out.flush()

    def __call__(self, item: Mapping[str, Any]) -> None:
        status = str(item.get("status") or "")
        total, done = int(item.get("total") or 0), int(item.get("completed") or 0)
        if item.get("digest") and total:
            percent = min(100, done * 100 // total)
            text = f"{status}: {percent:3d}% {human_bytes(done)}/{human_bytes(total)}"
            if self._open and status != self._status:
                self.close()
            self._status = status
            finished = (status, percent == 100)
            if self.tty:
                self._line(text, keep_open=percent < 100)
            elif finished not in self._printed:
                self._printed.add(finished)
                self._line(text)
        elif status and status != self._status:
            self.close()
            self._status = status
            self._line(status)

    def close(self) -> None:
        if self._open:
            self.out.write("\n")
            self.out.flush()
            self._open = False


def run_once(url: str, opts: RunOptions, prompt: str) -> None:
    """Generate once from ``prompt``, streaming the answer to stdout."""

    async def work(client: OllamaAPI) -> None:
        progress = ProgressPrinter(sys.stderr)
        opts.infer_think(await client.show_or_pull(opts.model, progress))
        progress.close()
        printer = ReplyPrinter(sys.stdout, hide_thinking=opts.hide_thinking)
        body = opts.body(prompt=prompt, **({"system": opts.system} if opts.system else {}))
        async for item in client.stream_generate(body):
            printer.feed(item)
        printer.finish(sys.stderr, opts.verbose)

    call(url, work)


def interactive(url: str, opts: RunOptions, read: Callable[[str], str] = input) -> None:
    """Load the model (pulling it if missing), then chat until /bye or Ctrl-D."""
    if sys.stdin.isatty():
        import readline  # noqa: F401 - gives input() line editing and history

    with asyncio.Runner() as runner:
        client = OllamaAPI.connect(url)
        try:
            with reaching(url):
                progress = ProgressPrinter(sys.stderr)
                opts.infer_think(runner.run(client.show_or_pull(opts.model, progress)))
                progress.close()
                runner.run(client.load(opts.model, opts.keep_alive))
            ChatRepl(client, runner, url, opts, read).loop()
        except KeyboardInterrupt:
            typer.echo("", err=True)
            raise typer.Exit(INTERRUPTED) from None
        finally:
            runner.run(client.aclose())


class ChatRepl:
    """The prompt loop: slash commands, multi-line input, and one streamed turn per
    message."""

    def __init__(
        self,
        client: OllamaAPI,
        runner: asyncio.Runner,
        url: str,
        opts: RunOptions,
        read: Callable[[str], str] = input,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.client, self.runner, self.url, self.opts = client, runner, url, opts
        self.read, self.out, self.err = read, out or sys.stdout, err or sys.stderr
        self.history: list[dict[str, Any]] = []

    def _print(self, text: str = "", *, err: bool = False) -> None:
        stream = self.err if err else self.out
        stream.write(text + "\n")
        stream.flush()

    def loop(self) -> None:
        self._print(f"{_DIM}{HINT}{_RESET}" if _color(self.out) else HINT)
        while True:
            try:
                text, multiline = self._read_message()
            except EOFError:  # Ctrl-D
                self._print()
                return
            except KeyboardInterrupt:  # Ctrl-C at the prompt drops the line, as in ollama
                self._print("\nUse Ctrl + d or /bye to exit.")
                continue
            if not text:
                continue
            if text.startswith("/") and not multiline:
                if not self._command(text):
                    return
                continue
            self._send(text)

    def _read_message(self) -> tuple[str, bool]:
        """One message: a line, or the lines between a ``\"\"\"`` and the next (the first
        may carry text after it, the last before it)."""
        line = self.read(">>> ")
        if not line.startswith('"""'):
            return line.strip(), False
        rest, parts = line[3:], []
        while not rest.endswith('"""'):
            parts.append(rest)
            rest = self.read("... ")
        parts.append(rest[:-3])
        return "\n".join(parts).strip(), True

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T | None:
        """Await one request; its failure (or Ctrl-C) is reported and the chat goes on."""
        try:
            with reaching(self.url):
                return self.runner.run(coroutine)
        except KeyboardInterrupt:
            self._print()
        except NeuronsError as exc:
            self._print(f"Error: {exc}", err=True)
        return None

    # -- a turn -----------------------------------------------------------------------------

    def _send(self, text: str) -> None:
        self.history.append({"role": "user", "content": text})
        system = [{"role": "system", "content": self.opts.system}] if self.opts.system else []
        body = self.opts.body(messages=system + self.history)
        printer = ReplyPrinter(self.out, hide_thinking=self.opts.hide_thinking)

        async def stream() -> None:
            async for item in self.client.stream_chat(body):
                printer.feed(item)

        try:
            with reaching(self.url):
                self.runner.run(stream())
        except KeyboardInterrupt:
            printer.stop()
        except NeuronsError as exc:
            printer.stop(newline=printer.written)
            self._print(f"Error: {exc}", err=True)
        else:
            printer.finish(self.err, self.opts.verbose)
        reply = printer.message()
        if reply["content"] or reply.get("thinking"):
            self.history.append(reply)  # a reply cut off with Ctrl-C is kept as far as it got
        else:
            self.history.pop()  # nothing came back: forget the question, keeping turns paired

    # -- slash commands ---------------------------------------------------------------------

    def _command(self, line: str) -> bool:
        """Run one slash command; False means the session ends."""
        words = line.split()
        name, args = words[0], words[1:]
        if name in ("/bye", "/exit"):
            return False
        if name in ("/?", "/help"):
            topic = args[0] if args else ""
            pages = {"set": SET_HELP, "show": SHOW_HELP, "shortcuts": SHORTCUTS}
            self._print(pages.get(topic, HELP), err=True)
        elif name == "/set":
            self._set(args, line)
        elif name == "/show":
            self._show(args)
        elif name == "/clear":
            self.history.clear()
            self._print("Cleared session context")
        else:
            self._print(f"Unknown command '{name}'. Type /? for help")
        return True

    def _set(self, args: list[str], line: str) -> None:
        what = args[0] if args else ""
        flags: dict[str, tuple[str, Callable[[], None]]] = {
            "verbose": ("Set 'verbose' mode.", lambda: setattr(self.opts, "verbose", True)),
            "quiet": ("Set 'quiet' mode.", lambda: setattr(self.opts, "verbose", False)),
            "think": ("Set 'think' mode.", lambda: setattr(self.opts, "think", True)),
            "nothink": ("Set 'nothink' mode.", lambda: setattr(self.opts, "think", False)),
            "noformat": ("Disabled format.", lambda: setattr(self.opts, "format", None)),
            # neurons never wraps words; accepted so that ollama habits do not error
            "wordwrap": ("Set 'wordwrap' mode.", lambda: None),
            "nowordwrap": ("Set 'nowordwrap' mode.", lambda: None),
        }
        if what in flags:
            message, apply = flags[what]
            apply()
            self._print(message)
        elif what == "format" and len(args) == 2:
            self.opts.format = args[1]
            self._print(f"Set format to '{args[1]}' mode.")
        elif what == "system" and len(args) > 1:
            text = line.split(None, 2)[2].strip()
            text = text.removeprefix('"""').removesuffix('"""')
            if len(text) > 1 and text[0] == text[-1] == '"':
                text = text[1:-1]
            self.opts.system = text
            self._print("Set system message.")
        elif what == "parameter" and len(args) >= 3:
            name, values = args[1], args[2:]
            try:
                value = coerce_parameter(name, values if name == "stop" else " ".join(values))
            except ModelfileError as exc:
                self._print(f"Couldn't set parameter: {json.dumps(str(exc))}")
                return
            self.opts.options[name] = value
            self._print(f"Set parameter '{name}' to '{', '.join(values)}'")
        elif what == "parameter":
            self._print(PARAMETER_HELP, err=True)
        else:
            self._print(SET_HELP, err=True)

    def _show(self, args: list[str]) -> None:
        what = args[0] if args else ""
        if what not in ("info", "license", "modelfile", "parameters", "system", "template"):
            self._print(SHOW_HELP, err=True)
            return
        show = self._run(self.client.show(self.opts.model))
        if show is None:
            return
        if what == "info":
            self._print(show_info(show))
        elif what == "system" and self.opts.system:
            self._print(self.opts.system + "\n")
        elif what == "parameters":
            text = show_field(show, "parameters")
            if text:
                self._print("Model defined parameters:\n" + text)
            if self.opts.options:
                self._print("User defined parameters:")
                for name, value in self.opts.options.items():
                    self._print(f"{name:<30} {value}")
            if not text and not self.opts.options:
                self._print("No parameters were specified for this model.")
        else:
            text = show_field(show, what)
            empty = {
                "license": "No license was specified for this model.",
                "system": "No system message was specified for this model.",
                "template": "No prompt template was specified for this model.",
            }
            self._print(text + "\n" if text else empty.get(what, ""))
