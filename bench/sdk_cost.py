"""CPU per judge call in the official SDKs (``make bench-sdk-cost``): what N calls/s cost, whatever the service does.

``bench/judges.py`` asks for 2,000 judge calls in flight at 2 s of latency, i.e. 1,000 calls/s, with ingest
losing at most 10 % of its capacity. This benchmark measures the client side of one call alone, outside the
service: one process, one asyncio loop, nothing else running in it, against the fake LLM server
(``tests/fakes/llm_server.py``, its own process, so its CPU is not counted) with ``--latency`` s per call and
``--concurrency`` calls in flight (a semaphore), ``--calls`` calls per case after ``--warmup`` unmeasured ones.

Cases, per protocol (``--protocols``: chat_completions, responses, messages):

* ``judge client``: the service's own client (``connectors.llm.factory.make_client``: the official ``openai``
  / ``anthropic`` SDK, a structured-output request built from a ``JudgeRequest``, the answer parsed and checked),
  with ``max_concurrency`` = ``--concurrency`` (so the calls are spread over the SDK clients the service would
  use) and the SDK's retries off, as in the service;
* ``raw httpx2``: the same request body POSTed with the SDKs' default HTTP stack (``httpx2.AsyncClient``, one
  client per 16 calls in flight as above) and the JSON body decoded, no SDK: a floor for any client built on
  that stack (the SDKs' default transport);
* ``raw aiohttp``: the same body POSTed with aiohttp alone (the transport the service's SDK clients use),
  one session, orjson: the floor of a Python HTTP client here, SDK or not.

Reported per case: CPU per call (``time.process_time`` over the measured calls / calls, so it includes the
event loop, the HTTP stack, the SDK and the parsing), calls/s achieved, the cores that 1,000 calls/s would
take at that cost, and the share of this machine's cores that is. Exit status 0 when every call of every case
succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from bench.common import markdown_table, write_json
from bench.service import FakeLLM

KEY_ENV = "TJ_BENCH_SDK_COST_KEY"
PROMPT = (
    "You are judging an assistant's answer.\n\nCriteria: the answer is correct and helpful.\n\n"
    + "<input>"
    + "How do I reset my password? " * 20
    + "</input>\n<output>"
    + "Open the settings page and choose 'reset password'. " * 20
    + "</output>"
)  # ~2 KB, the size of a span-scope default prompt with short texts


@contextlib.contextmanager
def fake_server(latency: float) -> Iterator[str]:
    """The fake LLM server as a subprocess; yields its base URL (no /v1)."""
    fake = FakeLLM(latency)
    try:
        fake.start()
        yield fake.base_url
    finally:
        fake.stop()


def judge_client_case(base: str, protocol: str, concurrency: int) -> tuple[Callable[[], Awaitable[Any]], Any]:
    from connectors.llm.factory import make_client
    from dataflow.judging.client import JudgeRequest
    from dataflow.judging.connections import ConnectionSpec

    provider = "anthropic" if protocol == "messages" else "openai"
    spec = ConnectionSpec(
        name="bench",
        provider=provider,
        protocol=protocol,
        base_url=base if provider == "anthropic" else f"{base}/v1",
        api_key_env=KEY_ENV,
        model="bench-model",
        max_retries=0,
        max_concurrency=concurrency,
        timeout_s=60,
    )
    client = make_client(spec)
    request = JudgeRequest(system="You are a strict judge.", prompt=PROMPT, min_score=0, max_score=10)

    async def call() -> Any:
        answer = await client.judge(request)
        assert answer.score is not None, answer
        return answer

    return call, client.aclose


def raw_request(protocol: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(path, headers, JSON body) of a judge call like the service's, for the raw cases."""
    schema = {
        "type": "object",
        "properties": {
            "rationale": {"type": "string"},
            "score": {"type": "number", "minimum": 0, "maximum": 10},
        },
        "required": ["rationale", "score"],
        "additionalProperties": False,
    }
    messages = [{"role": "system", "content": "You are a strict judge."}, {"role": "user", "content": PROMPT}]
    if protocol == "chat_completions":
        path, headers = "/v1/chat/completions", {"authorization": "Bearer x"}
        body: dict[str, Any] = {
            "model": "bench-model",
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "j", "strict": True, "schema": schema},
            },
        }
    elif protocol == "responses":
        path, headers = "/v1/responses", {"authorization": "Bearer x"}
        body = {
            "model": "bench-model",
            "input": messages,
            "text": {"format": {"type": "json_schema", "name": "j", "strict": True, "schema": schema}},
        }
    else:
        path, headers = "/v1/messages", {"x-api-key": "x", "anthropic-version": "2023-06-01"}
        body = {
            "model": "bench-model",
            "max_tokens": 1024,
            "system": "You are a strict judge.",
            "messages": messages[1:],
            "tools": [{"name": "answer", "input_schema": schema}],
            "tool_choice": {"type": "tool", "name": "answer"},
        }
    return path, headers, body


