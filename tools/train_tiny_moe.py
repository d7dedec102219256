#!/usr/bin/env python3
"""Build moepack's built-in tiny ERNIE 4.5 MoE model and its golden references.

Steps (each can be re-run on its own, see --stage):
  corpus     Jane Austen's six novels from the Debian package r-cran-janeaustenr
             -> train / calibration / heldout splits (disjoint, paragraph-aligned)
  tokenizer  SentencePiece BPE (byte fallback) with ERNIE-style special pieces
  train      Ernie4_5_MoeForCausalLM trained with AdamW + light Switch balancing loss
  export     hub-style config.json + per-expert safetensors, verified by reloading
  golden     reference outputs (generate, perplexity, logits) from the saved directory
  generate   only the generate() outputs (generate.json), from the saved directory

Usage: /work/venv/bin/python tools/train_tiny_moe.py [--stage all] [--minutes 30]
"""
import argparse
import json
import math
import os
import random
import re
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "Sources/moepack/Resources/tiny-moe"
GOLD = REPO / "Tests/Fixtures/tiny-moe"
SEED = 1234

BOS_CHAT = "<|begin_of_sentence|>"
EOS_CHAT = "<|end_of_sentence|>"
CHAT_TEMPLATE = (
    "{%- if add_generation_prompt is not defined -%}{%- set add_generation_prompt = false -%}{%- endif -%}"
    "{{- '<|begin_of_sentence|>' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{- message['content'] + '\\n' -}}"
    "{%- elif message['role'] == 'user' -%}{{- 'User: ' + message['content'] + '\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- 'Assistant: ' + message['content'] + '<|end_of_sentence|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant: ' -}}{%- endif -%}"
)

MODEL_CFG = dict(
    vocab_size=3072,
    hidden_size=160,
    intermediate_size=384,  # dense MLP of layer 0
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=40,
    hidden_act="silu",
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    use_bias=False,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=3,
    moe_num_experts=16,
    moe_k=2,
    moe_num_shared_experts=1,
    moe_intermediate_size=128,
    moe_layer_start_index=1,
    moe_layer_end_index=3,
    moe_layer_interval=1,
    moe_norm_min=1e-12,
)
SEQ = 256
BATCH = 8
AUX_COEF = 0.005
BIAS_RATE = 2e-5  # aux-free style update of e_score_correction_bias per step


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ---------------------------------------------------------------- corpus

RDB = "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"


def locate_rdb(work: Path) -> Path:
    installed = Path("/") / RDB
    if installed.exists():
        return installed
    extracted = work / "deb" / RDB
    if not extracted.exists():
        (work / "deb").mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "r-cran-janeaustenr"], cwd=work, check=True)
        deb = sorted(work.glob("r-cran-janeaustenr_*.deb"))[-1]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "deb")], check=True)
    return extracted


def read_r_character_vectors(path: Path):
    """Reads the character vectors of an R lazy-load database (.rdb).

    Each object is a 4-byte big-endian length followed by a zlib stream holding
    an XDR serialization ('X\\n'). The janeaustenr objects are plain STRSXP vectors
    of CHARSXP lines, which is all this reader supports."""
    data = path.read_bytes()
    pos, out = 0, []
    while pos < len(data):
        d = zlib.decompressobj()
        blob = d.decompress(data[pos + 4:])
        pos = len(data) - len(d.unused_data)
        if blob[:2] != b"X\n":
            raise ValueError("not an XDR serialization")
        p = 2 + 12  # format version, R version, min R version
        (nlen,) = struct.unpack(">i", blob[p:p + 4])
        p += 4 + nlen  # native encoding name
        flags, n = struct.unpack(">ii", blob[p:p + 8])
        p += 8
        if flags & 0xFF != 16:
            raise ValueError("expected a character vector")
        lines = []
        for _ in range(n):
            f, ln = struct.unpack(">ii", blob[p:p + 8])
            p += 8
            if f & 0xFF != 9:
                raise ValueError("expected CHARSXP")
            if ln < 0:
                lines.append("")
                continue
            lines.append(blob[p:p + ln].decode("utf-8"))
            p += ln
        out.append(lines)
    return out


def paragraphs(lines):
    paras, cur = [], []
    for line in lines + [""]:
        if line.strip():
            cur.append(line.strip())
        elif cur:
            paras.append(re.sub(r"\s+", " ", " ".join(cur)).strip())
            cur = []
    return paras


