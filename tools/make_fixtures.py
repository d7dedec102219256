#!/usr/bin/env python3
"""Generate the small random ERNIE 4.5 checkpoints and golden logits under
Tests/Fixtures/checkpoints/.

Each fixture is built as a transformers model with every parameter randomised,
written in the Hugging Face hub layout (per-expert tensors, hub-style or
transformers-5-style config.json), loaded back with `from_pretrained`, and the
reloaded model's float32 eager-attention logits are stored as the golden
reference. The script asserts that the reload reproduces every parameter and
the logits, that the written tensors match what `save_pretrained` itself
writes, and that routing is unambiguous (no near-ties in the expert top-k).

Run:  /work/venv/bin/python tools/make_fixtures.py [--out DIR] [--only NAME ...]
Output is deterministic (fixed seeds); rerunning rewrites identical files.
"""

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

from transformers import (  # noqa: E402  (thread count set before import)
    Ernie4_5Config,
    Ernie4_5ForCausalLM,
    Ernie4_5_MoeConfig,
    Ernie4_5_MoeForCausalLM,
)
from transformers.models.ernie4_5_moe.modeling_ernie4_5_moe import (  # noqa: E402
    Ernie4_5_MoeTopKRouter,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "Tests" / "Fixtures" / "checkpoints"

# Smallest gap allowed between the k-th and (k+1)-th biased router score.
# A reimplementation differs from transformers by ~1e-6, so a larger gap means
# it must select exactly the same experts.
MIN_ROUTING_GAP = 1e-4

SEQ_LENGTHS = [1, 5, 37]

# ---------------------------------------------------------------------------
# Fixture specifications
# ---------------------------------------------------------------------------

FIXTURES = [
    dict(
        name="moe_basic",
        arch="moe",
        seed=1001,
        config_style="hub",
        dtype="float32",
        cfg=dict(
            vocab_size=128, hidden_size=48, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, head_dim=12,
            intermediate_size=64, moe_intermediate_size=24,
            moe_num_experts=8, moe_k=2, moe_num_shared_experts=1,
            moe_layer_start_index=1, moe_layer_end_index=2, moe_layer_interval=1,
            use_bias=False, tie_word_embeddings=True,
            rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=4096,
        ),
    ),
    dict(
        name="moe_shared2_bias",
        arch="moe",
        seed=2002,
        config_style="hub",
        dtype="float32",
        require_bias_changes_selection=True,
        cfg=dict(
            vocab_size=112, hidden_size=32, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            intermediate_size=48, moe_intermediate_size=16,
            moe_num_experts=8, moe_k=3, moe_num_shared_experts=2,
            moe_layer_start_index=1, moe_layer_end_index=2, moe_layer_interval=1,
            use_bias=True, tie_word_embeddings=False,
            rope_theta=10000.0, rms_norm_eps=1e-6, max_position_embeddings=2048,
        ),
    ),
    dict(
        name="moe_noshared_interval2",
        arch="moe",
        seed=3003,
        config_style="transformers5",
        dtype="bfloat16",
        cfg=dict(
            vocab_size=96, hidden_size=32, num_hidden_layers=6,
            num_attention_heads=4, num_key_value_heads=1,  # head_dim derived: 8
            intermediate_size=48, moe_intermediate_size=16,
            moe_num_experts=6, moe_k=2, moe_num_shared_experts=0,
            moe_layer_start_index=1, moe_layer_end_index=4, moe_layer_interval=2,
            use_bias=False, tie_word_embeddings=False,
            rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=4096,
        ),
    ),
    dict(
        name="moe_sharded",
        arch="moe",
        seed=4004,
        config_style="hub",
        dtype="float32",
        shards=3,
        cfg=dict(
            vocab_size=128, hidden_size=48, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, head_dim=12,
            intermediate_size=64, moe_intermediate_size=24,
            moe_num_experts=8, moe_k=2, moe_num_shared_experts=1,
            moe_layer_start_index=1, moe_layer_end_index=2, moe_layer_interval=1,
            use_bias=False, tie_word_embeddings=True,
            rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=4096,
        ),
    ),
    dict(
        name="dense",
        arch="dense",
        seed=5005,
        config_style="hub",
        dtype="float32",
        cfg=dict(
            vocab_size=144, hidden_size=48, num_hidden_layers=2,
            num_attention_heads=6, num_key_value_heads=2, head_dim=8,
            intermediate_size=96,
            use_bias=True, tie_word_embeddings=False,
            rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=4096,
        ),
    ),
]

MOE_KEYS = [
    "moe_intermediate_size", "moe_num_experts", "moe_k", "moe_num_shared_experts",
    "moe_layer_start_index", "moe_layer_end_index", "moe_layer_interval",
]


def storage_dtype(spec, hub_name):
    """The dtype a tensor is written with in the fixture's safetensors."""
    if spec["name"] == "moe_noshared_interval2":
        # bf16 checkpoint; the correction bias stays f32 (as transformers keeps it).
        return torch.float32 if "e_score_correction_bias" in hub_name else torch.bfloat16
    if spec["name"] == "moe_sharded":
        f16 = (
            hub_name == "model.embed_tokens.weight"
            or hub_name == "model.norm.weight"
            or hub_name == "model.layers.0.self_attn.q_proj.weight"
            or hub_name == "model.layers.1.post_attention_layernorm.weight"
            or any(hub_name.startswith(f"model.layers.1.mlp.experts.{e}.") for e in range(4))
            or hub_name.startswith("model.layers.2.mlp.shared_experts.")
        )
        return torch.float16 if f16 else torch.float32
    return torch.float32


# ---------------------------------------------------------------------------
# Model construction and randomisation
# ---------------------------------------------------------------------------

def make_config(spec):
    c = dict(spec["cfg"])
    theta = c.pop("rope_theta")
    c["rope_parameters"] = {"rope_theta": theta, "rope_type": "default"}
    c["pad_token_id"], c["bos_token_id"], c["eos_token_id"] = 0, 1, 2
    if spec["arch"] == "moe":
        c["moe_norm_min"] = 1e-12
        return Ernie4_5_MoeConfig(**c)
    return Ernie4_5Config(**c)


def build_model(spec, seed):
    config = make_config(spec)
    config._attn_implementation = "eager"
    cls = Ernie4_5_MoeForCausalLM if spec["arch"] == "moe" else Ernie4_5ForCausalLM
    model = cls(config).eval()
    g = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=g, dtype=torch.float32)

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("e_score_correction_bias"):
                # Comparable to the spread of softmax probabilities, so it reorders some experts.
                v = 0.06 * randn(p.shape)
            elif "layernorm" in name or name == "model.norm.weight":
                v = 1.0 + 0.25 * randn(p.shape)
            elif name.endswith(".bias"):
                v = 0.1 * randn(p.shape)
            elif name == "model.embed_tokens.weight":
                # Tied fixtures reuse this as lm_head: keep logits at a few units.
                v = (0.3 if model.config.tie_word_embeddings else 1.0) * randn(p.shape)
            elif name.endswith("mlp.gate.weight"):
                v = 0.15 * randn(p.shape)
            else:
                fan_in = p.shape[-1]
                v = randn(p.shape) * (0.8 / fan_in ** 0.5)
            p.copy_(v)
    return model