def raw_httpx2_case(base: str, protocol: str, concurrency: int) -> tuple[Callable[[], Awaitable[Any]], Any]:
    import httpx2

    from connectors.llm import sdk

    path, headers, body = raw_request(protocol)
    per_client = sdk.CALLS_PER_SDK_CLIENT * 2
    limits = httpx2.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    clients = [
        httpx2.AsyncClient(base_url=base, limits=limits, timeout=60)
        for _ in range(sdk.sdk_clients(concurrency))
    ]
    turn = [0]

    async def call() -> Any:
        turn[0] = (turn[0] + 1) % len(clients)
        resp = await clients[turn[0]].post(path, json=body, headers=headers)
        resp.raise_for_status()
        return json.loads(resp.content)

    async def close() -> None:
        for c in clients:
            await c.aclose()

    return call, close


def raw_aiohttp_case(base: str, protocol: str, concurrency: int) -> tuple[Callable[[], Awaitable[Any]], Any]:
    """aiohttp alone (the transport under the service's SDK clients), one session, orjson: the floor of any
    Python HTTP client here."""
    import aiohttp
    import orjson

    path, headers, body = raw_request(protocol)
    data = orjson.dumps(body)
    headers = {**headers, "content-type": "application/json"}
    holder: list[aiohttp.ClientSession] = []

    async def call() -> Any:
        if not holder:
            holder.append(aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=concurrency)))
        async with holder[0].post(path, data=data, headers=headers) as resp:
            resp.raise_for_status()
            return orjson.loads(await resp.read())

    async def close() -> None:
        if holder:
            await holder[0].close()

    return call, close


CASES = {"judge client": judge_client_case, "raw httpx2": raw_httpx2_case, "raw aiohttp": raw_aiohttp_case}


async def run_case(
    call: Callable[[], Awaitable[Any]], calls: int, concurrency: int
) -> tuple[float, float, int]:
    """(CPU s, wall s, failures) for `calls` calls with `concurrency` in flight."""
    gate = asyncio.Semaphore(concurrency)
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with gate:
            try:
                await call()
            except Exception as exc:  # counted and reported
                failures += 1
                if failures <= 3:
                    print(f"   call failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    return time.process_time() - c0, time.perf_counter() - t0, failures


async def measure(base: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from connectors.llm.factory import load_sdks

    load_sdks()
    results = []
    for protocol in args.protocols:
        for name, make in CASES.items():
            call, close = make(base, protocol, args.concurrency)
            try:
                await run_case(call, args.warmup, args.concurrency)
                cpu, wall, failures = await run_case(call, args.calls, args.concurrency)
            finally:
                await close()
            per_call_ms = cpu / args.calls * 1000
            results.append(
                {
                    "protocol": protocol,
                    "case": name,
                    "calls": args.calls,
                    "failures": failures,
                    "cpu_ms_per_call": round(per_call_ms, 3),
                    "calls_per_s": round(args.calls / wall, 1),
                    "cores_for_1000_calls_per_s": round(
                        per_call_ms, 2
                    ),  # ms per call x 1,000 calls/s / 1,000 ms
                }
            )
            print(
                f"   {protocol:16} {name:13} {per_call_ms:7.3f} ms CPU/call  {args.calls / wall:8.1f} calls/s"
                f"  failures {failures}",
                flush=True,
            )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--protocols",
        nargs="+",
        default=["chat_completions", "responses", "messages"],
        choices=["chat_completions", "responses", "messages"],
    )
    p.add_argument("--concurrency", type=int, default=200, help="calls in flight (default 200)")
    p.add_argument("--latency", type=float, default=0.2, help="the fake's latency per call, s (default 0.2)")
    p.add_argument("--calls", type=int, default=5000, help="measured calls per case (default 5000)")
    p.add_argument("--warmup", type=int, default=500, help="unmeasured calls first (default 500)")
    p.add_argument(
        "--calls-per-client",
        type=int,
        default=None,
        help="override connectors.llm.sdk.CALLS_PER_SDK_CLIENT (calls in flight per SDK client)",
    )
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    if args.calls_per_client:
        from connectors.llm import sdk

        sdk.CALLS_PER_SDK_CLIENT = args.calls_per_client
    os.environ[KEY_ENV] = "bench-key"
    cores = os.cpu_count() or 1
    print(
        f"CPU per judge call, {args.concurrency} in flight, fake latency {args.latency:g} s, "
        f"{args.calls} calls per case ({cores} cores here)",
        flush=True,
    )
    with fake_server(args.latency) as base:
        results = asyncio.run(measure(base, args))
    print()
    header = (
        "protocol",
        "case",
        "CPU ms per call",
        "calls/s",
        "cores for 1,000 calls/s",
        "share of this machine",
    )
    rows = [
        [r["protocol"], r["case"], f"{r['cpu_ms_per_call']:.3f}", f"{r['calls_per_s']:,.0f}",
         f"{r['cores_for_1000_calls_per_s']:.2f}", f"{r['cores_for_1000_calls_per_s'] / cores:.0%}"]
        for r in results
    ]  # fmt: skip
    print(markdown_table(header, rows))
    if args.json_out:
        write_json(args.json_out, {"args": vars(args), "cores": cores, "results": results}, 2, announce=False)
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