def take_tail(paras, nbytes):
    """Splits off whole paragraphs from the end totalling about nbytes."""
    taken, size = [], 0
    while paras and size < nbytes:
        p = paras.pop()
        taken.insert(0, p)
        size += len(p.encode()) + 1
    return taken


def stage_corpus(work: Path):
    novels = read_r_character_vectors(locate_rdb(work))
    train, calib, held = [], [], []
    for lines in novels:
        paras = paragraphs(lines)
        held += take_tail(paras, 13_000)
        calib += take_tail(paras, 25_000)
        train.append(paras)
    (work / "train.txt").write_text("\n".join(p for n in train for p in n) + "\n")
    (work / "calibration.txt").write_text("\n".join(calib) + "\n")
    (work / "heldout.txt").write_text("\n".join(held) + "\n")
    json.dump([[p for p in n] for n in train], open(work / "train_novels.json", "w"))
    for n in ("train.txt", "calibration.txt", "heldout.txt"):
        log(n, (work / n).stat().st_size, "bytes")


# ---------------------------------------------------------------- tokenizer

def stage_tokenizer(work: Path):
    import sentencepiece as spm

    OUT.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        input=str(work / "train.txt"),
        model_prefix=str(work / "tokenizer"),
        model_type="bpe",
        vocab_size=MODEL_CFG["vocab_size"],
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_digits=True,
        max_sentence_length=32768,
        unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>", pad_piece="<pad>",
        user_defined_symbols=[BOS_CHAT, EOS_CHAT],
        num_threads=1,
        minloglevel=2,
    )
    (OUT / "tokenizer.model").write_bytes((work / "tokenizer.model").read_bytes())
    sp = load_sp()
    assert sp.piece_to_id(BOS_CHAT) == 4 and sp.piece_to_id(EOS_CHAT) == 5
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
               "additional_special_tokens": [BOS_CHAT, EOS_CHAT]}
    json.dump(special, open(OUT / "special_tokens_map.json", "w"), indent=2)
    added = {}
    for i in range(6):
        added[str(i)] = {"content": sp.id_to_piece(i), "lstrip": False, "rstrip": False,
                         "normalized": False, "single_word": False, "special": True}
    cfg = {
        "tokenizer_class": "LlamaTokenizer",
        "model_max_length": MODEL_CFG["max_position_embeddings"],
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,  # the model was trained with add_dummy_prefix=false
        "legacy": True,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": added,
        "chat_template": CHAT_TEMPLATE,
        **special,
    }
    json.dump(cfg, open(OUT / "tokenizer_config.json", "w"), indent=2)
    log("tokenizer vocab", sp.get_piece_size())


def load_sp():
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_file=str(OUT / "tokenizer.model"))


# ---------------------------------------------------------------- data

def render_chat(messages, add_generation_prompt=False):
    """Python mirror of CHAT_TEMPLATE (checked against the Jinja template in stage_golden)."""
    s = BOS_CHAT
    for m in messages:
        if m["role"] == "system":
            s += m["content"] + "\n"
        elif m["role"] == "user":
            s += "User: " + m["content"] + "\n"
        elif m["role"] == "assistant":
            s += "Assistant: " + m["content"] + EOS_CHAT
    return s + ("Assistant: " if add_generation_prompt else "")


SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def chat_samples(novels, rng):
    """Turns consecutive sentences of the training text into short chat exchanges."""
    systems = ["", "You are a helpful assistant.", "Answer in the style of Jane Austen."]
    out = []
    for paras in novels:
        for p in paras:
            s = SENT.split(p)
            if len(s) < 2 or len(s[0]) > 300:
                continue
            reply = " ".join(s[1:3])
            if len(reply) > 400:
                continue
            msgs = []
            sysmsg = rng.choice(systems)
            if sysmsg:
                msgs.append({"role": "system", "content": sysmsg})
            msgs += [{"role": "user", "content": s[0]}, {"role": "assistant", "content": reply}]
            out.append(render_chat(msgs))
    return out


def build_streams(work: Path, sp):
    novels = json.load(open(work / "train_novels.json"))
    nl = sp.piece_to_id("<0x0A>")
    stream = []
    for paras in novels:
        ids = [MODEL_CFG["bos_token_id"]]
        for i, p in enumerate(paras):
            if i:
                ids.append(nl)
            ids += sp.encode(p)
        ids.append(MODEL_CFG["eos_token_id"])
        stream += ids
    rng = random.Random(SEED)
    chats = [sp.encode(c) for c in chat_samples(novels, rng)]
    chat_stream = []
    for c in chats:
        chat_stream += c
    return np.array(stream, dtype=np.int64), np.array(chat_stream, dtype=np.int64)


