#!/usr/bin/env python3
"""Trains small Qwen3-MoE and Mixtral models on the built-in ERNIE model's corpus and tokenizer,
so quantization and pruning quality can be compared across families on trained weights (the
committed family fixtures are random). Same shapes as the built-in model where the families
allow (hidden 160, 4 layers, 4 heads / 2 kv of 40, 16 experts of 128, top-2, vocab 3072, tied
embeddings); same data, batches and schedule as tools/train_tiny_moe.py, with each family's own
router balancing loss from transformers. The models are not committed: this writes them to
--out, with the built-in model's tokenizer files and text splits, ready for moepack.

    /work/venv-ref/bin/python tools/train_family_models.py --family qwen3_moe --minutes 12 --out /tmp/tiny-qwen3
    /work/venv-ref/bin/python tools/train_family_models.py --family mixtral --minutes 12 --out /tmp/tiny-mixtral

Qwen3-MoE keeps a dense first layer (`mlp_only_layers: [0]`, width 384) like the built-in
model and renormalises its top-k (`norm_topk_prob`); Mixtral is MoE in every layer.
"""
import argparse
import math
import random
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_tiny_moe as T  # noqa: E402  (the corpus, tokenizer, batches and schedule)

SHARED = dict(vocab_size=3072, hidden_size=160, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
              head_dim=40, hidden_act="silu", max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
              tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=3,
              num_experts_per_tok=2, output_router_logits=True, router_aux_loss_coef=0.01)


def make(family):
    if family == "qwen3_moe":
        from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
        cfg = Qwen3MoeConfig(**SHARED, intermediate_size=384, moe_intermediate_size=128, num_experts=16,
                             norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[0], attention_bias=False)
        return Qwen3MoeForCausalLM(cfg)
    from transformers import MixtralConfig, MixtralForCausalLM
    cfg = MixtralConfig(**SHARED, intermediate_size=128, num_local_experts=16, sliding_window=None)
    return MixtralForCausalLM(cfg)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=["qwen3_moe", "mixtral"], required=True)
    ap.add_argument("--minutes", type=float, default=12)
    ap.add_argument("--max-steps", type=int, default=20000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/moepack-train-work", help="corpus work folder (made if missing)")
    args = ap.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "train_novels.json").exists():
        T.stage_corpus(work)
    torch.manual_seed(T.SEED)
    sp = T.load_sp()
    stream, chat_stream = T.build_streams(work, sp)
    held = sp.encode((T.OUT / "heldout.txt").read_text())
    model = make(args.family).float()
    model.train()
    T.log(f"{args.family}: {sum(p.numel() for p in model.parameters())} parameters, {len(stream)} train tokens")
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "norm" in n]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
    gen = T.batches(stream, chat_stream, random.Random(T.SEED))
    t0, budget, step, total = time.time(), args.minutes * 60, 0, args.max_steps
    while step < total:
        lr = 3e-3 * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total))))
        for g in opt.param_groups:
            g["lr"] = lr
        x = next(gen)
        loss = model(input_ids=x, labels=x).loss  # includes the family's router balancing loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step in (20, 200):
            total = min(args.max_steps, int(step / (time.time() - t0) * budget))
            T.log(f"{step / (time.time() - t0):.3f} steps/s -> {total} steps")
        if step % 100 == 0 or step == total:
            T.log(f"step {step}/{total} loss {loss.item():.4f} {time.time() - t0:.0f}s")
    model.eval()
    model.config.output_router_logits = False
    hl, _ = T.eval_loss(model, held[:8192])
    T.log(f"heldout (8k tokens) loss {hl:.4f}, perplexity {math.exp(hl):.2f}")
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "calibration.txt", "heldout.txt"):
        shutil.copy(T.OUT / name, out / name)
    T.log(f"wrote {out}")


if __name__ == "__main__":
    main()
