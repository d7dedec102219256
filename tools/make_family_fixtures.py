#!/usr/bin/env python3
"""Generate small random Qwen3-MoE and Mixtral checkpoints and their golden outputs under
Tests/Fixtures/checkpoints/, in the same layout as tools/make_fixtures.py writes for ERNIE.

Each fixture is a transformers model with every parameter randomised, written with
`save_pretrained` (the hub's per-expert layout; bf16 fixtures are rounded to bf16 first and
written as bf16), loaded back with `from_pretrained` in float32 with eager attention, and the
reloaded model's logits and expert choices are stored as the golden reference. Routing must be
unambiguous (no near-ties at the top-k boundary).

Run:  /work/venv-ref/bin/python tools/make_family_fixtures.py [--only NAME ...]
Needs torch and transformers 5 (not needed by CI). Output is deterministic (fixed seeds).
"""

import argparse
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

from safetensors import safe_open  # noqa: E402
from transformers import (  # noqa: E402
    MixtralConfig,
    MixtralForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "Tests" / "Fixtures" / "checkpoints"
MIN_ROUTING_GAP = 1e-4
SEQ_LENGTHS = [1, 5, 37]

COMMON = dict(vocab_size=96, hidden_size=48, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=256, rms_norm_eps=1e-6)

FIXTURES = [
    # Dense first layer (mlp_only_layers), renormalised top-k, head_dim 16 != 48 / 4, untied, f32.
    dict(name="qwen3_moe_basic", cls=Qwen3MoeForCausalLM, config=Qwen3MoeConfig, seed=3001, dtype="float32",
         cfg=dict(COMMON, num_hidden_layers=3, head_dim=16, intermediate_size=40, moe_intermediate_size=24,
                  num_experts=6, num_experts_per_tok=2, norm_topk_prob=True, mlp_only_layers=[0],
                  decoder_sparse_step=1, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    # Plain softmax weights (norm_topk_prob false), every second layer sparse, tied head, bf16, sharded.
    dict(name="qwen3_moe_tied_bf16", cls=Qwen3MoeForCausalLM, config=Qwen3MoeConfig, seed=3101, dtype="bfloat16",
         shard="40KB",
         cfg=dict(COMMON, num_hidden_layers=4, intermediate_size=32, moe_intermediate_size=16,
                  num_experts=8, num_experts_per_tok=3, norm_topk_prob=False, mlp_only_layers=[],
                  decoder_sparse_step=2, tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    # Every layer sparse, top-2 of 4, GQA, untied, f32.
    dict(name="mixtral_basic", cls=MixtralForCausalLM, config=MixtralConfig, seed=4001, dtype="float32",
         cfg=dict(COMMON, num_hidden_layers=2, intermediate_size=24, num_local_experts=4, num_experts_per_tok=2,
                  tie_word_embeddings=False, sliding_window=None,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    # A sliding window shorter than the longest sequence, bf16, sharded.
    dict(name="mixtral_window_bf16", cls=MixtralForCausalLM, config=MixtralConfig, seed=4101, dtype="bfloat16",
         shard="40KB",
         cfg=dict(COMMON, num_hidden_layers=2, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2,
                  tie_word_embeddings=False, sliding_window=8,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
]


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("gate.weight") and p.dim() == 2:  # router: decisive but not one-hot
                p.copy_(torch.randn(p.shape, generator=g) * 2 / p.shape[-1] ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)


def routers(model):
    return [(i, layer.mlp.gate) for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "gate")]


def record_routing(model, ids, top_k):
    records, hooks = {}, []
    for i, gate in routers(model):
        def hook(mod, inputs, output, i=i):
            logits = output[0].float()
            probs = torch.softmax(logits, dim=-1)
            top = torch.topk(probs, top_k + 1, dim=-1)
            gap = (top.values[:, top_k - 1] - top.values[:, top_k]).min().item()
            records[i] = dict(experts=output[2].tolist(), weights=output[1].float().tolist(), gap=gap)
        hooks.append(gate.register_forward_hook(hook))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    for h in hooks:
        h.remove()
    return logits, records


def make(spec):
    out = OUT / spec["name"]
    if out.exists():
        shutil.rmtree(out)
    cfg = spec["config"](**spec["cfg"])
    cfg._attn_implementation = "eager"
    top_k = cfg.num_experts_per_tok
    for attempt in range(50):
        seed = spec["seed"] + 100 * attempt
        torch.manual_seed(seed)
        model = spec["cls"](cfg).eval()
        randomise(model, seed)
        if cfg.tie_word_embeddings:
            model.lm_head.weight = model.model.embed_tokens.weight
        if spec["dtype"] == "bfloat16":  # parameters only: the rotary buffer stays f32, as from_pretrained makes it
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.to(torch.bfloat16).to(torch.float32))
        rng = np.random.default_rng(seed)
        sequences = [rng.integers(0, cfg.vocab_size, n).tolist() for n in SEQ_LENGTHS]
        gaps = [r["gap"] for ids in sequences for r in record_routing(model, ids, top_k)[1].values()]
        if min(gaps) > MIN_ROUTING_GAP:
            break
    else:
        raise RuntimeError(f"{spec['name']}: no seed without near-ties")
    save = copy.deepcopy(model).to(torch.bfloat16) if spec["dtype"] == "bfloat16" else model
    save.save_pretrained(out, max_shard_size=spec.get("shard", "50GB"))

    loaded = spec["cls"].from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    (out / "golden").mkdir()
    (out / "golden" / "sequences.json").write_text(json.dumps({"sequences": sequences}) + "\n")
    moe_layers = [i for i, _ in routers(loaded)]
    min_gap = float("inf")
    for i, ids in enumerate(sequences):
        logits, records = record_routing(loaded, ids, top_k)
        with torch.no_grad():
            reference = model(torch.tensor([ids])).logits[0].float()
        diff = (logits - reference).abs().max().item()
        assert diff <= 1e-5 * max(1.0, reference.abs().max().item()), f"reload changes the logits by {diff}"
        np.save(out / "golden" / f"logits_{i}.npy", logits.numpy().astype(np.float32))
        layers = {}
        for layer, r in records.items():
            min_gap = min(min_gap, r["gap"])
            layers[str(layer)] = {"experts": r["experts"], "weights": r["weights"]}
        (out / "golden" / f"routing_{i}.json").write_text(json.dumps({"layers": layers}) + "\n")
    names = {}
    for f in sorted(out.glob("*.safetensors")):
        with safe_open(f, "pt") as s:
            for k in s.keys():
                names[k] = str(s.get_slice(k).get_dtype())
    expected = {
        "seed": seed,
        "moe_layers": moe_layers,
        "dense_layers": [i for i in range(cfg.num_hidden_layers) if i not in moe_layers],
        "tensor_count": len(names),
        "tensor_dtypes": {d: list(names.values()).count(d) for d in sorted(set(names.values()))},
        "has_lm_head_weight": "lm_head.weight" in names,
        "router_min_topk_gap": round(min_gap, 6),
        "logits_atol": 1e-5,
    }
    (out / "golden" / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{spec['name']}: {len(names)} tensors, {size / 1024:.0f} KiB, moe layers {moe_layers}, "
          f"min top-k gap {min_gap:.4g}, e.g. {sorted(names)[:3]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    for spec in FIXTURES:
        if not args.only or spec["name"] in args.only:
            make(spec)


if __name__ == "__main__":
    main()