def batches(stream, chat_stream, rng, chat_frac=0.1):
    while True:
        rows = []
        for _ in range(BATCH):
            src = chat_stream if rng.random() < chat_frac else stream
            start = rng.randrange(0, len(src) - SEQ)
            rows.append(src[start:start + SEQ])
        yield torch.from_numpy(np.stack(rows))


# ---------------------------------------------------------------- model

def make_config():
    from transformers import Ernie4_5_MoeConfig
    c = dict(MODEL_CFG)
    c["rope_parameters"] = {"rope_type": "default", "rope_theta": c.pop("rope_theta")}
    c.pop("head_dim")
    cfg = Ernie4_5_MoeConfig(**c)
    cfg.head_dim = MODEL_CFG["head_dim"]
    return cfg


def switch_loss(router_logits, k, n_exp):
    """Switch-style balancing loss averaged over MoE layers: E * sum_e f_e * P_e."""
    total = 0.0
    for lg in router_logits:
        probs = torch.softmax(lg.float(), dim=-1)
        sel = torch.topk(probs, k, dim=-1).indices
        f = torch.zeros(n_exp).scatter_add_(0, sel.reshape(-1), torch.ones(sel.numel())) / sel.numel()
        total = total + n_exp * torch.sum(f * probs.mean(0))
    return total / len(router_logits)


def moe_layers(model):
    return [l.mlp for l in model.model.layers if hasattr(l.mlp, "gate")]


def eval_loss(model, ids, ctx=SEQ):
    model.eval()
    nll, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids) - 1, ctx):
            w = ids[s:s + ctx]
            if len(w) < 2:
                break
            x = torch.tensor(w)[None]
            logits = model(input_ids=x).logits[0]
            nll += torch.nn.functional.cross_entropy(logits[:-1], x[0, 1:], reduction="sum").item()
            n += len(w) - 1
    model.train()
    return nll / n, n


def stage_train(work: Path, minutes: float, max_steps: int):
    from transformers import Ernie4_5_MoeForCausalLM

    torch.manual_seed(SEED)
    sp = load_sp()
    stream, chat_stream = build_streams(work, sp)
    log(f"train tokens {len(stream)} chat tokens {len(chat_stream)}")
    held = sp.encode((OUT / "heldout.txt").read_text()) if (OUT / "heldout.txt").exists() else \
        sp.encode((work / "heldout.txt").read_text())
    model = Ernie4_5_MoeForCausalLM(make_config()).float()
    model.train()
    nparams = sum(p.numel() for p in model.parameters())
    log(f"parameters {nparams}")
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and (p.ndim < 2 or "norm" in n)]
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2 and "norm" not in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
    rng = random.Random(SEED)
    gen = batches(stream, chat_stream, rng)
    n_exp, k = MODEL_CFG["moe_num_experts"], MODEL_CFG["moe_k"]
    warm = 100
    t0 = time.time()
    budget = minutes * 60
    step, total_steps = 0, max_steps
    ema = None
    while step < total_steps:
        lr = 3e-3 * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / total_steps))))
        for g in opt.param_groups:
            g["lr"] = lr
        x = next(gen)
        out = model(input_ids=x, labels=x, output_router_logits=True)
        aux = switch_loss(out.router_logits, k, n_exp)
        loss = out.loss + AUX_COEF * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        # aux-free bias nudge: experts under the mean load get a small boost
        with torch.no_grad():
            for mlp, lg in zip(moe_layers(model), out.router_logits):
                bias = mlp.gate.moe_statics.e_score_correction_bias
                probs = torch.softmax(lg.float(), -1) + bias.squeeze(0)
                sel = torch.topk(probs, k, -1).indices.reshape(-1)
                load = torch.bincount(sel, minlength=n_exp).float()
                bias += BIAS_RATE * torch.sign(load.mean() - load)[None]
        step += 1
        ema = out.loss.item() if ema is None else 0.98 * ema + 0.02 * out.loss.item()
        el = time.time() - t0
        if step in (20, 200):  # size the cosine schedule to the time budget
            rate = step / el
            fit = int(rate * budget)
            total_steps = min(max_steps, fit)
            log(f"{rate:.3f} steps/s -> {total_steps} steps in {minutes} min")
        if step % 50 == 0 or step == total_steps:
            log(f"step {step}/{total_steps} loss {out.loss.item():.4f} ema {ema:.4f} aux {aux.item():.4f} lr {lr:.2e} {el:.0f}s")
        if step % 500 == 0:
            hl, _ = eval_loss(model, held[:8192])
            log(f"heldout(8k tok) loss {hl:.4f}")
    torch.save({"model": model.state_dict(), "steps": step, "train_loss_ema": ema,
                "seconds": time.time() - t0}, work / "ckpt.pt")
    log("saved checkpoint")