# ---------------------------------------------------------------------------
# Hub layout
# ---------------------------------------------------------------------------

def hub_tensors(model, spec):
    """Map the in-memory (fused-expert) parameters to hub tensor names."""
    cfg = model.config
    out = {}
    for name, p in model.named_parameters():
        t = p.detach().clone()
        if name.endswith("mlp.experts.gate_up_proj"):
            prefix = name[: -len("gate_up_proj")]
            inter = cfg.moe_intermediate_size
            assert t.shape == (cfg.moe_num_experts, 2 * inter, cfg.hidden_size)
            for e in range(t.shape[0]):
                # The expert forward does `linear(x, gate_up_proj[e]).chunk(2)`
                # and uses the first chunk as gate: rows [0, I) are gate_proj.
                out[f"{prefix}{e}.gate_proj.weight"] = t[e, :inter].clone()
                out[f"{prefix}{e}.up_proj.weight"] = t[e, inter:].clone()
        elif name.endswith("mlp.experts.down_proj"):
            prefix = name[: -len("down_proj")]
            assert t.shape == (cfg.moe_num_experts, cfg.hidden_size, cfg.moe_intermediate_size)
            for e in range(t.shape[0]):
                out[f"{prefix}{e}.down_proj.weight"] = t[e].clone()
        elif name.endswith("mlp.gate.moe_statics.e_score_correction_bias"):
            out[name.replace("mlp.gate.moe_statics.", "mlp.moe_statics.")] = t
        else:
            out[name] = t
    if cfg.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    else:
        assert "lm_head.weight" in out
    return out


