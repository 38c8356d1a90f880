"""Latency the gateway adds over calling a neuron directly, side by side in one run.

Starts one embedded neuron and the control plane (``neurons serve``, its own process, as in
production), then sends the same requests to the neuron and through the gateway, alternating
batches so both see the same machine state, at concurrency 1 and 16. Prints p50/p95 of each
and the difference, plus the gateway's self-reported overhead (``X-Neurons-Overhead-Ms``).

    python benchmarks/gateway_overhead.py [--requests 400] [--concurrency 1 16] [--auth]
        [--metrics]

``--auth`` also starts a second control plane on the same neuron with API keys on and a key
carrying every limit (requests and tokens per minute, requests in flight: high enough never
to refuse), and measures it against the first, alternating again. Target: auth and limits
add p50 <= 0.2 ms.

``--metrics`` starts a second control plane with metrics off (``NEURONS_METRICS=false``) and
measures the default one (metrics on) against it, alternating again, plus the in-process cost
of recording one answer (the request middleware and the inference recorder). Target: metrics
add p50 <= 0.1 ms.

Requests: ``POST /api/show`` (routed exactly like a generation, but cheap on the node, so the
gateway's share is not drowned in model time) and ``POST /api/generate`` with one token.
Target: p50 added ≤ 1 ms, p95 added ≤ 3 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from neurons.neuron.process import NeuronProcess
from neurons.store import open_store

MODEL = "smollm2:135m"
REQUESTS = {
    "show": ("/api/show", {"model": MODEL}),
    "generate": (
        "/api/generate",
        {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 1}},
    ),
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def batch(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, object],
    n: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
) -> tuple[list[float], list[float]]:
    """``n`` requests, ``concurrency`` at a time: latencies (ms) and reported overheads."""
    latencies: list[float] = []
    overheads: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            started = time.perf_counter()
            response = await client.post(url, json=body, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            if "x-neurons-overhead-ms" in response.headers:
                overheads.append(float(response.headers["x-neurons-overhead-ms"]))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, overheads


async def measure(
    node: str, gateway: str, name: str, n: int, concurrency: int, rounds: int = 8
) -> dict[str, float]:
    path, body = REQUESTS[name]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await batch(client, node + path, body, 20, concurrency)  # warm both paths
        await batch(client, gateway + path, body, 20, concurrency)
        direct: list[float] = []
        routed: list[float] = []
        reported: list[float] = []
        per_round = max(1, n // rounds)
        for _ in range(rounds):  # alternate, so drift hits both sides alike
            d, _ = await batch(client, node + path, body, per_round, concurrency)
            g, o = await batch(client, gateway + path, body, per_round, concurrency)
            direct += d
            routed += g
            reported += o
    return {
        "direct_p50": statistics.median(direct),
        "direct_p95": percentile(direct, 0.95),
        "gateway_p50": statistics.median(routed),
        "gateway_p95": percentile(routed, 0.95),
        "added_p50": statistics.median(routed) - statistics.median(direct),
        "added_p95": percentile(routed, 0.95) - percentile(direct, 0.95),
        "reported_p50": statistics.median(reported),
        "reported_p95": percentile(reported, 0.95),
    }


async def measure_pair(
    off: str,
    on: str,
    name: str,
    n: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
    rounds: int = 8,
) -> dict[str, float]:
    """The same requests through two control planes, the feature off and on (``headers``
    go to the second: a key when the feature is auth)."""
    path, body = REQUESTS[name]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await batch(client, off + path, body, 20, concurrency)
        await batch(client, on + path, body, 20, concurrency, headers)
        plain: list[float] = []
        keyed: list[float] = []
        per_round = max(1, n // rounds)
        for _ in range(rounds):
            p, _ = await batch(client, off + path, body, per_round, concurrency)
            k, _ = await batch(client, on + path, body, per_round, concurrency, headers)
            plain += p
            keyed += k
    return {
        "off_p50": statistics.median(plain),
        "off_p95": percentile(plain, 0.95),
        "on_p50": statistics.median(keyed),
        "on_p95": percentile(keyed, 0.95),
        "added_p50": statistics.median(keyed) - statistics.median(plain),
        "added_p95": percentile(keyed, 0.95) - percentile(plain, 0.95),
    }


def limited_key(home: Path) -> str:
    """A key with every limit set, in the second control plane's store (auth on)."""
    from neurons.auth.keys import KeySpec
    from neurons.auth.scopes import Scope
    from neurons.auth.service import AuthService

    store = open_store(f"sqlite:///{home}/neurons.db")
    try:
        spec = KeySpec(name="bench", scope=Scope.INFERENCE, rpm=10**7, tpm=10**9, max_parallel=1024)
        _, secret = AuthService(store).create_key(spec)
    finally:
        store.close()
    return secret


