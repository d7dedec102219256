#!/usr/bin/env python3
"""Bounded load test of `moepack serve` on loopback.

Two parts:
  1. load: --clients concurrent clients send --requests completion requests in total (each with a
     --timeout), mixing streamed and plain ones; reports failures, p50/p99 latency and aggregate
     generated tokens per second.
  2. batching: for each concurrency in --sweep (default 1,8), that many streams generate
     --sweep-tokens tokens each at once (ignore_eos); reports aggregate tokens/s over the whole run
     and, when the text stream allows, aggregate decode tokens/s while all of them decode together,
     with the speed-ups of each concurrency over 1. The sweep runs --sweep-rounds times (default 3);
     each round's speed-ups are against that round's 1-stream run, and the report gives the medians
     and every round (on a shared machine one run alone can be off by a quarter either way).

Starts its own server (the tiny model unless --model) unless --base-url is given. Loopback only.
    python3 tools/load_test.py [--moepack .build/release/moepack] [--model DIR]   (standard library only)
Exit status 1 if any request failed.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from serve_harness import TINY_MODEL, Server, default_binary, metric_value

# Content type, and the API key of a server started with --api-key (--api-key / MOEPACK_API_KEY).
HEADERS = {"Content-Type": "application/json"}

PROMPTS = ["Once upon a time", "The weather today", "A story about a cat", "In the beginning",
           "Numbers: one two three", "The robot said", "Hello", "Long ago in a small village there lived"]


def post(base_url, body, timeout, stream):
    """Sends one completion request; returns (latency s, completion tokens, token arrival times)."""
    url = urllib.parse.urlparse(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    start = time.perf_counter()
    try:
        connection.request("POST", "/v1/completions", body=json.dumps(body), headers=HEADERS)
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}: {response.read()[:200]!r}")
        if not stream:
            data = json.load(response)
            return time.perf_counter() - start, data["usage"]["completion_tokens"], []
        arrivals, tokens = [], None
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            payload = line[6:]
            if payload == "[DONE]":
                break
            event = json.loads(payload)
            if "error" in event:
                raise RuntimeError(event["error"]["message"])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            elif event.get("choices"):
                arrivals.append(time.perf_counter())
        return time.perf_counter() - start, tokens, arrivals
    finally:
        connection.close()


def percentile(values, p):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))
    return ordered[index]


def load_phase(base_url, model, clients, requests, max_tokens, timeout):
    latencies, tokens, failures = [], [], []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            stream = i % 2 == 0
            body = {"model": model, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens,
                    "temperature": 0.7, "seed": i, "stream": stream}
            if stream:
                body["stream_options"] = {"include_usage": True}
            try:
                latency, count, _ = post(base_url, body, timeout, stream)
                with lock:
                    latencies.append(latency)
                    tokens.append(count)
            except Exception as error:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    failures.append(f"request {i}: {error}")

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"requests": requests, "clients": clients, "failed": len(failures), "failures": failures[:5],
            "wall_seconds": round(wall, 2),
            "latency_p50_seconds": round(percentile(latencies, 50), 3) if latencies else None,
            "latency_p99_seconds": round(percentile(latencies, 99), 3) if latencies else None,
            "generated_tokens": sum(tokens), "aggregate_tokens_per_second": round(sum(tokens) / wall, 1)}


def batching_phase(base_url, model, concurrency, tokens, timeout):
    results, errors = [None] * concurrency, []
    barrier = threading.Barrier(concurrency)

    def worker(i):
        body = {"model": model, "prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": tokens, "temperature": 0,
                "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
        barrier.wait()
        try:
            results[i] = post(base_url, body, timeout, True)
        except Exception as error:  # noqa: BLE001
            errors.append(str(error))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"batching run with {concurrency} streams failed: {errors[0]}")
    # Whole run: all generated tokens (usage counts) over the time until the last stream ended,
    # prefill included. Streams start together (a barrier), so the slowest latency is the wall time.
    total = sum(r[1] for r in results)
    report = {"streams": concurrency, "tokens_per_stream": tokens,
              "aggregate_tokens_per_second": round(total / max(r[0] for r in results), 2)}
    # Steady state, when every stream is decoding: text chunks arriving between the last stream's first
    # chunk and the first stream's last chunk, over that window. Prompts are prefilled one chunk per
    # step, so streams start a few steps apart. Needs a tokenizer that covers the model's vocabulary
    # (`moepack synth` pads the one it copies, so a synthesized bench-moe has one).
    if all(len(r[2]) > 1 for r in results):
        start = max(r[2][0] for r in results)
        end = min(r[2][-1] for r in results)
        if end > start:
            in_window = sum(1 for r in results for t in r[2] if start < t <= end)
            report["aggregate_decode_tokens_per_second"] = round(in_window / (end - start), 2)
    return report


SPEEDUPS = {"aggregate_tokens_per_second": "speedup_over_1", "aggregate_decode_tokens_per_second": "decode_speedup_over_1"}


def sweep_round(base_url, model, sweep, tokens, timeout):
    """One run per concurrency, one after another, with speed-ups against this round's 1-stream run."""
    runs = [batching_phase(base_url, model, c, tokens, timeout) for c in sweep]
    base = next((r for r in runs if r["streams"] == 1), None)
    for r in runs:
        for key, name in SPEEDUPS.items():
            if base and key in r and key in base:
                r[name] = round(r[key] / base[key], 2)
    return runs


