#!/usr/bin/env python3
"""Stress test of `moepack serve` on loopback, for a fixed time.

--clients threads (default 32) send requests until --seconds have passed, each request drawn
from a mix (seeded, so a run can be repeated):
  valid        completions and chat, streamed or not, a few tokens each: must answer 200
  slow         a valid request whose head and body are sent in pieces with pauses, and whose
               answer is read slowly: must answer 200
  disconnect   a streamed request dropped after its first event (or before any): no answer expected
  malformed    broken JSON, wrong types, absurd numbers, unknown models, oversize prompts and
               bodies, broken HTTP framing: must answer 4xx with an OpenAI-style JSON error body
(--malformed and --disconnect set those shares, default 10% each; slow is 5%, the rest valid).

Reports the status distribution per kind, latencies of the valid requests, every failure (up to
20 shown), and the server's resident memory after warm-up (--warmup seconds) and at the end
(after the load stops and in-flight work drains). Then sends SIGTERM and checks exit code 0.
Exit status 1 when any rule above is broken: a valid request that failed, a malformed one not
answered 4xx with a JSON error, any 5xx, memory at the end more than 20% above the warm-up value,
or a non-zero exit after SIGTERM.

    python3 tools/stress_serve.py [--moepack .build/release/moepack] [--model DIR_OR_BUNDLE]
                                  [--clients 32] [--seconds 1800]      (standard library only)
Loopback only: it starts its own server on 127.0.0.1.
"""

import argparse
import http.client
import json
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict

from serve_harness import TINY_MODEL, Server, default_binary

PROMPTS = ["Once upon a time", "It is a truth universally acknowledged", "The weather today",
           "Mr. Darcy said", "In the beginning", "She walked to the window and"]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def valid_body(rng, model):
    tokens = rng.randint(1, 24)
    stream = rng.random() < 0.5
    if rng.random() < 0.5:
        return "/v1/completions", {"model": model, "prompt": rng.choice(PROMPTS), "max_tokens": tokens,
                                   "stream": stream, "temperature": rng.choice([0, 0.8])}, stream
    return "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
                                    "max_tokens": tokens, "stream": stream}, stream


def malformed_requests(model, context):
    """(name, raw request bytes): each must be answered 4xx with a JSON error."""
    def post(body, extra=""):
        data = body if isinstance(body, bytes) else body.encode()
        return (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n{extra}\r\n").encode() + data

    m = json.dumps(model)
    long_prompt = "word " * (context * 2)
    return [
        ("broken JSON", post('{"model": ' + m + ', "prompt": ')),
        ("invalid UTF-8", post(b'{"model": "\xff\xfe"}')),
        ("body is an array", post("[1, 2, 3]")),
        ("max_tokens Int.max", post('{"model": ' + m + ', "prompt": "a", "max_tokens": 9223372036854775807}')),
        ("max_tokens beyond Int64", post('{"model": ' + m + ', "prompt": "a", "max_tokens": 1e30}')),
        ("number beyond double", post('{"model": ' + m + ', "prompt": "a", "temperature": 1e999}')),
        ("negative n", post('{"model": ' + m + ', "prompt": "a", "n": -1}')),
        ("token id out of range", post('{"model": ' + m + ', "prompt": [1, 99999999]}')),
        ("unknown model", post('{"model": "' + "x" * 5000 + '", "prompt": "a"}')),
        ("wrong types", post('{"model": ' + m + ', "prompt": {"a": 1}, "stream": "yes"}')),
        ("prompt over the context", post(json.dumps({"model": model, "prompt": long_prompt}))),
        ("body over the limit", post(json.dumps({"model": model, "prompt": "y" * (2 << 20)}))),
        ("two Content-Lengths", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}"),
        ("header without a colon", b"POST /v1/completions HTTP/1.1\r\nHost x\r\n\r\n"),
        ("bad chunk size", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
        ("garbage request line", b"\x01\x02\x03 nonsense\r\n\r\n"),
    ]


def read_response(sock, slow=False):
    """Reads one whole response; returns (status, headers dict, body bytes)."""
    data = b""
    sock.settimeout(120)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536 if not slow else 64)
        if not chunk:
            raise ConnectionError(f"closed before the head ({len(data)} bytes)")
        data += chunk
        if slow:
            time.sleep(0.01)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, headers, rest[:length]
    while True:  # chunked or close-delimited: read to the end
        chunk = sock.recv(65536 if not slow else 256)
        if not chunk:
            break
        rest += chunk
        if rest.endswith(b"0\r\n\r\n"):
            break
        if slow:
            time.sleep(0.005)
    return status, headers, rest


def raw(port, request, slow=False):
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    try:
        if slow:
            head, _, body = request.partition(b"\r\n\r\n")
            for i in range(0, len(head), 16):
                sock.sendall(head[i:i + 16])
                time.sleep(0.02)
            sock.sendall(b"\r\n\r\n")
            for i in range(0, len(body), 8):
                sock.sendall(body[i:i + 8])
                time.sleep(0.02)
        else:
            sock.sendall(request)
        return read_response(sock, slow=slow)
    finally:
        sock.close()


def request_bytes(path, body):
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            f"Connection: close\r\n\r\n").encode() + data


