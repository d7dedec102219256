#!/usr/bin/env python3
"""Writes the fuzz seed corpora, Tests/Fuzz/corpus/TARGET/, from the committed fixtures.

    python3 tools/make_fuzz_corpus.py [--moepack .build/debug/moepack]

Safetensors seeds are small: real headers over truncated data, and a few real tensors
repacked into a consistent file. The bundle seeds are converted from the smallest fixture
checkpoints with `moepack convert` (skipped, keeping the committed ones, without --moepack).
Standard library only; the output is deterministic.
"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests/Fixtures")
TINY = os.path.join(ROOT, "Sources/moepack/Resources/tiny-moe")
CORPUS = os.path.join(ROOT, "Tests/Fuzz/corpus")
CHECKPOINTS = ["moe_basic", "moe_shared2_bias", "moe_noshared_interval2", "moe_sharded", "dense"]


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def safetensors_header(blob):
    n = struct.unpack("<Q", blob[:8])[0]
    return n, json.loads(blob[8:8 + n])


def repack(blob, max_data=2048):
    """A valid file with the first tensors (by offset) whose data fit in max_data bytes."""
    n, header = safetensors_header(blob)
    data = blob[8 + n:]
    entries = sorted(((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0])
    out, chunks, used = {}, [], 0
    if "__metadata__" in header:
        out["__metadata__"] = header["__metadata__"]
    for key, value in entries:
        begin, end = value["data_offsets"]
        if used + end - begin > max_data:
            continue
        out[key] = dict(value, data_offsets=[used, used + end - begin])
        chunks.append(data[begin:end])
        used += end - begin
    text = json.dumps(out, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def safetensors_seeds():
    files = [(c, os.path.join(FIXTURES, "checkpoints", c, f)) for c in CHECKPOINTS
             for f in sorted(os.listdir(os.path.join(FIXTURES, "checkpoints", c))) if f.endswith(".safetensors")]
    files.append(("tiny-moe", os.path.join(TINY, "model.safetensors")))
    for i, (name, path) in enumerate(files):
        blob = read(path)
        n, _ = safetensors_header(blob)
        suffix = f"-{i}" if name == "moe_sharded" else ""
        write("safetensors", f"{name}{suffix}-truncated.safetensors", blob[:8 + n + 256])
        write("safetensors", f"{name}{suffix}-repacked.safetensors", repack(blob))
    # dtypes the fixtures lack, and the smallest valid files
    bf16 = {"a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
            "b": {"dtype": "F16", "shape": [3], "data_offsets": [8, 14]},
            "e": {"dtype": "F32", "shape": [0], "data_offsets": [14, 14]}}
    text = json.dumps(bf16).encode()
    write("safetensors", "dtypes.safetensors", struct.pack("<Q", len(text)) + text + bytes(range(14)))
    write("safetensors", "empty-header.safetensors", struct.pack("<Q", 2) + b"{}")


def config_seeds():
    for c in CHECKPOINTS:
        write("config", f"{c}.json", read(os.path.join(FIXTURES, "checkpoints", c, "config.json")))
    tiny = json.loads(read(os.path.join(TINY, "config.json")))
    write("config", "tiny-moe.json", read(os.path.join(TINY, "config.json")))
    # The form transformers 5 writes: rope_parameters, no head_dim.
    v5 = {k: v for k, v in tiny.items() if k not in ("rope_theta", "head_dim")}
    v5["rope_parameters"] = {"rope_type": "default", "rope_theta": tiny.get("rope_theta", 500000)}
    write("config", "tiny-moe-v5.json", json.dumps(v5, indent=1))
    write("config", "model-type-only.json", json.dumps({"model_type": "ernie4_5", "num_hidden_layers": 2,
                                                        "hidden_size": 64, "intermediate_size": 128,
                                                        "num_attention_heads": 4, "num_key_value_heads": 2,
                                                        "head_dim": 16, "vocab_size": 100}))


def bundle_seeds(moepack):
    bundles = {}
    if moepack:
        with tempfile.TemporaryDirectory() as tmp:
            for checkpoint, profile in [("dense", "wint4"), ("moe_noshared_interval2", "wint4")]:
                out = os.path.join(tmp, f"{checkpoint}-{profile}.mpk")
                subprocess.run([moepack, "convert", os.path.join(FIXTURES, "checkpoints", checkpoint),
                                "--profile", profile, "--output", out], check=True, stdout=subprocess.DEVNULL)
                bundles[checkpoint] = read(out)
    else:
        for name in ("dense-wint4.mpk",):
            path = os.path.join(CORPUS, "bundle", name)
            if os.path.exists(path):
                bundles["dense"] = read(path)
    if "dense" in bundles:
        write("bundle", "dense-wint4.mpk", bundles["dense"])
    for checkpoint, blob in bundles.items():
        offset, length = struct.unpack("<QQ", blob[16:32])
        write("manifest", f"{checkpoint}-wint4.json", blob[offset:offset + length])


def tokenizer_seeds():
    for name in ["bpe_identity_bf", "bpe_raw_ws", "bpe_ws_suffix", "bpe_unused", "unigram_identity", "unigram_unused"]:
        write("tokenizer-model", f"{name}.model", read(os.path.join(FIXTURES, "tokenizer", f"{name}.model")))
    write("tokenizer-model", "tiny-moe.model", read(os.path.join(TINY, "tokenizer.model")))
    for name in ["tokenizer_config.json", "special_tokens_map.json"]:
        write("tokenizer-config", f"tiny-moe-{name}", read(os.path.join(TINY, name)))
    write("tokenizer-config", "ernie-tokenizer_config.json",
          read(os.path.join(FIXTURES, "tokenizer/ernie_config/tokenizer_config.json")))
    write("tokenizer-config", "added_tokens.json", json.dumps({"<extra_0>": 1024, "<extra_1>": 1025}))
    write("tokenizer-config", "token-objects.json", json.dumps({
        "bos_token": {"content": "<s>", "special": True}, "eos_token": None, "sep_token": "</s>",
        "additional_special_tokens": ["<mask>", {"content": "<|end_of_sentence|>"}],
        "added_tokens_decoder": {"7": {"content": "<cls>", "special": True}, "2000": {"content": "<new>"}}}))


def chat_seeds():
    cases = json.loads(read(os.path.join(FIXTURES, "tokenizer/chat_cases.json")))["chat"]
    seen = set()
    for i, case in enumerate(cases):
        records = "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in case["messages"])
        if records in seen:
            continue
        seen.add(records)
        write("chat-template", f"case-{i}.txt", records)
    write("chat-template", "custom-template.txt", "\x1d<s>\x1f</s>\x1euser\x1fhi\x1eassistant\x1fhello")


def request_seeds():
    tests = read(os.path.join(ROOT, "Tests/MoEServeTests/MalformedRequestTests.swift")).decode()
    for i, (path, body) in enumerate(re.findall(r'(?:path: "([^"]*)", )?body: json\(#"(.*?)"#\)', tests)):
        target = "chat-request" if "chat" in path or '"messages"' in body else "completion-request"
        write(target, f"malformed-{i:02d}.json", body)
    completions = [
        {"model": "m", "prompt": "It is a truth universally acknowledged", "max_tokens": 16, "temperature": 0},
        {"model": "m", "prompt": ["a", "b"], "n": 2, "stop": ["\n", "."], "seed": 7, "top_p": 0.9, "top_k": 40},
        {"model": "m", "prompt": [[1, 2, 3], [4, 5]], "echo": True, "max_tokens": 0, "logprobs": 2},
        {"model": "m", "prompt": [1, 2, 3], "stream": True, "stream_options": {"include_usage": True},
         "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.1, "ignore_eos": True,
         "best_of": 1, "logit_bias": {}, "suffix": None},
    ]
    chats = [
        {"model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
         "max_completion_tokens": 8},
        {"model": "m", "messages": [{"role": "developer", "content": "x"}, {"role": "user", "content": [
            {"type": "text", "text": "part one "}, {"type": "text", "text": "part two"}]},
            {"role": "assistant", "content": None}], "logprobs": True, "top_logprobs": 3, "n": 2,
         "tools": [], "response_format": {"type": "text"}, "stop": "\n"},
    ]
    for i, body in enumerate(completions):
        write("completion-request", f"valid-{i}.json", json.dumps(body))
    for i, body in enumerate(chats):
        write("chat-request", f"valid-{i}.json", json.dumps(body))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moepack", help="moepack binary used to convert the bundle seeds")
    args = parser.parse_args()
    keep = {}
    if not args.moepack:  # the bundle seeds cannot be remade without moepack: keep them
        for target in ("bundle", "manifest"):
            folder = os.path.join(CORPUS, target)
            if os.path.isdir(folder):
                keep[target] = {n: read(os.path.join(folder, n)) for n in os.listdir(folder)}
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    for target, files in keep.items():
        for name, data in files.items():
            write(target, name, data)
    safetensors_seeds()
    config_seeds()
    bundle_seeds(args.moepack)
    tokenizer_seeds()
    chat_seeds()
    request_seeds()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(CORPUS) for f in fs)
    count = sum(len(fs) for _, _, fs in os.walk(CORPUS))
    print(f"{count} seeds, {total // 1024} KiB in {os.path.relpath(CORPUS, ROOT)}")


if __name__ == "__main__":
    main()