def round_to_storage(model, spec):
    """Round in-memory parameters through their storage dtype so the model
    computes exactly with the values the files hold."""
    hub = hub_tensors(model, spec)
    dt = {k: storage_dtype(spec, k) for k in hub}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("mlp.experts.gate_up_proj"):
                prefix = name[: -len("gate_up_proj")]
                inter = model.config.moe_intermediate_size
                for e in range(p.shape[0]):
                    p[e, :inter] = p[e, :inter].to(dt[f"{prefix}{e}.gate_proj.weight"]).float()
                    p[e, inter:] = p[e, inter:].to(dt[f"{prefix}{e}.up_proj.weight"]).float()
            elif name.endswith("mlp.experts.down_proj"):
                prefix = name[: -len("down_proj")]
                for e in range(p.shape[0]):
                    p[e] = p[e].to(dt[f"{prefix}{e}.down_proj.weight"]).float()
            elif name.endswith("mlp.gate.moe_statics.e_score_correction_bias"):
                key = name.replace("mlp.gate.moe_statics.", "mlp.moe_statics.")
                p.copy_(p.to(dt[key]).float())
            elif name in dt:
                p.copy_(p.to(dt[name]).float())


def hub_config(spec, model):
    c = spec["cfg"]
    arch = "Ernie4_5_MoeForCausalLM" if spec["arch"] == "moe" else "Ernie4_5ForCausalLM"
    d = {
        "architectures": [arch],
        "model_type": "ernie4_5_moe" if spec["arch"] == "moe" else "ernie4_5",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "hidden_act": "silu",
        "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"],
        "max_position_embeddings": c["max_position_embeddings"],
        "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"],
        "head_dim": c["head_dim"],
        "num_hidden_layers": c["num_hidden_layers"],
        "rms_norm_eps": c["rms_norm_eps"],
        "rope_theta": c["rope_theta"],
        "use_bias": c["use_bias"],
        "tie_word_embeddings": c["tie_word_embeddings"],
        "vocab_size": c["vocab_size"],
        "torch_dtype": spec["dtype"],
        "use_cache": False,
        # Present in hub configs, meaningless to inference: readers must ignore.
        "use_rmsnorm": True,
    }
    if spec["arch"] == "moe":
        for k in MOE_KEYS:
            d[k] = c[k]
        d["moe_norm_min"] = 1e-12
        d["moe_gate"] = "topk"
        d["moe_use_aux_free"] = True
        d["moe_capacity"] = [c["moe_num_experts"]] * 3
    return d


