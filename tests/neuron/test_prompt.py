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


def test_smollm2_template_renders_tools_calls_and_results() -> None:
    from neurons.neuron.defaults import SMOLLM2_TEMPLATE
    from neurons.neuron.prompt import PromptInput

    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
    call = {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    conversation = [
        Message("user", "Weather in Oslo?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "snow", tool_name="get_weather"),
    ]
    template = PromptTemplate(SMOLLM2_TEMPLATE, None)
    text = template.render(PromptInput(conversation, [tool]))
    assert '<tools>[{"type":"function","function":{"name":"get_weather"' in text
    assert '<tool_call>[{"name": "get_weather", "arguments": {"city":"Oslo"}}]</tool_call>' in text
    assert "<tool_response>\nsnow\n</tool_response>" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert template.tool_call_tag() == "<tool_call>"
    # Without tools: plain ChatML, no system turn unless one is given.
    plain = template.render([Message("user", "Hi")])
    assert plain == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_jinja_template_gets_tools_as_transformers_passes_them() -> None:
    jinja = (
        "{% if tools %}TOOLS:{{ tools[0]['function']['name'] }}\n{% endif %}"
        "{% for m in messages %}{{ m['role'] }}:{{ m['content'] }}"
        "{% if m['tool_calls'] %}{{ m['tool_calls'][0]['function']['name'] }}{% endif %}\n"
        "{% endfor %}"
    )
    from neurons.neuron.prompt import PromptInput

    call = {"function": {"name": "f", "arguments": {}}}
    text = PromptTemplate(None, jinja).render(
        PromptInput([Message("assistant", "", tool_calls=(call,))], [{"function": {"name": "f"}}])
    )
    assert text == "TOOLS:f\nassistant:f"  # trim_blocks eats the newline after endif
