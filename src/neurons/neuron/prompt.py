"""Turning requests into prompt text: Modelfile TEMPLATE (Go), GGUF chat template (Jinja), or
Ollama's default ``{{ .Prompt }}``.

Order of precedence, as in Ollama: a TEMPLATE layer wins; otherwise the chat template stored in
the GGUF; otherwise the plain prompt. Go templates that do not use ``.Messages`` are "legacy":
Ollama renders them once per user turn with ``.Response`` filled from the assistant reply that
followed, and cuts the last rendering at ``.Response``; we do the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from neurons.errors import InvalidRequestError
from neurons.ollama import gotemplate

__all__ = ["DEFAULT_TEMPLATE", "ChatMessage", "PromptTemplate"]

DEFAULT_TEMPLATE = "{{ .Prompt }}"
_RESPONSE_MARK = "\x00neurons-response\x00"


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


class PromptTemplate:
    """Renders a conversation for one model."""

    def __init__(
        self,
        go_template: str | None,
        jinja_template: str | None,
        bos_token: str = "",
        eos_token: str = "",
    ) -> None:
        self.go_template = go_template
        self.jinja_template = jinja_template if go_template is None else None
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._go = gotemplate.parse(go_template or DEFAULT_TEMPLATE)
        self._legacy = ".Messages" not in (go_template or DEFAULT_TEMPLATE)
        self._jinja = None
        if self.jinja_template:
            env = ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
            )
            env.globals["raise_exception"] = _raise_exception
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            try:
                self._jinja = env.from_string(self.jinja_template)
            except JinjaTemplateError as exc:
                raise InvalidRequestError(f"invalid chat template: {exc}") from exc

    @property
    def source(self) -> str:
        return self.go_template or self.jinja_template or DEFAULT_TEMPLATE

    def render(self, messages: list[ChatMessage]) -> str:
        """Prompt text ready for the model to continue as the assistant."""
        if self._jinja is not None:
            try:
                text = self._jinja.render(
                    messages=[{"role": m.role, "content": m.content} for m in messages],
                    add_generation_prompt=True,
                    bos_token=self.bos_token,
                    eos_token=self.eos_token,
                )
            except JinjaTemplateError as exc:
                raise InvalidRequestError(f"chat template failed: {exc}") from exc
            # llama.cpp adds BOS itself when the vocabulary asks for it.
            if self.bos_token and text.startswith(self.bos_token):
                text = text[len(self.bos_token) :]
            return text
        if not self._legacy:
            system = next((m.content for m in reversed(messages) if m.role == "system"), "")
            prompt = next((m.content for m in reversed(messages) if m.role == "user"), "")
            return self._go.render(
                {
                    "System": system,
                    "Prompt": prompt,
                    "Response": "",
                    "Messages": [{"Role": m.role, "Content": m.content} for m in messages],
                }
            )
        return self._render_legacy(messages)

    def _render_legacy(self, messages: list[ChatMessage]) -> str:
        system = "\n".join(m.content for m in messages if m.role == "system")
        turns: list[tuple[str, str | None]] = []
        for message in messages:
            if message.role == "user":
                turns.append((message.content, None))
            elif message.role == "assistant":
                if turns and turns[-1][1] is None:
                    turns[-1] = (turns[-1][0], message.content)
                else:
                    turns.append(("", message.content))
        if not turns or turns[-1][1] is not None:
            turns.append(("", None))
        parts: list[str] = []
        for index, (prompt, response) in enumerate(turns):
            last = index == len(turns) - 1
            text = self._go.render(
                {
                    "System": system if index == 0 else "",
                    "Prompt": prompt,
                    "Response": _RESPONSE_MARK if last else (response or ""),
                }
            )
            if last and _RESPONSE_MARK in text:
                text = text[: text.index(_RESPONSE_MARK)]
            parts.append(text)
        return "".join(parts)


def _raise_exception(message: str) -> Any:
    raise InvalidRequestError(f"chat template: {message}")
