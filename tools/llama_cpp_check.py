#!/usr/bin/env python3
"""Side by side with llama.cpp on a GGUF export: the same token ids through `moepack logits`
on the bundle and through llama.cpp (the `llama_cpp` Python binding, llama-cpp-python from
PyPI, built outside the repository; f32 KV cache, no flash attention) on
`moepack export BUNDLE --to gguf`. Not run in CI.

    python3 tools/llama_cpp_check.py --moepack .build/release/moepack BUNDLE.mpk \\
        --ids heldout.ids [--windows 2] [--ctx 256] [--pruned drop|mask] [--threads 2] [--server LLAMA_SERVER]

--ids is a file of space-separated token ids (for example `moepack tokenize MODEL --file
heldout.txt`); the first --windows × --ctx ids are cut into windows of --ctx, no BOS added.
Prints one JSON line: mean and largest KL(moepack ‖ llama.cpp) per position, top-1
agreement, and the export's own report line. With --server (a llama-server binary built
outside the repository) it also serves the export on loopback and asks it, with the `openai`
client, for the model list, a completion and a chat completion, streamed and not.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kl_compare import Engine, log_softmax  # noqa: E402  (llama.cpp and moepack logits on one window)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--moepack", default=".build/release/moepack")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--pruned", choices=["drop", "mask"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--server", help="a llama-server binary: also check it answers the openai client")
    args = ap.parse_args()
    ids = [int(t) for t in open(args.ids).read().split()]
    need = args.windows * args.ctx
    if len(ids) < need:
        sys.exit(f"{args.ids} has {len(ids)} ids, fewer than {need}")
    windows = [ids[i * args.ctx:(i + 1) * args.ctx] for i in range(args.windows)]
    with tempfile.TemporaryDirectory() as tmp:
        gguf = os.path.join(tmp, "model.gguf")
        cmd = [args.moepack, "export", args.bundle, "--to", "gguf", "--output", gguf]
        if args.pruned:
            cmd += ["--pruned", args.pruned]
        report = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        mine_engine = Engine(args.bundle, args.ctx, args.moepack, args.threads)
        llama = Engine(gguf, args.ctx, args.moepack, args.threads)
        kl, agree = [], []
        for w in windows:
            a, b = log_softmax(mine_engine.logits(w, tmp)), log_softmax(llama.logits(w, tmp))
            kl.append((np.exp(a) * (a - b)).sum(-1))
            agree.append(a.argmax(-1) == b.argmax(-1))
        kl, agree = np.concatenate(kl), np.concatenate(agree)
        served = serve_check(args.server, gguf, args.threads) if args.server else None
    print(json.dumps({"served": served, "bundle": os.path.basename(args.bundle), "pruned": args.pruned, "positions": int(kl.size),
                      "mean_kl": float(kl.mean()), "max_kl": float(kl.max()), "top1_agreement": float(agree.mean()),
                      "export": report.strip().splitlines()[0]}))


def serve_check(binary, gguf, threads):
    """llama-server on the export, asked by the openai client; returns what it answered."""
    import socket

    import openai
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "-t", str(threads),
                             "-c", "512", "--jinja"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
        for _ in range(120):
            try:
                models = [m.id for m in client.models.list().data]
                break
            except openai.APIConnectionError:
                time.sleep(0.5)
        else:
            raise SystemExit("llama-server did not start")
        for _ in range(120):  # 503 while the model loads
            try:
                done = client.completions.create(model=models[0], prompt="It is a truth", max_tokens=12, temperature=0)
                break
            except openai.InternalServerError:
                time.sleep(0.5)
        chat = client.chat.completions.create(model=models[0], messages=[{"role": "user", "content": "Who is Emma?"}],
                                              max_tokens=12, temperature=0)
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model=models[0], messages=[{"role": "user", "content": "Who is Emma?"}], max_tokens=12, temperature=0,
            stream=True) if c.choices)
        return {"models": models, "completion": done.choices[0].text, "chat": chat.choices[0].message.content,
                "chat_tokens": chat.usage.completion_tokens, "streamed_equals_chat": streamed == chat.choices[0].message.content}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