# ---------------------------------------------------------------- export

def hub_config():
    c = dict(MODEL_CFG)
    c.update({
        "architectures": ["Ernie4_5_MoeForCausalLM"],
        "model_type": "ernie4_5_moe",
        "torch_dtype": "float32",
        "use_cache": True,
        "moe_gate": "topk",
        "moe_use_aux_free": True,
        "router_aux_loss_coef": AUX_COEF,
    })
    return c


def stage_export(work: Path):
    from safetensors.torch import save_file
    from transformers import Ernie4_5_MoeForCausalLM

    ck = torch.load(work / "ckpt.pt")
    model = Ernie4_5_MoeForCausalLM(make_config()).float()
    model.load_state_dict(ck["model"])
    model.eval()
    I = MODEL_CFG["moe_intermediate_size"]
    tensors = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to model.embed_tokens.weight
        m = re.match(r"(model\.layers\.\d+\.mlp)\.experts\.(gate_up_proj|down_proj)$", name)
        if m:
            for e in range(t.shape[0]):
                p = f"{m.group(1)}.experts.{e}"
                if m.group(2) == "gate_up_proj":
                    tensors[f"{p}.gate_proj.weight"] = t[e, :I].contiguous()
                    tensors[f"{p}.up_proj.weight"] = t[e, I:].contiguous()
                else:
                    tensors[f"{p}.down_proj.weight"] = t[e].contiguous()
            continue
        name = name.replace(".mlp.gate.moe_statics.", ".mlp.moe_statics.")
        tensors[name] = t.detach().float().contiguous()
    save_file(dict(sorted(tensors.items())), str(OUT / "model.safetensors"), metadata={"format": "pt"})
    json.dump(hub_config(), open(OUT / "config.json", "w"), indent=2)
    gen_cfg = {"bos_token_id": 1, "eos_token_id": [2, 5], "pad_token_id": 3, "do_sample": False}
    json.dump(gen_cfg, open(OUT / "generation_config.json", "w"), indent=2)
    # verify: reload from the written directory and compare logits
    re_model = Ernie4_5_MoeForCausalLM.from_pretrained(str(OUT), dtype=torch.float32).eval()
    x = torch.tensor([load_sp().encode((OUT / "heldout.txt").read_text()[:2000])[:64]])
    with torch.no_grad():
        a, b = model(input_ids=x).logits, re_model(input_ids=x).logits
    diff = (a - b).abs().max().item()
    sd_a, sd_b = model.state_dict(), re_model.state_dict()
    same = sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[n], sd_b[n]) for n in sd_a)
    log(f"reload max |logit diff| {diff}, all tensors identical: {same}")
    if diff != 0.0 or not same:
        raise SystemExit("reloaded model differs")
    for n in ("model.safetensors", "config.json", "tokenizer.model"):
        log(n, (OUT / n).stat().st_size, "bytes")


# ---------------------------------------------------------------- golden

