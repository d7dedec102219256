#!/usr/bin/env python3
"""End-to-end check of `moepack export --to compressed-tensors` with transformers and the
`compressed-tensors` package (needs torch: tools/requirements.txt plus
`pip install compressed-tensors`; not run in CI).

    python3 tools/compressed_tensors_check.py --moepack .build/release/moepack BUNDLE.mpk [--pruned drop|mask]

For the bundle it writes, in a temporary folder, the compressed-tensors export and the
dequantized `--to safetensors` export (both float32, so nothing is rounded), then:
  1. loads both with transformers (the compressed one through compressed-tensors'
     decompressor, CompressedTensorsConfig(dequantize=True)) and compares every weight:
     they must be equal;
  2. runs transformers on the compressed export and `moepack logits` (moepack's f32 reference
     path) on the dequantized one for the same token ids: largest difference relative to the
     largest logit must be below 1e-4;
  3. loads the default (float16) export and reports how far its weights are from float32.
Prints one JSON line; exit status 1 when a check fails.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
from transformers import AutoModelForCausalLM
from transformers.utils.quantization_config import CompressedTensorsConfig

TOKENS = [1, 5, 300, 52, 901, 77, 1500, 3, 12, 45, 2000, 14, 88, 7, 640, 1024, 31, 9, 2500, 600,
          73, 411, 1999, 8, 256, 1200, 17, 903, 64, 2047, 5, 99, 1777, 42, 2900, 150]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    return r.stdout


def load(path, compressed):
    kwargs = {"dtype": torch.float32}
    if compressed:
        kwargs["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_pretrained(path, **kwargs).eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--moepack", default=".build/release/moepack")
    ap.add_argument("--pruned", choices=["drop", "mask"])
    ap.add_argument("--tokens", help="comma-separated token ids (default: 36 fixed ids)")
    args = ap.parse_args()
    tokens = [int(t) for t in args.tokens.split(",")] if args.tokens else TOKENS
    pruned = ["--pruned", args.pruned] if args.pruned else []
    result = {"bundle": os.path.basename(args.bundle), "pruned": args.pruned}
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        ct, deq, ct16 = (os.path.join(tmp, n) for n in ("ct", "deq", "ct16"))
        report = run([args.moepack, "export", args.bundle, "--to", "compressed-tensors", "--dtype", "float32", "--output", ct] + pruned)
        run([args.moepack, "export", args.bundle, "--to", "safetensors", "--dtype", "float32", "--output", deq] + pruned)
        run([args.moepack, "export", args.bundle, "--to", "compressed-tensors", "--output", ct16] + pruned)
        result["export"] = report.strip().splitlines()[0]

        a, b = load(deq, False), load(ct, True)
        sa, sb = a.state_dict(), b.state_dict()
        equal = sum(1 for k in sa if k in sb and sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]))
        result["weights_equal"] = f"{equal}/{len(sa)}"
        if equal != len(sa):
            failures.append("decompressed weights differ from the dequantized export")

        with torch.no_grad():
            theirs = b(torch.tensor([tokens])).logits[0].numpy()
        npy = os.path.join(tmp, "moepack.npy")
        run([args.moepack, "logits", deq, "--tokens", ",".join(map(str, tokens)), "--output", npy])
        mine = np.load(npy)
        rel = float(np.abs(theirs - mine).max() / np.abs(mine).max())
        result["logits_max_relative_difference"] = rel
        result["top1_agreement"] = float((theirs.argmax(-1) == mine.argmax(-1)).mean())
        if rel > 1e-4:
            failures.append(f"logits differ by {rel:g} relative")

        s16 = load(ct16, True).state_dict()
        worst = max(float((s16[k].float() - sa[k]).abs().max() / max(sa[k].abs().max(), 1e-30)) for k in sa if k in s16)
        result["float16_export_max_weight_change"] = worst
    result["failures"] = failures
    print(json.dumps(result))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