def start_gateway(
    home: Path, node_url: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    home.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{home}/neurons.db")
    store.nodes.add("bench", node_url, "embedded")
    store.close()
    port = free_port()
    env = {**os.environ, **(env or {}), "NEURONS_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "neurons", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            health = httpx.get(url + "/api/health", timeout=1).json()
            if health["status"] == "ok":
                return process, url
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the gateway did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per side, per setting")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--auth", action="store_true", help="also measure API keys and limits on vs off"
    )
    parser.add_argument(
        "--metrics", action="store_true", help="also measure metrics recording on vs off"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        neuron = NeuronProcess(home=root / "neuron", port=free_port()).start()
        gateway_process, gateway = start_gateway(root, neuron.url)
        processes = [gateway_process]
        try:
            httpx.post(gateway + REQUESTS["generate"][0], json=REQUESTS["generate"][1], timeout=300)
            header = (
                f"{'request':9} {'conc':>4} | {'direct p50':>10} {'p95':>7} | "
                f"{'gateway p50':>11} {'p95':>7} | {'added p50':>9} {'p95':>7} | "
                f"{'self-reported p50':>17} {'p95':>6}"
            )
            print(header)
            print("-" * len(header))
            for name in REQUESTS:
                for concurrency in args.concurrency:
                    n = args.requests if name == "show" else max(40, args.requests // 4)
                    r = asyncio.run(measure(neuron.url, gateway, name, n, concurrency))
                    print(
                        f"{name:9} {concurrency:>4} | {r['direct_p50']:>10.2f} "
                        f"{r['direct_p95']:>7.2f} | {r['gateway_p50']:>11.2f} "
                        f"{r['gateway_p95']:>7.2f} | {r['added_p50']:>9.2f} "
                        f"{r['added_p95']:>7.2f} | {r['reported_p50']:>17.3f} "
                        f"{r['reported_p95']:>6.3f}"
                    )
            print("all times in ms; target: added p50 <= 1 ms, p95 <= 3 ms")
            if args.auth:
                key = limited_key(root / "keyed")
                keyed_process, keyed = start_gateway(root / "keyed", neuron.url)
                processes.append(keyed_process)
                auth_table(gateway, keyed, key, args)
            if args.metrics:
                quiet_process, quiet = start_gateway(
                    root / "quiet", neuron.url, {"NEURONS_METRICS": "false"}
                )
                processes.append(quiet_process)
                metrics_table(quiet, gateway, args)
        finally:
            for process in processes:
                process.terminate()
                process.wait(15)
            neuron.stop()


async def _middleware_cost(n: int = 20000) -> dict[str, float]:
    """Microseconds per request the access middleware costs in-process, keys off and on (a
    key with every limit), around an app that answers at once; HTTP noise left out."""
    from types import SimpleNamespace
    from typing import Any

    from neurons.api.access import AccessMiddleware
    from neurons.auth.keys import KeySpec
    from neurons.auth.scopes import Scope
    from neurons.auth.service import AuthService
    from neurons.auth.store_limiter import StoreLimiter
    from neurons.store.rate_limits import RateLimitRepository

    answer = b'{"done":true,"prompt_eval_count":3,"eval_count":1}'

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": answer, "more_body": False})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    middleware = AccessMiddleware(app)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        on_store = open_store(f"sqlite:///{tmp}/on.db")
        off_store = open_store(f"sqlite:///{tmp}/off.db")
        keyed = AuthService(on_store)
        spec = KeySpec(name="b", scope=Scope.INFERENCE, rpm=10**9, tpm=10**12, max_parallel=10**6)
        _, secret = keyed.create_key(spec)
        # Limits counted in the database (what several control planes share), on SQLite here.
        shared = AuthService(on_store, limiter=StoreLimiter(RateLimitRepository(on_store.engine)))
        bearer = [(b"authorization", f"Bearer {secret}".encode())]
        cases = {
            "bare app": (None, [], n),
            "keys off": (AuthService(off_store), [], n),
            "keys+limits": (keyed, bearer, n),
            "keys+limits in the database": (shared, bearer, max(1, n // 20)),
        }
        for label, (auth, headers, count) in cases.items():
            holder = SimpleNamespace(state=SimpleNamespace(auth=auth))
            started = time.perf_counter()
            for _ in range(count):
                scope = {"type": "http", "method": "POST", "path": "/api/generate"}
                scope.update(headers=headers, app=holder)
                await (app if auth is None else middleware)(scope, receive, send)
            results[label] = (time.perf_counter() - started) / count * 1e6
        on_store.close()
        off_store.close()
    return results


def auth_table(off: str, on: str, key: str, args: argparse.Namespace) -> None:
    cost = asyncio.run(_middleware_cost())
    print()
    print("in-process, per request: " + ", ".join(f"{k} {v:.1f} us" for k, v in cost.items()))
    print(f"keys and limits add {cost['keys+limits'] - cost['keys off']:.1f} us over keys off")
    shared = cost["keys+limits in the database"] - cost["keys off"]
    print(f"counted in the database (SQLite; what control planes share) they add {shared:.0f} us")
    headers = {"Authorization": f"Bearer {key}"}
    pair_table(off, on, args, ("auth off", "keys+limits"), headers)
    print("all times in ms; target: keys and limits add p50 <= 0.2 ms")


def pair_table(
    off: str,
    on: str,
    args: argparse.Namespace,
    names: tuple[str, str],
    headers: dict[str, str] | None = None,
) -> None:
    """Each request and concurrency through both planes, the feature off then on."""
    a, b = (f"{name} p50" for name in names)
    header = (
        f"{'request':9} {'conc':>4} | {a:>{len(a)}} {'p95':>7} | "
        f"{b:>{len(b)}} {'p95':>7} | {'added p50':>9} {'p95':>7}"
    )
    print()
    print(header)
    print("-" * len(header))
    for name in REQUESTS:
        for concurrency in args.concurrency:
            n = args.requests if name == "show" else max(40, args.requests // 4)
            r = asyncio.run(measure_pair(off, on, name, n, concurrency, headers))
            print(
                f"{name:9} {concurrency:>4} | {r['off_p50']:>{len(a)}.2f} {r['off_p95']:>7.2f} | "
                f"{r['on_p50']:>{len(b)}.2f} {r['on_p95']:>7.2f} | {r['added_p50']:>9.2f} "
                f"{r['added_p95']:>7.2f}"
            )


def _recording_cost(n: int = 20000) -> dict[str, float]:
    """Microseconds per answer the metrics cost in-process: the request middleware around an
    app that answers at once, and the inference recorder given a generation's final line."""
    from types import SimpleNamespace
    from typing import Any

    from neurons.api.metrics import RequestMetricsMiddleware
    from neurons.metrics.inference import Finished
    from neurons.metrics.service import MetricsService

    final = (
        b'{"model":"smollm2:135m","done":true,"done_reason":"stop","total_duration":90000000,'
        b'"prompt_eval_count":31,"prompt_eval_duration":20000000,"eval_count":1,'
        b'"eval_duration":4000000}\n'
    )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": final, "more_body": False})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    service = MetricsService(SimpleNamespace())
    middleware = RequestMetricsMiddleware(app, service)
    route = SimpleNamespace(path="/api/generate")

    async def run(handler: Any) -> float:
        started = time.perf_counter()
        for _ in range(n):
            scope = {"type": "http", "method": "POST", "path": "/api/generate", "route": route}
            await handler(scope, receive, send)
        return (time.perf_counter() - started) / n * 1e6

    results = {"bare app": asyncio.run(run(app)), "middleware": asyncio.run(run(middleware))}
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        answer = Finished("n1", MODEL, "/api/generate", 200, t0, t0 + 0.09, tail=final)
        service.inference.finished(answer)
    results["recorder"] = (time.perf_counter() - started) / n * 1e6
    return results


def metrics_table(off: str, on: str, args: argparse.Namespace) -> None:
    cost = _recording_cost()
    added = cost["middleware"] - cost["bare app"] + cost["recorder"]
    print()
    print("in-process, per request: " + ", ".join(f"{k} {v:.1f} us" for k, v in cost.items()))
    print(f"metrics add {added:.1f} us per inference (middleware over bare app + recorder)")
    pair_table(off, on, args, ("metrics off", "metrics on"))
    print("all times in ms; target: metrics add p50 <= 0.1 ms")


if __name__ == "__main__":
    main()
