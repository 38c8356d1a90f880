"""Model sync between two real embedded neurons, and the pure planning it rests on.

Node A starts with ``smollm2:135m`` (imported before it starts), node B with no models at all.
Copies go through the Ollama API only (show, blobs, create), as they would across machines.
A source that is a real Ollama (no ``GET /api/blobs``) is played by a transport that answers
those reads with 404 and forwards everything else to node A.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from neurons.client import NodeClient
from neurons.errors import ModelNotFoundError, NotFoundError, SyncError
from neurons.network.sync import (
    NodeInventory,
    SyncProgress,
    Transfer,
    copy_model,
    plan,
    synchronize,
    verified_chunks,
)
from neurons.neuron.defaults import import_default_models
from neurons.neuron.modelstore import ModelStore
from neurons.neuron.process import NeuronProcess
from neurons.store import NodeRecord, Placement, open_store
from tests.conftest import start_neuron

SMOL = "smollm2:135m"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NeuronProcess, NeuronProcess]]:
    root = tmp_path_factory.mktemp("sync")
    store = ModelStore(root / "a" / "models")
    store.ensure()
    assert import_default_models(store, only=[SMOL]) == [SMOL]
    started: list[NeuronProcess] = []
    try:
        started.append(start_neuron(root / "a", "--no-default-models"))
        started.append(start_neuron(root / "b", "--no-default-models"))
        yield started[0], started[1]
    finally:
        for process in started:
            process.stop()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _remove(node: NeuronProcess, model: str) -> None:
    async with NodeClient(node.url) as client:
        try:
            await client.delete(model)
        except ModelNotFoundError:
            pass


async def _sizes(node: NeuronProcess) -> dict[str, int]:
    async with NodeClient(node.url) as client:
        return {m["name"]: int(m["size"]) for m in await client.tags()}


class NoBlobReads(httpx.AsyncBaseTransport):
    """An Ollama-like source: ``GET /api/blobs`` is a 404, the rest goes to a real node."""

    def __init__(self) -> None:
        self.real = httpx.AsyncClient(timeout=60)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.startswith("/api/blobs/"):
            return httpx.Response(404, text="404 page not found")
        await request.aread()
        response = await self.real.send(request)
        return httpx.Response(
            response.status_code,
            content=response.content,
            headers={"content-type": response.headers.get("content-type", "")},
        )

    async def aclose(self) -> None:
        await self.real.aclose()


def _ollama_like(node: NeuronProcess) -> NodeClient:
    return NodeClient(node.url, name="ollama-a", client=httpx.AsyncClient(transport=NoBlobReads()))


# -- copy_model between two neurons --------------------------------------------------------


def test_copy_model_then_generate_on_the_target(
    pair: tuple[NeuronProcess, NeuronProcess],
) -> None:
    a, b = pair
    events: list[SyncProgress] = []

    async def scenario() -> tuple[Any, Any, dict[str, Any]]:
        await _remove(b, SMOL)
        async with NodeClient(a.url, name="a") as source, NodeClient(b.url, name="b") as target:
            first = await copy_model(source, target, SMOL, progress=events.append)
            again = await copy_model(source, target, SMOL)
            reply = await target.generate(SMOL, "Hello", options={"num_predict": 4})
        return first, again, reply

    first, again, reply = _run(scenario())
    gguf = Path(a.home / "models" / "blobs")
    (weights,) = [p for p in gguf.iterdir() if p.stat().st_size > 1_000_000]
    assert first.copied == ["sha256:" + weights.name.split("-", 1)[1]]
    assert first.bytes_copied == weights.stat().st_size
    assert first.present == []
    assert (first.source, first.target, first.model) == ("a", "b", SMOL)

    statuses = [e.status for e in events]
    assert statuses[0] == "reading manifest"
    assert statuses[-3:] == ["creating model", "verifying", "success"]
    copying = [e for e in events if e.status.startswith("copying ")]
    assert copying[0].status == f"copying {first.copied[0][7:19]}"
    assert copying[-1].completed == copying[-1].total == weights.stat().st_size
    assert [e.completed for e in copying] == sorted(e.completed or 0 for e in copying)
    assert all(e.source == "a" and e.target == "b" for e in events)
    assert copying[-1].to_dict()["digest"] == first.copied[0]

    # Blobs already there are not sent again; the model is rebuilt all the same.
    assert again.bytes_copied == 0
    assert again.copied == []
    assert again.present == first.copied

    assert _run(_sizes(b))[SMOL] == _run(_sizes(a))[SMOL]
    assert reply["done"] is True
    assert reply["response"].strip()


def test_copy_keeps_every_layer_of_a_custom_model(
    pair: tuple[NeuronProcess, NeuronProcess],
) -> None:
    a, b = pair
    custom = "smol-custom:1"
    body = {
        "model": custom,
        "from": SMOL,
        "template": "{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}",
        "system": "You answer in one word.",
        "parameters": {"temperature": 0.25, "stop": ["\n\n", "###"], "num_predict": 12},
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
        "license": ["first license", "second license"],
    }

    async def scenario() -> tuple[Any, dict[str, Any], dict[str, Any]]:
        async with NodeClient(a.url, name="a") as source, NodeClient(b.url, name="b") as target:
            async for _ in source.create(body):
                pass
            result = await copy_model(source, target, custom)
            return result, await source.show(custom), await target.show(custom)

    result, on_a, on_b = _run(scenario())
    assert _run(_sizes(b))[custom] == _run(_sizes(a))[custom]
    for key in ("template", "system", "parameters", "messages", "license"):
        assert on_b.get(key) == on_a.get(key), key
    # The Modelfiles differ only where FROM names each node's own blob path.
    assert on_b["modelfile"].replace(str(b.home), str(a.home)) == on_a["modelfile"]
    assert result.bytes_copied < 10_000  # the weights were there; only the small layers
    _run(_remove(a, custom))
    _run(_remove(b, custom))


def test_missing_model_on_the_source_is_not_found(
    pair: tuple[NeuronProcess, NeuronProcess],
) -> None:
    a, b = pair

    async def scenario() -> None:
        async with NodeClient(a.url) as source, NodeClient(b.url) as target:
            await copy_model(source, target, "nothing:here")

    with pytest.raises(ModelNotFoundError):
        _run(scenario())


def test_source_without_blob_reads_needs_its_models_dir(
    pair: tuple[NeuronProcess, NeuronProcess], tmp_path: Path
) -> None:
    a, b = pair
    events: list[SyncProgress] = []

    async def scenario(models_dir: Path | None) -> Any:
        await _remove(b, SMOL)
        async with _ollama_like(a) as source, NodeClient(b.url, name="b") as target:
            return await copy_model(
                source, target, SMOL, progress=events.append, source_models_dir=models_dir
            )

    with pytest.raises(SyncError, match="models_dir label"):
        _run(scenario(None))

    # A models directory whose blob has the right name but the wrong bytes: the stream is
    # broken off, so the target neither keeps the blob nor gets the model.
    real = a.home / "models" / "blobs"
    (weights,) = [p for p in real.iterdir() if p.stat().st_size > 1_000_000]
    fake = tmp_path / "models"
    (fake / "blobs").mkdir(parents=True)
    (fake / "blobs" / weights.name).write_bytes(b"GGUF" + b"\0" * 4096)
    with pytest.raises(SyncError, match="corrupted"):
        _run(scenario(fake))
    digest = "sha256:" + weights.name.split("-", 1)[1]

    async def target_state() -> tuple[bool, dict[str, int]]:
        async with NodeClient(b.url) as target:
            return await target.has_blob(digest), await _sizes(b)

    has_blob, sizes = _run(target_state())
    assert not has_blob
    assert SMOL not in sizes

    # The real models directory works.
    result = _run(scenario(a.home / "models"))
    assert result.bytes_copied == weights.stat().st_size
    assert result.source == "ollama-a"
    assert _run(_sizes(b))[SMOL] == _run(_sizes(a))[SMOL]


# -- the hashing wrapper -------------------------------------------------------------------


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _drain(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def test_verified_chunks_passes_matching_bytes_and_counts_them() -> None:
    digest = "sha256:" + hashlib.sha256(b"hello world").hexdigest()
    counts: list[int] = []
    data = _run(_drain(verified_chunks(_chunks(b"hello", b" ", b"world"), digest, counts.append)))
    assert data == b"hello world"
    assert counts == [5, 6, 11]


def test_verified_chunks_refuses_corrupted_bytes_at_the_end() -> None:
    digest = "sha256:" + hashlib.sha256(b"hello world").hexdigest()
    seen: list[bytes] = []

    async def consume() -> None:
        async for chunk in verified_chunks(_chunks(b"hello", b" ", b"w0rld"), digest):
            seen.append(chunk)

    with pytest.raises(SyncError, match="corrupted"):
        _run(consume())
    assert seen == [b"hello", b" ", b"w0rld"]


# -- synchronize with placements in a real store -------------------------------------------


def test_synchronize_copies_to_the_labelled_nodes(
    pair: tuple[NeuronProcess, NeuronProcess], tmp_path: Path
) -> None:
    a, b = pair
    _run(_remove(b, SMOL))
    store = open_store(f"sqlite:///{tmp_path / 'neurons.db'}")
    try:
        store.nodes.add("a", a.url, "embedded", {"role": "library"}, priority=5)
        store.nodes.add("b", b.url, "embedded", {"tier": "edge"})
        # An offline node is left out without being asked; an unknown one that does not
        # answer is reported.
        store.nodes.add("gone", "http://127.0.0.1:9", "ollama", {"tier": "edge"})
        store.nodes.add("silent", "http://127.0.0.1:9", "ollama", {"role": "x"})
        for name in ("a", "b"):
            store.nodes.set_status(name, "online")
        store.nodes.set_status("gone", "offline", seen=False)
        store.placements.set(SMOL, {"tier": "edge"})
        store.placements.set("ghost:1b", replicas=1)
        events: list[SyncProgress] = []

        async def scenario() -> Any:
            async with httpx.AsyncClient(timeout=httpx.Timeout(60, read=None)) as http:
                return await synchronize(store, http, progress=events.append)

        report = _run(scenario())
        (done,) = report.transfers
        assert (done.model, done.source, done.target) == (SMOL, "a", "b")
        assert done.bytes_copied > 0
        assert events[-1].status == "success"
        assert any("silent" in p for p in report.problems)
        assert any("ghost:1b" in p and "nothing to copy from" in p for p in report.problems)
        assert not any("gone" in p for p in report.problems)
        assert _run(_sizes(b))[SMOL] == _run(_sizes(a))[SMOL]
        as_dict = report.to_dict()
        assert as_dict["bytes_copied"] == done.bytes_copied
        assert as_dict["transfers"][0]["target"] == "b"

        # Nothing left to do the second time: the placement is met.
        again = _run(scenario())
        assert again.transfers == []
        assert (SMOL, "b") in again.skipped

        # Only one model's placement, on request; a model with none is not found.
        async def one(model: str) -> Any:
            async with httpx.AsyncClient(timeout=60) as http:
                return await synchronize(store, http, model=model)

        assert _run(one(SMOL)).transfers == []
        with pytest.raises(NotFoundError):
            _run(one("unplaced:1"))
    finally:
        store.close()


# -- plan: a pure function, tested by tables -----------------------------------------------

_NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _node(
    name: str,
    models: set[str],
    *,
    labels: dict[str, str] | None = None,
    priority: int = 0,
    kind: str = "embedded",
    status: str = "online",
) -> NodeInventory:
    record = NodeRecord(
        id=name,
        name=name,
        url=f"http://{name}",
        kind=kind,
        labels=labels or {},
        priority=priority,
        status=status,
        last_seen_at=None,
        created_at=_NOW,
        updated_at=_NOW,
    )
    return NodeInventory(record, models)


def _moves(transfers: list[Transfer]) -> list[tuple[str, str, str]]:
    return [(t.model, t.source.name, t.target.name) for t in transfers]


EDGE = {"tier": "edge"}

PLAN_CASES: list[tuple[str, list[Placement], list[NodeInventory], list[tuple[str, str, str]]]] = [
    (
        "labels: every matching node that lacks it",
        [Placement("m:1", EDGE)],
        [
            _node("src", {"m:1"}, priority=1),
            _node("e1", set(), labels=EDGE),
            _node("e2", {"m:1"}, labels=EDGE),
            _node("e3", set(), labels={"tier": "edge", "gpu": "yes"}),
            _node("core", set(), labels={"tier": "core"}),
        ],
        [("m:1", "src", "e1"), ("m:1", "src", "e3")],
    ),
    (
        "replicas: existing copies count first, then priority, then name",
        [Placement("m:1", replicas=3)],
        [
            _node("holder", {"m:1"}),
            _node("low", set(), priority=1),
            _node("high", set(), priority=9),
            _node("b-mid", set(), priority=5),
            _node("a-mid", set(), priority=5),
        ],
        [("m:1", "holder", "high"), ("m:1", "holder", "a-mid")],
    ),
    (
        "replicas already met: nothing to do (sync never deletes)",
        [Placement("m:1", replicas=1)],
        [_node("x", {"m:1"}), _node("y", {"m:1"}), _node("z", set(), priority=100)],
        [],
    ),
    (
        "labels and replicas together",
        [Placement("m:1", EDGE, replicas=1)],
        [_node("src", {"m:1"}, priority=50), _node("e1", set(), labels=EDGE)],
        [("m:1", "src", "e1")],
    ),
    (
        "source: embedded first, then priority, then name",
        [Placement("m:1", EDGE)],
        [
            _node("ollama", {"m:1"}, kind="ollama", priority=99),
            _node("emb-b", {"m:1"}, priority=3),
            _node("emb-a", {"m:1"}, priority=3),
            _node("emb-low", {"m:1"}, priority=1),
            _node("e1", set(), labels=EDGE),
        ],
        [("m:1", "emb-a", "e1")],
    ),
    (
        "offline nodes are neither sources nor targets",
        [Placement("m:1", replicas=2)],
        [
            _node("down-src", {"m:1"}, status="offline", priority=9),
            _node("src", {"m:1"}, kind="ollama"),
            _node("down", set(), status="offline", priority=9),
            _node("up", set(), status="degraded"),
        ],
        [("m:1", "src", "up")],
    ),
    (
        "names compare canonically and case-insensitively",
        [Placement("llama3:latest", EDGE), Placement("Qwen:7B", EDGE)],
        [
            _node("src", {"registry.ollama.ai/library/llama3", "qwen:7b"}, priority=1),
            _node("e1", {"LLAMA3:latest"}, labels=EDGE),
            _node("e2", set(), labels=EDGE),
        ],
        [("llama3:latest", "src", "e2"), ("Qwen:7B", "src", "e1"), ("Qwen:7B", "src", "e2")],
    ),
]


@pytest.mark.parametrize(
    ("placements", "nodes", "expected"),
    [case[1:] for case in PLAN_CASES],
    ids=[case[0] for case in PLAN_CASES],
)
def test_plan(
    placements: list[Placement], nodes: list[NodeInventory], expected: list[tuple[str, str, str]]
) -> None:
    result = plan(placements, nodes)
    assert _moves(result.transfers) == expected
    assert result.problems == []


def test_plan_reports_what_cannot_be_met() -> None:
    nodes = [_node("src", {"m:1"}), _node("e1", set(), labels=EDGE)]
    result = plan(
        [
            Placement("nobody:has", EDGE),
            Placement("m:1", {"tier": "mars"}),
            Placement("m:1", EDGE, replicas=3),
        ],
        nodes,
    )
    assert _moves(result.transfers) == [("m:1", "src", "e1")]
    (no_source, no_nodes, too_few) = result.problems
    assert no_source.startswith("nobody:has:") and "nothing to copy from" in no_source
    assert "no online nodes labelled {'tier': 'mars'}" in no_nodes
    assert "3 replica(s)" in too_few and "only 1" in too_few
    assert result.to_dict()["transfers"] == [{"model": "m:1", "source": "src", "target": "e1"}]


def test_plan_lists_placements_already_met() -> None:
    result = plan([Placement("m:1", EDGE)], [_node("e1", {"m:1"}, labels=EDGE)])
    assert result.transfers == []
    assert result.in_place == [("m:1", "e1")]


# -- reading a source's /api/show ----------------------------------------------------------

WEIGHTS = "sha256:" + "ab" * 32
LORA = "sha256:" + "cd" * 32
OLLAMA_SHOW: dict[str, Any] = {
    # As a real Ollama writes it: blob paths, unquoted PARAMETER values, split LICENSEs.
    "modelfile": (
        '# Modelfile generated by "ollama show"\n'
        "# FROM llama3.2:latest\n\n"
        f"FROM /usr/share/ollama/.ollama/models/blobs/sha256-{'AB' * 32}\n"
        'TEMPLATE """{{ .System }} {{ .Prompt }}"""\n'
        "PARAMETER stop <|eot_id|>\n"
        "PARAMETER stop <|end_header_id|>\n"
        "PARAMETER temperature 0.6\n"
        'LICENSE """Community license"""\n'
        'LICENSE """Acceptable use"""\n'
        f"ADAPTER /models/blobs/sha256-{'cd' * 32}\n"
    ),
    "parameters": (
        'stop                           "<|eot_id|>"\n'
        'stop                           "<|end_header_id|>"\n'
        "temperature                    0.6\n"
        "num_ctx                        4096\n"
        "use_mmap                       true\n"
        "top_p                          0.9\n"
        # Deprecated: Ollama drops these, and so does the copy.
        "penalize_newline               true\n"
        "mirostat_tau                   5\n"
    ),
    "template": "{{ .System }} {{ .Prompt }}",
    "system": "Be brief.",
    "license": "Community license\nAcceptable use",
    "messages": [{"role": "user", "content": "hi"}],
    "model_info": {"tokenizer.chat_template": "{% for m in messages %}{% endfor %}"},
}


def test_show_of_an_ollama_model_becomes_the_same_create_body() -> None:
    from neurons.network.sync import model_recipe

    recipe = model_recipe("llama3.2:latest", OLLAMA_SHOW)
    assert recipe.digests == [WEIGHTS, LORA]
    assert recipe.body == {
        "model": "llama3.2:latest",
        "files": {"model.gguf": WEIGHTS},
        "adapters": {"adapter.gguf": LORA},
        "template": "{{ .System }} {{ .Prompt }}",
        "system": "Be brief.",
        "parameters": {
            "stop": ["<|eot_id|>", "<|end_header_id|>"],
            "temperature": 0.6,
            "num_ctx": 4096,
            "use_mmap": True,
            "top_p": 0.9,
        },
        "messages": [{"role": "user", "content": "hi"}],
        "license": ["Community license", "Acceptable use"],
    }


def test_show_with_a_modelfile_our_parser_refuses_still_names_its_blobs() -> None:
    from neurons.network.sync import model_recipe

    shown = {
        **OLLAMA_SHOW,
        "modelfile": OLLAMA_SHOW["modelfile"] + "SOMETHINGNEW from a later Ollama\n",
        # The GGUF's own chat template is what the target falls back to: not sent.
        "template": OLLAMA_SHOW["model_info"]["tokenizer.chat_template"],
        "parameters": "",
    }
    recipe = model_recipe("m:1", shown)
    assert recipe.digests == [WEIGHTS, LORA]
    assert "template" not in recipe.body and "parameters" not in recipe.body
    assert recipe.body["license"] == ["Community license\nAcceptable use"]


@pytest.mark.parametrize(
    ("shown", "match"),
    [
        ({"modelfile": "FROM llama3\n"}, "no blob FROM"),
        ({"modelfile": f"FROM /b/sha256-{'ab' * 32}", "parameters": "nonsense 1"}, "nonsense"),
        ({"modelfile": f"FROM /b/sha256-{'ab' * 32}", "parameters": "num_ctx big"}, "num_ctx"),
    ],
)
def test_show_that_cannot_be_copied_is_a_sync_error(shown: dict[str, Any], match: str) -> None:
    from neurons.network.sync import model_recipe

    with pytest.raises(SyncError, match=match):
        model_recipe("m:1", shown)