def is_json_error(body):
    try:
        return isinstance(json.loads(body).get("error", {}).get("message"), str)
    except (ValueError, AttributeError):
        return False


def disconnect(port, path, body, rng):
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        sock.sendall(request_bytes(path, dict(body, stream=True, max_tokens=64)))
        if rng.random() < 0.7:
            sock.recv(256)  # the head and maybe the first event, then hang up
    finally:
        sock.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moepack", default=default_binary())
    parser.add_argument("--model", default=TINY_MODEL)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=1800)
    # The allocator's arenas settle over the first minutes of load; memory is compared from then on.
    parser.add_argument("--warmup", type=float, default=120)
    parser.add_argument("--malformed", type=float, default=0.10)
    parser.add_argument("--disconnect", type=float, default=0.10)
    parser.add_argument("--slow", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve-args", default="--max-queue 256", help="extra arguments for moepack serve")
    args = parser.parse_args()

    log = tempfile.NamedTemporaryFile(prefix="moepack-stress-", suffix=".log", delete=False)
    server = Server(args.moepack, args.model, extra_args=args.serve_args.split(), log_path=log.name)
    pid = server.process.pid
    model = server.model_id()
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    c.request("GET", "/v1/models")
    context = json.load(c.getresponse())["data"][0]["max_model_len"]
    c.close()
    broken = malformed_requests(model, context)

    lock = threading.Lock()
    outcomes = defaultdict(Counter)  # kind -> Counter of status
    failures = []
    latencies = []
    start = time.time()
    deadline = start + args.seconds
    memory = {"start": rss_kib(pid)}

    def record(kind, status, failure=None, latency=None):
        with lock:
            outcomes[kind][status] += 1
            if failure:
                failures.append(f"{kind}: {failure}")
            if latency is not None:
                latencies.append(latency)

    def client(index):
        rng = random.Random(args.seed * 1000 + index)
        while time.time() < deadline:
            roll = rng.random()
            try:
                if roll < args.malformed:
                    name, request = rng.choice(broken)
                    status, _, body = raw(server.port, request)
                    ok = 400 <= status < 500 and is_json_error(body)
                    record("malformed", status, None if ok else f"{name}: {status} {body[:120]!r}")
                elif roll < args.malformed + args.disconnect:
                    path, body, _ = valid_body(rng, model)
                    disconnect(server.port, path, body, rng)
                    record("disconnect", "dropped")
                else:
                    slow = roll < args.malformed + args.disconnect + args.slow
                    path, body, _ = valid_body(rng, model)
                    began = time.perf_counter()
                    status, _, answer = raw(server.port, request_bytes(path, body), slow=slow)
                    kind = "slow" if slow else "valid"
                    record(kind, status, None if status == 200 else f"{status} {answer[:160]!r}",
                           time.perf_counter() - began if status == 200 and not slow else None)
            except (OSError, ValueError) as error:
                record("errors", type(error).__name__, f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    time.sleep(min(args.warmup, args.seconds))
    memory["warm"] = rss_kib(pid)
    peak = memory["warm"]
    last_report = time.time()
    while time.time() < deadline:
        time.sleep(1)
        peak = max(peak, rss_kib(pid))
        if time.time() - last_report >= 60:  # a trend line a minute, for long runs
            last_report = time.time()
            with lock:
                done = sum(sum(c.values()) for c in outcomes.values())
            print(f"  {time.time() - start:5.0f} s: {done} requests, server RSS {rss_kib(pid) / 1024:.0f} MiB",
                  file=sys.stderr, flush=True)
    for t in threads:
        t.join(timeout=180)
    time.sleep(3)  # cancelled and finishing sequences drain
    memory["end"] = rss_kib(pid)
    exit_code = server.stop()
    elapsed = time.time() - start

    print(f"moepack serve {args.model}: {args.clients} clients for {elapsed:.0f} s")
    total = 0
    for kind in ("valid", "slow", "disconnect", "malformed", "errors"):
        if outcomes[kind]:
            count = sum(outcomes[kind].values())
            total += count
            print(f"  {kind:10} {count:7d}  " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes[kind].items(), key=str)))
    if latencies:
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        print(f"  valid latency: p50 {statistics.median(latencies):.3f} s, p99 {p99:.3f} s, max {latencies[-1]:.3f} s")
    print(f"  server RSS: start {memory['start'] / 1024:.0f} MiB, after warm-up {memory['warm'] / 1024:.0f} MiB, "
          f"peak {peak / 1024:.0f} MiB, end {memory['end'] / 1024:.0f} MiB")
    print(f"  exit code after SIGTERM: {exit_code}  (server log: {log.name})")
    five_xx = sum(v for kind in outcomes for k, v in outcomes[kind].items() if isinstance(k, int) and k >= 500)
    problems = list(failures)
    if five_xx:
        problems.append(f"{five_xx} answers were 5xx")
    if memory["end"] > 1.2 * memory["warm"]:
        problems.append(f"memory did not return: {memory['end']} KiB at the end against {memory['warm']} KiB after warm-up")
    if exit_code != 0:
        problems.append(f"exit code {exit_code} after SIGTERM")
    if total == 0:
        problems.append("no request was sent")
    for line in problems[:20]:
        print("  FAIL " + line)
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more")
    print("PASS" if not problems else f"FAILED: {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