def summarize_rounds(rounds):
    """Per concurrency: the median of each figure over the rounds, and the rounds themselves."""
    summary = []
    for i, first in enumerate(rounds[0]):
        runs = [r[i] for r in rounds]
        entry = {"streams": first["streams"], "tokens_per_stream": first["tokens_per_stream"]}
        for key in ["aggregate_tokens_per_second", "aggregate_decode_tokens_per_second", *SPEEDUPS.values()]:
            values = [r[key] for r in runs if key in r]
            if len(values) == len(runs):
                entry[key] = round(statistics.median(values), 2)
        entry["rounds"] = [{k: v for k, v in r.items() if k not in ("streams", "tokens_per_stream")} for r in runs]
        summary.append(entry)
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="an already running server (otherwise one is started)")
    parser.add_argument("--api-key", default=os.environ.get("MOEPACK_API_KEY"),
                        help="the key of a server started with --api-key (default: $MOEPACK_API_KEY)")
    parser.add_argument("--moepack", default=default_binary())
    parser.add_argument("--model", default=TINY_MODEL)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=120, help="seconds per request")
    parser.add_argument("--sweep", default="1,8", help="concurrencies for the batching part ('' to skip)")
    parser.add_argument("--sweep-tokens", type=int, default=128)
    parser.add_argument("--sweep-rounds", type=int, default=3, help="rounds of the sweep (medians are reported)")
    args = parser.parse_args()
    if args.sweep_rounds < 1:
        parser.error("--sweep-rounds must be at least 1")

    if args.api_key:
        HEADERS["Authorization"] = f"Bearer {args.api_key}"
    server = None
    base_url = args.base_url
    if base_url is None:
        server = Server(args.moepack, args.model, ["--max-batch", str(args.max_batch), "--max-queue", "256"])
        base_url = server.base_url
    try:
        try:
            with urllib.request.urlopen(urllib.request.Request(base_url + "/v1/models", headers=HEADERS), timeout=30) as r:
                model = json.load(r)["data"][0]["id"]
        except urllib.error.HTTPError as error:
            if error.code == 401:
                sys.exit("the server wants an API key: pass --api-key (or set MOEPACK_API_KEY)")
            raise
        report = {"load": load_phase(base_url, model, args.clients, args.requests, args.max_tokens, args.timeout)}
        sweep = [int(c) for c in args.sweep.split(",") if c.strip()]
        if sweep:
            rounds = [sweep_round(base_url, model, sweep, args.sweep_tokens, args.timeout)
                      for _ in range(args.sweep_rounds)]
            report["batching"] = summarize_rounds(rounds)
        if server:
            metrics = server.metrics()
            steps = metric_value(metrics, "moepack_decode_steps_total")
            rows = metric_value(metrics, "moepack_decode_rows_total")
            report["server"] = {"decode_steps": steps, "mean_batch_rows": round(rows / steps, 2) if steps else None}
    finally:
        if server:
            report_exit = server.stop()
            print(f"server exit status after SIGTERM: {report_exit}", file=sys.stderr)
    print(json.dumps(report, indent=2))
    sys.exit(1 if report["load"]["failed"] else 0)


if __name__ == "__main__":
    main()
