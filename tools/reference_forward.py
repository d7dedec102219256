#!/usr/bin/env python3
"""A plain NumPy ERNIE 4.5 forward pass over a hub-layout checkpoint directory.

It reads config.json (hub or transformers-5 form) and the safetensors files
directly (F32/F16/BF16, single file or sharded), runs the model in float64,
and compares against golden/logits_<i>.npy. It exists to check the fixtures
independently of transformers' loader and to spell out the arithmetic the
runtime must reproduce.

Run:  /work/venv/bin/python tools/reference_forward.py Tests/Fixtures/checkpoints/*
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np


def read_safetensors(path):
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[base + start : base + end]
        dt = info["dtype"]
        if dt == "F32":
            a = np.frombuffer(raw, dtype="<f4")
        elif dt == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: unsupported dtype {dt} for {name}")
        out[name] = a.reshape(info["shape"]).astype(np.float64)
    return out


def load_dir(d):
    d = Path(d)
    cfg = json.loads((d / "config.json").read_text())
    index = d / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    w = {}
    for f in files:
        w.update(read_safetensors(d / f))
    return cfg, w


def rms_norm(x, weight, eps):
    return weight * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))


def silu(x):
    return x / (1.0 + np.exp(-x))


def linear(x, w, name):
    y = x @ w[name + ".weight"].T
    b = w.get(name + ".bias")
    return y if b is None else y + b


def rope(x, positions, theta):
    # Interleaved RoPE: dims (2i, 2i+1) form a pair rotated by positions * theta^(-2i/d).
    d = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    ang = positions[:, None] * inv[None, :]  # [T, d/2]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x1, x2 = x[..., 0::2], x[..., 1::2]  # x: [T, heads, d]
    out = np.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x2 * cos + x1 * sin
    return out


def forward(cfg, w, ids):
    H = cfg["hidden_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    dense_default = 128 if cfg["model_type"] == "ernie4_5" else H // nh
    hd = cfg.get("head_dim") or dense_default
    theta = cfg["rope_theta"] if "rope_theta" in cfg else cfg["rope_parameters"]["rope_theta"]
    eps = cfg["rms_norm_eps"]
    L = cfg["num_hidden_layers"]
    moe = cfg["model_type"] == "ernie4_5_moe"
    if moe:
        end = cfg.get("moe_layer_end_index", -1)
        end = L - 1 if end == -1 else end
        start, interval = cfg["moe_layer_start_index"], cfg["moe_layer_interval"]
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    x = w["model.embed_tokens.weight"][ids]
    routing = {}
    for n in range(L):
        p = f"model.layers.{n}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = rope(linear(h, w, p + "self_attn.q_proj").reshape(T, nh, hd), pos, theta)
        k = rope(linear(h, w, p + "self_attn.k_proj").reshape(T, nkv, hd), pos, theta)
        v = linear(h, w, p + "self_attn.v_proj").reshape(T, nkv, hd)
        rep = nh // nkv  # query head j uses kv head j // rep
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = np.einsum("hqk,khd->qhd", s, v).reshape(T, nh * hd)
        x = x + linear(a, w, p + "self_attn.o_proj")

        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if moe and (n + 1) % interval == 0 and start <= n <= end:
            m = p + "mlp."
            logits = h @ w[m + "gate.weight"].T
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            scores = probs + w[m + "moe_statics.e_score_correction_bias"][0]
            kk = cfg["moe_k"]
            top = np.argsort(-scores, axis=-1, kind="stable")[:, :kk]
            wts = np.take_along_axis(probs, top, -1)
            wts /= np.maximum(wts.sum(-1, keepdims=True), cfg.get("moe_norm_min", 1e-12))
            routing[n] = top
            out = np.zeros_like(h)
            for t in range(T):
                for j in range(kk):
                    e = f"{m}experts.{top[t, j]}."
                    g = silu(h[t] @ w[e + "gate_proj.weight"].T) * (h[t] @ w[e + "up_proj.weight"].T)
                    out[t] += wts[t, j] * (g @ w[e + "down_proj.weight"].T)
            if cfg.get("moe_num_shared_experts", 0) > 0:
                sp = m + "shared_experts."
                out += linear(silu(linear(h, w, sp + "gate_proj")) * linear(h, w, sp + "up_proj"), w, sp + "down_proj")
        else:
            m = p + "mlp."
            out = linear(silu(linear(h, w, m + "gate_proj")) * linear(h, w, m + "up_proj"), w, m + "down_proj")
        x = x + out
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["lm_head.weight"] if not cfg.get("tie_word_embeddings", True) else w["model.embed_tokens.weight"]
    logits = x @ head.T
    if "lm_head.bias" in w:
        logits = logits + w["lm_head.bias"]
    return logits, routing


def check(d):
    cfg, w = load_dir(d)
    golden = Path(d) / "golden"
    seqs = json.loads((golden / "sequences.json").read_text())["sequences"]
    worst = 0.0
    for i, ids in enumerate(seqs):
        logits, routing = forward(cfg, w, ids)
        ref = np.load(golden / f"logits_{i}.npy").astype(np.float64)
        worst = max(worst, np.abs(logits - ref).max())
        rpath = golden / f"routing_{i}.json"
        if rpath.exists():
            ref_r = json.loads(rpath.read_text())["layers"]
            assert sorted(map(int, ref_r)) == sorted(routing), (d, sorted(routing))
            for layer, top in routing.items():
                assert top.tolist() == ref_r[str(layer)]["experts"], (d, i, layer)
    print(f"{Path(d).name}: max |logit - golden| = {worst:.2e}")
    return worst


def main():
    dirs = sys.argv[1:] or sorted(str(p) for p in (Path(__file__).resolve().parent.parent / "Tests/Fixtures/checkpoints").iterdir())
    bad = [d for d in dirs if check(d) > 1e-5]
    if bad:
        sys.exit(f"golden mismatch: {bad}")


if __name__ == "__main__":
    main()