def write_checkpoint(model, spec, out_dir):
    hub = hub_tensors(model, spec)
    tensors = {k: v.to(storage_dtype(spec, k)).contiguous() for k, v in hub.items()}

    if spec["config_style"] == "hub":
        cfg = hub_config(spec, model)
        (out_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    else:
        # transformers-5 save_pretrained style: rope_parameters, no head_dim, "dtype".
        assert "head_dim" not in spec["cfg"]
        model.config.dtype = getattr(torch, spec["dtype"])
        model.config.architectures = [type(model).__name__]  # as model.save_pretrained sets it
        model.config.save_pretrained(out_dir)
        written = json.loads((out_dir / "config.json").read_text())
        assert "rope_parameters" in written and "rope_theta" not in written, written
        assert "head_dim" not in written, written
        assert written["dtype"] == spec["dtype"], written

    meta = {"format": "pt"}
    n_shards = spec.get("shards", 1)
    if n_shards == 1:
        save_file(tensors, str(out_dir / "model.safetensors"), metadata=meta)
        return tensors
    names = sorted(tensors)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    budget = total / n_shards
    groups, acc = [[]], 0
    for n in names:
        size = tensors[n].numel() * tensors[n].element_size()
        if acc + size > budget * len(groups) and len(groups) < n_shards and groups[-1]:
            groups.append([])
        groups[-1].append(n)
        acc += size
    assert len(groups) == n_shards, len(groups)
    weight_map = {}
    for i, group in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        save_file({n: tensors[n] for n in group}, str(out_dir / fname), metadata=meta)
        for n in group:
            weight_map[n] = fname
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return tensors


def read_dir_tensors(d):
    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            for k in h.keys():
                out[k] = h.get_tensor(k)
    return out


# ---------------------------------------------------------------------------
# Verification and golden outputs
# ---------------------------------------------------------------------------

class RoutingRecorder:
    """Records, per MoE layer, the experts transformers selects, the plain-softmax
    selection, and the top-k score gap."""

    def __init__(self, model):
        self.records = {}
        self.handles = []
        for name, mod in model.named_modules():
            if isinstance(mod, Ernie4_5_MoeTopKRouter):
                layer = int(name.split(".")[2])
                self.handles.append(mod.register_forward_hook(self._hook(layer)))

    def _hook(self, layer):
        def hook(mod, inputs, output):
            _, weights, selected = output
            x = inputs[0].float()
            probs = torch.softmax(x @ mod.weight.float().T, dim=-1)
            scores = probs + mod.moe_statics.e_score_correction_bias.float().squeeze(0)
            top = torch.topk(scores, mod.top_k + 1, dim=-1).values if mod.top_k < scores.shape[-1] else None
            gap = (top[:, -2] - top[:, -1]).min().item() if top is not None else float("inf")
            plain = torch.topk(probs, mod.top_k, dim=-1).indices
            changed = sum(
                set(a.tolist()) != set(b.tolist()) for a, b in zip(plain, selected)
            )
            self.records[layer] = dict(
                experts=selected.tolist(),
                weights=[[round(w, 7) for w in row] for row in weights.float().tolist()],
                gap=gap,
                changed=changed,
            )
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()


def moe_layer_indices(cfg):
    return [
        i for i in range(cfg.num_hidden_layers)
        if (i + 1) % cfg.moe_layer_interval == 0
        and cfg.moe_layer_start_index <= i <= cfg.moe_layer_end_index
    ]


def make_sequences(spec, seed):
    g = torch.Generator().manual_seed(seed + 7)
    sequences = []
    for n in SEQ_LENGTHS:
        ids = torch.randint(3, spec["cfg"]["vocab_size"], (n,), generator=g).tolist()
        if n > 1:
            ids[0] = 1  # BOS
        sequences.append(ids)
    return sequences


def routing_ok(model, spec, sequences):
    """True when no token has a near-tie at the top-k boundary (and, if
    required, the correction bias changes at least one selection)."""
    rec = RoutingRecorder(model)
    gap, changed = float("inf"), 0
    for ids in sequences:
        logits_of(model, ids)
        for r in rec.records.values():
            gap, changed = min(gap, r["gap"]), changed + r["changed"]
    rec.close()
    return gap > MIN_ROUTING_GAP and (changed > 0 or not spec.get("require_bias_changes_selection"))


def pick_model(spec):
    """Build the model from the fixture seed; if its routing has a near-tie,
    move to the next seed (deterministically) so goldens are unambiguous."""
    for attempt in range(50):
        seed = spec["seed"] + 100 * attempt
        model = build_model(spec, seed)
        round_to_storage(model, spec)
        sequences = make_sequences(spec, seed)
        if spec["arch"] == "dense" or routing_ok(model, spec, sequences):
            return model, sequences, seed
    raise RuntimeError(f"{spec['name']}: no seed with unambiguous routing")


def make_fixture(spec, out_root):
    name = spec["name"]
    out_dir = out_root / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "golden").mkdir(parents=True)

    model, sequences, seed = pick_model(spec)
    written = write_checkpoint(model, spec, out_dir)

    # The tensors must be exactly what save_pretrained writes for this model.
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        ref = read_dir_tensors(tmp)
    assert set(ref) == set(written), (set(ref) ^ set(written))
    for k, t in ref.items():
        assert torch.equal(t.float(), written[k].float()), k
    on_disk = read_dir_tensors(out_dir)
    assert set(on_disk) == set(written)
    for k, t in on_disk.items():
        assert t.dtype == storage_dtype(spec, k) and torch.equal(t, written[k]), k
    check_bias_placement(spec, on_disk)

    cls = type(model)
    loaded, info = cls.from_pretrained(
        out_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    loaded.eval()
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info.get(key), (key, info[key])
    ref_sd, got_sd = model.state_dict(), loaded.state_dict()
    assert set(ref_sd) == set(got_sd)
    for k in ref_sd:
        assert got_sd[k].dtype == torch.float32, k
        assert torch.equal(ref_sd[k], got_sd[k]), f"{name}: {k} differs after reload"
    cfg = loaded.config
    if spec["arch"] == "moe":
        assert cfg.moe_layer_end_index == spec["cfg"]["moe_layer_end_index"]
    head_dim = spec["cfg"].get("head_dim", spec["cfg"]["hidden_size"] // spec["cfg"]["num_attention_heads"])
    assert loaded.model.layers[0].self_attn.head_dim == head_dim
    assert cfg.rope_parameters["rope_theta"] == spec["cfg"]["rope_theta"]

    vocab = spec["cfg"]["vocab_size"]
    (out_dir / "golden" / "sequences.json").write_text(json.dumps({"sequences": sequences}) + "\n")

    moe_layers = moe_layer_indices(cfg) if spec["arch"] == "moe" else []
    if spec["arch"] == "moe":
        actual = [i for i, l in enumerate(loaded.model.layers) if hasattr(l.mlp, "gate") and hasattr(l.mlp, "experts")]
        assert actual == moe_layers, (actual, moe_layers)

    stats = dict(min_gap=float("inf"), changed=0, routed=0)
    for i, ids in enumerate(sequences):
        rec = RoutingRecorder(loaded) if moe_layers else None
        logits = logits_of(loaded, ids)
        if rec:
            rec.close()
        ref_logits = logits_of(model, ids)
        diff = (logits - ref_logits).abs().max().item()
        assert diff <= 1e-5, f"{name}: reload changes logits by {diff}"
        assert logits.shape == (len(ids), vocab)
        np.save(out_dir / "golden" / f"logits_{i}.npy", logits.numpy().astype(np.float32))
        if rec:
            layers = {}
            for layer in moe_layers:
                r = rec.records[layer]
                stats["min_gap"] = min(stats["min_gap"], r["gap"])
                stats["changed"] += r["changed"]
                stats["routed"] += len(ids)
                layers[str(layer)] = {"experts": r["experts"], "weights": r["weights"]}
            (out_dir / "golden" / f"routing_{i}.json").write_text(
                json.dumps({"layers": layers}) + "\n")

    last = np.load(out_dir / "golden" / f"logits_{len(sequences) - 1}.npy")
    assert last.std() > 0.3 and np.abs(last).max() > 1.0, "logits too flat"
    assert np.isfinite(last).all()
    if moe_layers:
        assert stats["min_gap"] > MIN_ROUTING_GAP, f"{name}: near-tie in routing ({stats['min_gap']})"
        if spec.get("require_bias_changes_selection"):
            assert stats["changed"] > 0, f"{name}: correction bias never changes the selection"

    expected = {
        "seed": seed,
        "head_dim": head_dim,
        "moe_layers": moe_layers,
        "dense_layers": [i for i in range(spec["cfg"]["num_hidden_layers"]) if i not in moe_layers],
        "shared_intermediate_size": (
            spec["cfg"]["moe_intermediate_size"] * spec["cfg"]["moe_num_shared_experts"]
            if spec["arch"] == "moe" else 0
        ),
        "tensor_count": len(written),
        "tensor_dtypes": dict(sorted(
            (d, sum(1 for t in written.values() if str(t.dtype) == f"torch.{d}"))
            for d in ("float32", "bfloat16", "float16")
            if any(str(t.dtype) == f"torch.{d}" for t in written.values())
        )),
        "has_lm_head_weight": "lm_head.weight" in written,
        "has_lm_head_bias": "lm_head.bias" in written,
        "logits_atol": 1e-5,
    }
    if moe_layers:
        expected["router_min_topk_gap"] = round(stats["min_gap"], 6)
        expected["tokens_where_correction_bias_changes_selection"] = stats["changed"]
        expected["routed_token_layer_pairs"] = stats["routed"]
    (out_dir / "golden" / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    print(f"{name}: {len(written)} tensors, {size / 1024:.0f} KiB, moe layers {moe_layers}, "
          f"min top-k gap {stats['min_gap']:.4g}, bias-changed selections "
          f"{stats['changed']}/{stats['routed']}, last logits std {last.std():.3f}")


def check_bias_placement(spec, tensors):
    biases = {k for k in tensors if k.endswith(".bias")}
    if not spec["cfg"]["use_bias"]:
        assert not biases, biases
        return
    for k in biases:
        assert ".mlp.experts." not in k and ".mlp.gate." not in k, k
    for k in tensors:
        if k.endswith(".weight") and ("_proj." in k) and ".mlp.experts." not in k:
            assert k[: -len("weight")] + "bias" in biases, f"missing bias for {k}"
        if ".mlp.experts." in k or k.endswith("mlp.gate.weight"):
            assert k[: -len("weight")] + "bias" not in biases, k
    # transformers gives lm_head a bias only in the MoE model.
    assert ("lm_head.bias" in biases) == (spec["arch"] == "moe"), biases


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", help="fixture names to regenerate")
    args = ap.parse_args()
    names = [s["name"] for s in FIXTURES]
    for n in args.only or []:
        if n not in names:
            ap.error(f"unknown fixture {n!r}; known: {', '.join(names)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in FIXTURES:
        if args.only and spec["name"] not in args.only:
            continue
        make_fixture(spec, args.out)


if __name__ == "__main__":
    main()
