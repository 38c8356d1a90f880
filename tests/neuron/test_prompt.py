"""Prompt rendering: Modelfile Go templates (modern and legacy) and GGUF Jinja templates."""

from __future__ import annotations

from neurons.neuron.defaults import GEMMA3_TEMPLATE
from neurons.neuron.prompt import PromptTemplate
from neurons.ollama.messages import Message

CHATML_JINJA = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LEGACY = "{{ if .System }}[S]{{ .System }}[/S]{{ end }}[U]{{ .Prompt }}[/U]{{ .Response }}[E]"

CONVERSATION = [
    Message("system", "Be brief."),
    Message("user", "Hi"),
    Message("assistant", "Hello!"),
    Message("user", "Bye"),
]


def test_jinja_template_from_gguf() -> None:
    text = PromptTemplate(None, CHATML_JINJA).render(CONVERSATION)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_jinja_bos_is_left_to_the_tokenizer() -> None:
    template = PromptTemplate(None, "{{ bos_token }}{{ messages[0]['content'] }}", bos_token="<s>")
    assert template.render([Message("user", "x")]) == "x"


def test_go_template_with_messages_wins_over_gguf_template() -> None:
    template = PromptTemplate(GEMMA3_TEMPLATE, CHATML_JINJA)
    text = template.render([Message("user", "Hi")])
    assert text == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert template.source == GEMMA3_TEMPLATE


def test_legacy_go_template_renders_each_turn_and_cuts_at_response() -> None:
    text = PromptTemplate(LEGACY, None).render(CONVERSATION)
    assert text == "[S]Be brief.[/S][U]Hi[/U]Hello![E][U]Bye[/U]"


def test_default_template_is_the_prompt() -> None:
    assert PromptTemplate(None, None).render([Message("user", "just this")]) == "just this"
