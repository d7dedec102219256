#!/usr/bin/env python3
"""Reference numbers for the evaluator tests: perplexity, KL(reference || model) and top-1
agreement of two fixture checkpoints on one token sequence, computed with transformers the way
`moepack eval` documents it (docs/eval.md): non-overlapping windows of `context` tokens, the last
window kept if it has >= 2 tokens, each window from position 0, float32 logits, log-softmax in
float64, scored positions 0..len-2 of every window.

Run:  /work/venv/bin/python tools/make_eval_fixture.py
Writes Tests/Fixtures/eval/expected.json (deterministic).
"""
import json
import math
from pathlib import Path

import torch

torch.set_num_threads(1)
from transformers import AutoModelForCausalLM  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIX = REPO / "Tests/Fixtures/checkpoints"
MODEL, REFERENCE = "moe_basic", "moe_sharded"


def load(name):
    return AutoModelForCausalLM.from_pretrained(str(FIX / name), dtype=torch.float32,
                                                attn_implementation="eager").eval()


def evaluate(model, reference, ids, ctx):
    nll = ref_nll = kl = 0.0
    agree = n = windows = 0
    with torch.no_grad():
        for s in range(0, len(ids), ctx):
            w = ids[s:s + ctx]
            if len(w) < 2:
                break
            x = torch.tensor([w])
            lp = torch.log_softmax(model(input_ids=x).logits[0].double(), -1)[:-1]
            lr = torch.log_softmax(reference(input_ids=x).logits[0].double(), -1)[:-1]
            t = x[0, 1:]
            nll -= lp[torch.arange(len(t)), t].sum().item()
            ref_nll -= lr[torch.arange(len(t)), t].sum().item()
            kl += (lr.exp() * (lr - lp)).sum().item()
            agree += (lr.argmax(-1) == lp.argmax(-1)).sum().item()
            n += len(t)
            windows += 1
    return {"context": ctx, "windows": windows, "predicted_tokens": n, "total_nll": nll,
            "perplexity": math.exp(nll / n), "reference_perplexity": math.exp(ref_nll / n),
            "mean_kl": kl / n, "top1_agreement": agree / n}


def main():
    ids = json.load(open(FIX / MODEL / "golden/sequences.json"))["sequences"][2]
    model, reference = load(MODEL), load(REFERENCE)
    out = {"model": MODEL, "reference": REFERENCE, "ids": ids,
           "results": [evaluate(model, reference, ids, c) for c in (37, 10, 6)]}
    (REPO / "Tests/Fixtures/eval").mkdir(parents=True, exist_ok=True)
    json.dump(out, open(REPO / "Tests/Fixtures/eval/expected.json", "w"), indent=1)


if __name__ == "__main__":
    main()
