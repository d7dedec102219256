#!/usr/bin/env python3
"""KL divergence between two models on the same token ids and windows, each model run by its
own engine: a path ending in .gguf through llama.cpp (the `llama_cpp` binding from
llama-cpp-python, built outside the repository; f32 KV cache, no flash attention), anything
else (a checkpoint folder or a .mpk bundle) through `moepack logits`. Used to put moepack's
formats next to llama.cpp's at the same bytes: KL(f32 checkpoint ‖ bundle) against
KL(f32 GGUF ‖ quantized GGUF). Not run in CI.

    python3 tools/kl_compare.py REFERENCE MODEL --ids IDS [--windows 40] [--ctx 256] [--moepack BIN]

--ids: space-separated token ids (e.g. `moepack tokenize MODEL --file heldout.txt`); the first
--windows × --ctx of them are cut into windows of --ctx, no BOS added, every position scored.
Prints one JSON line: mean and largest KL(REFERENCE ‖ MODEL) per position, top-1 agreement.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


class Engine:
    def __init__(self, path, ctx, moepack, threads):
        self.path, self.moepack, self.threads = path, moepack, threads
        self.llm = None
        if path.endswith(".gguf"):
            from llama_cpp import Llama
            self.llm = Llama(model_path=path, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True, type_k=0, type_v=0,
                             flash_attn=False, n_threads=threads, n_threads_batch=threads, verbose=False)

    def logits(self, ids, tmp):
        if self.llm is not None:
            self.llm.reset()
            self.llm.eval(ids)
            return np.array(self.llm.scores[:len(ids)], dtype=np.float64)
        npy = os.path.join(tmp, "logits.npy")
        subprocess.run([self.moepack, "logits", self.path, "--tokens", ",".join(map(str, ids)), "--output", npy,
                        "--threads", str(self.threads)], check=True, capture_output=True)
        return np.load(npy).astype(np.float64)


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reference")
    ap.add_argument("model")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--windows", type=int, default=40)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--moepack", default=".build/release/moepack")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    ids = [int(t) for t in open(args.ids).read().split()]
    if len(ids) < args.windows * args.ctx:
        sys.exit(f"{args.ids} has {len(ids)} ids, fewer than {args.windows * args.ctx}")
    ref = Engine(args.reference, args.ctx, args.moepack, args.threads)
    model = Engine(args.model, args.ctx, args.moepack, args.threads)
    kl, agree = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for w in range(args.windows):
            window = ids[w * args.ctx:(w + 1) * args.ctx]
            a, b = log_softmax(ref.logits(window, tmp)), log_softmax(model.logits(window, tmp))
            kl.append((np.exp(a) * (a - b)).sum(-1))
            agree.append(a.argmax(-1) == b.argmax(-1))
    kl, agree = np.concatenate(kl), np.concatenate(agree)
    print(json.dumps({"reference": os.path.basename(args.reference), "model": os.path.basename(args.model),
                      "positions": int(kl.size), "mean_kl": float(kl.mean()), "max_kl": float(kl.max()),
                      "top1_agreement": float(agree.mean())}))


if __name__ == "__main__":
    main()
