"""Turning requests into prompt text: Modelfile TEMPLATE (Go), GGUF chat template (Jinja), or
Ollama's default ``{{ .Prompt }}``.

Order of precedence, as in Ollama: a TEMPLATE layer wins; otherwise the chat template stored in
the GGUF; otherwise the plain prompt. The values a Go template sees are Ollama's
(``template.Execute``): with a ``suffix``, only ``.Prompt`` and ``.Suffix``; for a template that
uses ``.Messages``, the collated messages (consecutive turns of one role joined), ``.System``,
``.Tools`` and the think flags; otherwise ("legacy") the template is rendered once per user
turn with ``.Response`` filled from the assistant reply that followed, and the last rendering
is cut at ``.Response``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from neurons.errors import InvalidRequestError
from neurons.ollama import gotemplate
from neurons.ollama.capabilities import model_capabilities
from neurons.ollama.messages import Message, template_messages, template_tools

__all__ = ["DEFAULT_TEMPLATE", "PromptInput", "PromptTemplate"]

DEFAULT_TEMPLATE = "{{ .Prompt }}"
_RESPONSE_MARK = "\x00neurons-response\x00"


@dataclass(frozen=True)
class PromptInput:
    """What a request gives the template. ``think`` is None when the request did not set
    it; a level (``"high"``) counts as on."""

    messages: list[Message]
    tools: list[dict[str, Any]] = field(default_factory=list)
    think: bool | str | None = None
    suffix: str = ""

    @property
    def thinking_on(self) -> bool:
        return self.think is True or (isinstance(self.think, str) and self.think != "")

    def think_values(self) -> dict[str, Any]:
        return {
            "Think": self.thinking_on,
            "ThinkLevel": self.think if isinstance(self.think, str) else "",
            "IsThinkSet": self.think is not None,
        }


class PromptTemplate:
    """Renders a conversation for one model."""

    def __init__(
        self,
        go_template: str | None,
        jinja_template: str | None,
        bos_token: str = "",
        eos_token: str = "",
        tokenizer_adds_bos: bool = True,
    ) -> None:
        self.go_template = go_template
        self.jinja_template = jinja_template if go_template is None else None
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.tokenizer_adds_bos = tokenizer_adds_bos
        self._go = gotemplate.parse(go_template or DEFAULT_TEMPLATE)
        self._vars = self._go.vars()
        self._legacy = "messages" not in self._vars
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

    def capabilities(self, info: Any = None) -> list[str]:
        return model_capabilities(
            go_template=self.go_template, chat_template=self.jinja_template, info=info
        )

    def tool_call_tag(self) -> str:
        """What the model writes before a tool call (Ollama reads it from the Go template;
        for a Jinja template, the tag the Hermes/Qwen/SmolLM family uses)."""
        if self.go_template is None and self.jinja_template and "<tool_call>" in self.source:
            return "<tool_call>"
        return self._go.tool_call_tag()

    def thinking_tags(self) -> tuple[str, str]:
        if self.go_template is None and self.jinja_template:
            if "<think>" in self.jinja_template and "</think>" in self.jinja_template:
                return "<think>", "</think>"
            return "", ""
        return self._go.thinking_tags()

    def render(self, request: PromptInput | list[Message]) -> str:
        """Prompt text ready for the model to continue as the assistant."""
        if isinstance(request, list):
            request = PromptInput(request)
        if self._jinja is not None:
            return self._render_jinja(request)
        think = request.think_values()
        prompt = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        if request.suffix and prompt:
            return self._go.render(
                {"Prompt": prompt, "Suffix": request.suffix, "Response": "", **think}
            )
        system, messages = _collate(request.messages)
        if not self._legacy:
            return self._go.render(
                {
                    "System": system,
                    "Prompt": prompt,
                    "Response": "",
                    "Messages": template_messages(messages),
                    "Tools": template_tools(request.tools),
                    **think,
                }
            )
        return self._render_legacy(messages, think)

    def _render_jinja(self, request: PromptInput) -> str:
        assert self._jinja is not None
        extra: dict[str, Any] = {}
        if request.think is not None:
            extra["enable_thinking"] = request.thinking_on  # Qwen3's switch
        try:
            text = self._jinja.render(
                messages=[m.jinja() for m in request.messages],
                tools=request.tools or None,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **extra,
            )
        except JinjaTemplateError as exc:
            raise InvalidRequestError(f"chat template failed: {exc}") from exc
        # llama.cpp adds BOS itself when the vocabulary asks for it; when it does not (SmolLM2,
        # whose BOS is <|im_start|>), the template's own must stay.
        if self.tokenizer_adds_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token) :]
        return text

    def _render_legacy(self, messages: list[Message], think: dict[str, Any]) -> str:
        # Ollama's loop: a system or user turn after a reply renders the pending turn.
        parts: list[str] = []
        system = prompt = response = ""
        for message in messages:
            if message.role == "system":
                if prompt or response:
                    parts.append(self._legacy_turn(system, prompt, response, think))
                    prompt = response = ""
                system = message.content
            elif message.role == "user":
                if response:
                    parts.append(self._legacy_turn(system, prompt, response, think))
                    system = response = ""
                prompt = message.content
            elif message.role == "assistant":
                response = message.content
        # The last turn is cut after .Response: a trailing assistant message is a prefill.
        text = self._go.render(
            {"System": system, "Prompt": prompt, "Response": response + _RESPONSE_MARK, **think}
        )
        if _RESPONSE_MARK in text:
            text = text[: text.index(_RESPONSE_MARK)]
        parts.append(text)
        return "".join(parts)

    def _legacy_turn(self, system: str, prompt: str, response: str, think: dict[str, Any]) -> str:
        return self._go.render({"System": system, "Prompt": prompt, "Response": response, **think})


def _collate(messages: list[Message]) -> tuple[str, list[Message]]:
    """Ollama's ``collate``: all system texts joined, and consecutive messages of one role
    (tool results excepted) merged into one."""
    systems = [m.content for m in messages if m.role == "system"]
    collated: list[Message] = []
    for message in messages:
        if collated and collated[-1].role == message.role and message.role != "tool":
            last = collated[-1]
            collated[-1] = Message(
                role=last.role,
                content=last.content + "\n\n" + message.content,
                thinking=last.thinking,
                images=last.images + message.images,
                tool_calls=last.tool_calls + message.tool_calls,
                tool_name=last.tool_name,
                tool_call_id=last.tool_call_id,
            )
        else:
            collated.append(message)
    return "\n\n".join(systems), collated


def _raise_exception(message: str) -> Any:
    raise InvalidRequestError(f"chat template: {message}")