def expert_usage(model, ids, ctx=SEQ, use_bias=True):
    n_exp, k = MODEL_CFG["moe_num_experts"], MODEL_CFG["moe_k"]
    layers = moe_layers(model)
    counts = [torch.zeros(n_exp) for _ in layers]
    with torch.no_grad():
        for s in range(0, len(ids), ctx):
            w = ids[s:s + ctx]
            if len(w) < 2:
                break
            out = model(input_ids=torch.tensor([w]), output_router_logits=True)
            for c, mlp, lg in zip(counts, layers, out.router_logits):
                probs = torch.softmax(lg.float(), -1)
                if use_bias:
                    probs = probs + mlp.gate.moe_statics.e_score_correction_bias.squeeze(0)
                c += torch.bincount(torch.topk(probs, k, -1).indices.reshape(-1), minlength=n_exp).float()
    res = []
    for li, c in zip(range(MODEL_CFG["moe_layer_start_index"], 99), counts):
        frac = (c / c.sum()).tolist()
        top_half = sum(sorted(frac, reverse=True)[: n_exp // 2])
        res.append({"layer": li, "fraction": [round(f, 5) for f in frac], "busier_half_share": round(top_half, 4),
                    "min_fraction": round(min(frac), 5), "max_fraction": round(max(frac), 5)})
    return res


def routing_of(model, ids):
    """Selected experts per token and MoE layer for one sequence, plus the smallest gap between the
    k-th and (k+1)-th biased score (a small gap means float32 rounding could flip a selection)."""
    k = MODEL_CFG["moe_k"]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_router_logits=True)
    layers, gap = {}, float("inf")
    for li, mlp, lg in zip(range(MODEL_CFG["moe_layer_start_index"], 99), moe_layers(model), out.router_logits):
        scores = torch.softmax(lg.float(), -1) + mlp.gate.moe_statics.e_score_correction_bias.squeeze(0)
        top = torch.topk(scores, k + 1, -1)
        gap = min(gap, (top.values[:, k - 1] - top.values[:, k]).min().item())
        layers[str(li)] = top.indices[:, :k].tolist()
    return {"experts": layers, "min_topk_gap": gap,
            "note": "experts[layer][t] = top-k expert ids (descending score) of softmax(router logits) + "
                    "e_score_correction_bias for token t of `ids`"}


def perplexity(model, ids, ctx):
    nll, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids), ctx):
            w = ids[s:s + ctx]
            if len(w) < 2:
                break
            x = torch.tensor([w])
            logits = model(input_ids=x).logits[0].double()
            nll += torch.nn.functional.cross_entropy(logits[:-1], x[0, 1:], reduction="sum").item()
            n += len(w) - 1
    return nll, n


def tokenizers_as_transformers_loads_them():
    """AutoTokenizer of the model as shipped (add_bos_token false) and of a copy whose
    tokenizer_config.json says add_bos_token true: the prompt ids transformers itself runs."""
    import shutil
    import tempfile
    from transformers import AutoTokenizer
    variant = Path(tempfile.mkdtemp()) / "tiny-moe-add-bos"
    shutil.copytree(OUT, variant)
    cfg = json.load(open(variant / "tokenizer_config.json"))
    cfg["add_bos_token"] = True
    json.dump(cfg, open(variant / "tokenizer_config.json", "w"), indent=2)
    return {False: AutoTokenizer.from_pretrained(str(OUT)), True: AutoTokenizer.from_pretrained(str(variant))}


def golden_generate(model, sp, msgs):
    """Greedy generate() outputs, plain and with transformers' repetition_penalty, from prompts
    tokenized as transformers tokenizes them: with the tokenizer as shipped (add_bos_token false,
    no BOS) and with add_bos_token true (BOS first). Chat prompts carry their own begin marker."""
    tokenizers = tokenizers_as_transformers_loads_them()
    prompts = [
        {"text": "It is a truth universally acknowledged, that", "tokenizer_add_bos_token": False},
        {"text": "Anne Elliot walked into the garden and", "tokenizer_add_bos_token": False},
        {"text": "It is a truth universally acknowledged, that", "tokenizer_add_bos_token": True},
        {"text": "Anne Elliot walked into the garden and", "tokenizer_add_bos_token": True},
        {"text": render_chat(msgs, True), "tokenizer_add_bos_token": False, "messages": msgs},
        {"text": "It is a truth universally acknowledged, that", "tokenizer_add_bos_token": True, "repetition_penalty": 1.3},
        {"text": "Anne Elliot walked into the garden and", "tokenizer_add_bos_token": True, "repetition_penalty": 1.15},
        {"text": render_chat(msgs, True), "tokenizer_add_bos_token": False, "messages": msgs, "repetition_penalty": 0.8},
    ]
    gens = []
    for p in prompts:
        if "messages" in p:  # apply_chat_template tokenizes without adding special tokens
            ids = sp.encode(p["text"])
        else:
            ids = tokenizers[p["tokenizer_add_bos_token"]](p["text"]).input_ids
            assert ids == ([MODEL_CFG["bos_token_id"]] if p["tokenizer_add_bos_token"] else []) + sp.encode(p["text"])
        p["add_bos"] = bool(ids) and ids[0] == MODEL_CFG["bos_token_id"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=32, do_sample=False, repetition_penalty=p.get("repetition_penalty", 1.0),
                                 return_dict_in_generate=True, output_logits=True)
        new = out.sequences[0, len(ids):].tolist()
        # log-softmax of the model's raw logits at each step (before the repetition penalty)
        logprobs = [torch.log_softmax(step[0].double(), dim=-1) for step in out.logits]
        top = [torch.topk(lp, 5) for lp in logprobs]
        with torch.no_grad():
            prompt_lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
        gens.append({**p, "prompt_ids": ids, "output_ids": new, "output_text": sp.decode(new),
                     "prompt_logprobs": [prompt_lp[i, ids[i + 1]].item() for i in range(len(ids) - 1)],
                     "prompt_argmax_ids": prompt_lp[:-1].argmax(dim=-1).tolist(),
                     "output_logprobs": [lp[t].item() for lp, t in zip(logprobs, new)],
                     "top5_ids": [t.indices.tolist() for t in top],
                     "top5_logprobs": [t.values.tolist() for t in top]})
        log("generate", repr(p["text"][-40:]), p.get("repetition_penalty", ""), "->", repr(sp.decode(new)))
    json.dump({
        "description": "transformers generate() (eager attention), greedy (do_sample=False), max_new_tokens=32, float32, "
                       "stops early on eos ids from generation_config.json [2 '</s>', 5 '<|end_of_sentence|>']. "
                       "prompt_ids: the text tokenized by transformers' AutoTokenizer of the model as shipped (add_bos_token "
                       "false: no BOS) or, where tokenizer_add_bos_token is true, of a copy whose tokenizer_config.json "
                       "says add_bos_token true (BOS id 1 first); chat prompts as apply_chat_template tokenizes them "
                       "(their own begin marker, no BOS). add_bos: whether prompt_ids start with BOS. output_ids excludes the prompt. "
                       "Cases with repetition_penalty pass it to generate() (it covers prompt and generated ids). "
                       "output_logprobs: log_softmax (float64) of generate()'s raw logits (output_logits, before the "
                       "penalty) at each generated token; top5_ids/top5_logprobs: the five largest at each step. "
                       "prompt_logprobs[i]: log_softmax of a forward pass over prompt_ids at position i, taken at "
                       "prompt_ids[i + 1]; prompt_argmax_ids[i]: the most likely token there.",
        "eos_token_ids": [2, 5],
        "cases": gens,
    }, open(GOLD / "generate.json", "w"), indent=1)


def stage_generate():
    """Only generate.json, from the saved directory (no training work directory needed)."""
    from transformers import Ernie4_5_MoeForCausalLM
    model = Ernie4_5_MoeForCausalLM.from_pretrained(str(OUT), dtype=torch.float32,
                                                    attn_implementation="eager").eval()
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Who is Mr. Darcy?"}]
    golden_generate(model, load_sp(), msgs)


def stage_golden(work: Path):
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from transformers import Ernie4_5_MoeForCausalLM

    GOLD.mkdir(parents=True, exist_ok=True)
    sp = load_sp()
    model = Ernie4_5_MoeForCausalLM.from_pretrained(str(OUT), dtype=torch.float32,
                                                    attn_implementation="eager").eval()
    ck = torch.load(work / "ckpt.pt")

    # chat template: the Jinja string must agree with render_chat
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Who is Mr. Darcy?"}]
    tpl = json.load(open(OUT / "tokenizer_config.json"))["chat_template"]
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders
    jinja = env.from_string(tpl).render(messages=msgs, add_generation_prompt=True)
    assert jinja == render_chat(msgs, True), (jinja, render_chat(msgs, True))

    golden_generate(model, sp, msgs)

    text = (OUT / "heldout.txt").read_text()
    ids = sp.encode(text)
    ppl = {}
    for ctx in (256, 128):
        nll, n = perplexity(model, ids, ctx)
        ppl[str(ctx)] = {"total_nll": nll, "predicted_tokens": n, "perplexity": math.exp(nll / n)}
        log(f"heldout ctx {ctx}: ppl {math.exp(nll / n):.4f} over {n} predictions")
    json.dump({
        "file": "Sources/moepack/Resources/tiny-moe/heldout.txt",
        "method": "ids = sentencepiece encode of the whole file text (UTF-8, trailing newline included, no BOS); "
                  "split into consecutive non-overlapping windows of `context` tokens (last partial window kept "
                  "if it has >= 2 tokens); each window evaluated independently from position 0; NLL summed over "
                  "positions 1..len-1 of each window (natural log, computed from float32 logits in float64); "
                  "perplexity = exp(total_nll / predicted_tokens).",
        "total_tokens": len(ids),
        "by_context": ppl,
    }, open(GOLD / "perplexity.json", "w"), indent=1)

    seq = ids[1000:1040]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([seq])).logits[0].float().numpy()
    np.save(GOLD / "logits_heldout.npy", logits.astype(np.float32))
    routing = routing_of(model, seq)
    calib_ids = sp.encode((OUT / "calibration.txt").read_text())
    usage = expert_usage(model, calib_ids)
    usage_raw = expert_usage(model, calib_ids, use_bias=False)
    for u, r, mlp in zip(usage, usage_raw, moe_layers(model)):
        bias = mlp.gate.moe_statics.e_score_correction_bias
        u["busier_half_share_without_bias"] = r["busier_half_share"]
        u["min_fraction_without_bias"] = r["min_fraction"]
        u["e_score_correction_bias_range"] = [round(bias.min().item(), 5), round(bias.max().item(), 5)]
    for u in usage:
        log(f"layer {u['layer']}: busier half {u['busier_half_share']:.3f} min {u['min_fraction']:.4f} max {u['max_fraction']:.4f}")
    train_loss, _ = eval_loss(model, build_streams(work, sp)[0][:65536].tolist())
    held_loss, _ = eval_loss(model, ids)
    json.dump({
        "logits_file": "logits_heldout.npy",
        "logits_shape": list(logits.shape),
        "ids": seq,
        "ids_source": "heldout.txt token ids [1000:1040] (same encoding as perplexity.json), evaluated from position 0, no BOS",
        "routing_heldout": routing,
        "expert_usage_calibration": usage,
        "expert_usage_note": "fraction = share of top-k selections per expert on calibration.txt (256-token windows, "
                             "selection on softmax + e_score_correction_bias as in transformers); *_without_bias = "
                             "selection on the softmax alone",
        "train_loss_first_64k_tokens": train_loss,
        "heldout_loss": held_loss,
        "train_loss_ema_end": ck["train_loss_ema"],
        "steps": ck["steps"],
        "train_seconds": ck["seconds"],
    }, open(GOLD / "reference.json", "w"), indent=1)
    log(f"train loss {train_loss:.4f} heldout loss {held_loss:.4f}")


MIT_NOTICE = """Copyright 2016-2017 Julia Silge (janeaustenr), packaged for Debian by Andreas Tille (2021).

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE."""


def stage_readme(work: Path):
    ref = json.load(open(GOLD / "reference.json"))
    ppl = json.load(open(GOLD / "perplexity.json"))
    cfg = json.load(open(OUT / "config.json"))
    from safetensors import safe_open
    with safe_open(str(OUT / "model.safetensors"), "pt") as f:
        nparams = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    usage = "\n".join(
        f"| {u['layer']} | {u['busier_half_share']:.3f} | {u['min_fraction']:.4f} | {u['max_fraction']:.4f} | "
        f"{u['busier_half_share_without_bias']:.3f} | {u['min_fraction_without_bias']:.4f} |"
        for u in ref["expert_usage_calibration"])
    cfg_rows = "\n".join(f"| `{k}` | `{json.dumps(v)}` |" for k, v in cfg.items())
    sizes = "\n".join(f"| {p.name} | {p.stat().st_size:,} |" for p in sorted(OUT.iterdir()) if p.name != "README.md")
    text = f"""# tiny-moe: moepack's built-in ERNIE 4.5 MoE

A small but real `Ernie4_5_MoeForCausalLM` checkpoint in the Hugging Face hub layout, trained from
scratch on Jane Austen's novels. It is moepack's default model for tests, demos and the CLI when no
other model is given. It writes Austen-flavoured English and is not useful as an assistant.
Everything here is produced by `tools/train_tiny_moe.py` (seed {SEED}); see `tools/README.md`.

## Corpus and licence

- Text: the six completed novels of Jane Austen (Sense and Sensibility, Pride and Prejudice,
  Mansfield Park, Emma, Northanger Abbey, Persuasion). The novels are in the public domain.
- Source: Debian package `r-cran-janeaustenr` (version 1.0.0-1, upstream CRAN package `janeaustenr`),
  file `/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb`, read without R by the script.
  Package licence: MIT (notice below).
- Cleaning: hard-wrapped lines are joined into one paragraph per line, runs of whitespace become one
  space; nothing else is changed (the text is plain ASCII).
- Splits, paragraph-aligned and disjoint: from the end of each novel about 13 KB go to `heldout.txt`
  and the about 25 KB before them to `calibration.txt`; the rest (3.77 MB) is the training text,
  which is not stored here (the script regenerates it).

## Tokenizer

SentencePiece BPE, {MODEL_CFG["vocab_size"]} pieces, trained on the training split with `byte_fallback=true`,
`normalization_rule_name=identity` (no NFKC, text is used as is), `add_dummy_prefix=false`,
`remove_extra_whitespaces=false`, `split_digits=true`, character coverage 1.0.
Ids: 0 `<unk>`, 1 `<s>` (bos), 2 `</s>` (eos), 3 `<pad>`; user-defined pieces 4 `<|begin_of_sentence|>`
and 5 `<|end_of_sentence|>` (matched as whole pieces inside text); 6..261 the byte pieces `<0x00>`..`<0xFF>`
(a newline encodes as `<0x0A>`).

Chat format (the `chat_template` in `tokenizer_config.json`):
`<|begin_of_sentence|>{{system}}\\nUser: {{msg}}\\nAssistant: {{reply}}<|end_of_sentence|>`, generation prompt
`Assistant: `. The system line is omitted when there is no system message. Encode the rendered text
without adding `<s>`. Plain text prompts are encoded as `<s>` + encode(text). Generation stops on
`</s>` or `<|end_of_sentence|>` (`generation_config.json`).

## Model

{nparams:,} parameters, float32, tied input/output embeddings, layer 0 dense, layers 1-3 MoE
(16 routed experts, top-2, one shared expert). Experts are stored per expert
(`model.layers.N.mlp.experts.E.{{gate,up,down}}_proj.weight`), router as `model.layers.N.mlp.gate.weight`
and `model.layers.N.mlp.moe_statics.e_score_correction_bias` (added to the softmax scores for
top-k selection only, as in the reference implementation).

| config.json key | value |
| --- | --- |
{cfg_rows}

## Training

AdamW (lr 3e-3, betas 0.9/0.95, weight decay 0.1 on matrices, eps 1e-8), 100 warm-up steps, cosine
decay to 10 %, gradient clipping 1.0, batches of {BATCH} random windows of {SEQ} tokens, {ref["steps"]} steps
({ref["train_seconds"] / 60:.1f} min on one CPU thread). 90 % of windows come from the novels (each novel
is `<s>` + paragraphs joined by newlines + `</s>`), 10 % from short chat exchanges made from
consecutive sentences of the training text in the chat format above. Load balancing: Switch-style
auxiliary loss (E * sum f_e P_e per MoE layer, averaged) with coefficient {AUX_COEF}, and an aux-free
style update of `e_score_correction_bias` by {BIAS_RATE} * sign(mean load - expert load) per step.

| measure | value |
| --- | --- |
| train loss (first 64k training tokens, 256-token windows) | {ref["train_loss_first_64k_tokens"]:.4f} |
| held-out loss (`heldout.txt`, 256-token windows) | {ref["heldout_loss"]:.4f} |
| held-out perplexity, context 256 | {ppl["by_context"]["256"]["perplexity"]:.3f} |
| held-out perplexity, context 128 | {ppl["by_context"]["128"]["perplexity"]:.3f} |
| held-out tokens | {ppl["total_tokens"]:,} |

Expert usage on `calibration.txt` (share of top-2 selections; 16 experts, uniform = 0.0625). The
correction bias, nudged towards balance during training, flattens the selection; the last two
columns show the selection on the router softmax alone (the bias barely changes the loss):

| layer | busier half share | min expert | max expert | busier half, no bias | min expert, no bias |
| --- | --- | --- | --- | --- | --- |
{usage}

## Files

| file | bytes |
| --- | --- |
{sizes}

## Licence notice for the text source (janeaustenr)

{MIT_NOTICE}
"""
    (OUT / "README.md").write_text(text)
    log("README written")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", default="all", choices=["all", "corpus", "tokenizer", "train", "export", "golden", "generate", "readme"])
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/moepack-tiny"))
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--max-steps", type=int, default=100000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    random.seed(SEED)
    np.random.seed(SEED)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    st = a.stage
    if st in ("all", "corpus"):
        stage_corpus(work)
        for n in ("calibration.txt", "heldout.txt"):
            (OUT / n).write_text((work / n).read_text())
    if st in ("all", "tokenizer"):
        stage_tokenizer(work)
    if st in ("all", "train"):
        stage_train(work, a.minutes, a.max_steps)
    if st in ("all", "export"):
        stage_export(work)
    if st in ("all", "golden"):
        stage_golden(work)
    if st == "generate":
        stage_generate()
    if st in ("all", "golden", "readme"):
        stage_readme(work)


if __name__ == "__main__":
    main()
