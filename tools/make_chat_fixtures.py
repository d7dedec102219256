#!/usr/bin/env python3
"""Renders real chat templates with transformers' `apply_chat_template` for the Swift Jinja tests.

Run with the reference venv (transformers and jinja2; no PyTorch needed for this script):
    /work/venv-ref/bin/python tools/make_chat_fixtures.py
Versions used for the committed files: transformers 5.25.0, jinja2 3.1.6.

Reads Tests/Fixtures/tokenizer_chat/templates/*.jinja and writes
Tests/Fixtures/tokenizer_chat/cases.json: a list of
  {"template": file name, "special_tokens": {"bos_token": ...}, "messages": [...],
   "add_generation_prompt": bool, "variables": {"enable_thinking": ...},
   "rendered": text}            or, when the template refuses the conversation,
   "error": the message of its raise_exception
rendered by `apply_chat_template(messages, chat_template=..., tokenize=False,
add_generation_prompt=..., **variables)` on a tokenizer carrying those special tokens.

Where the templates come from (each file is the template text exactly, one trailing newline
removed as jinja2 does anyway):
  qwen3.jinja    Qwen3's template (Qwen/Qwen3-0.6B tokenizer_config.json "chat_template"), as kept
                 in llama.cpp's models/templates/Qwen-Qwen3-0.6B.jinja (read from the public fork
                 github.com/ye-NX/llama.cpp at b354d7c9ecb76c97c07098617cdebbdfffa2583e). The Qwen3
                 MoE models (Qwen3-30B-A3B, Qwen3-235B-A22B) ship the same template text at release.
  mixtral.jinja  mistralai/Mixtral-8x7B-Instruct-v0.1's tokenizer_config.json "chat_template" (the
                 2024 revision with the optional system message), as quoted verbatim in public code
                 that hard-codes it (found with a code search for its raise_exception message).
  ernie45.jinja  baidu/ERNIE-4.5-0.3B-PT and ERNIE-4.5-21B-A3B-PT tokenizer_config.json
                 "chat_template" (identical in both; the same text tools/make_tokenizer_fixtures.py
                 carries as ERNIE_CHAT_TEMPLATE).
  ernie45_thinking_style.jinja
                 NOT a hub file: ERNIE's template with the generation prompt ending in "<think>\\n",
                 the shape ERNIE-4.5-21B-A3B-Thinking's prompt has (its real template was not
                 available here). It checks the thinking-prompt path, not that model's exact text.
"""
import json
import os

from transformers import PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "Tests", "Fixtures", "tokenizer_chat")
TOKENIZER = os.path.join(ROOT, "Tests", "Fixtures", "tokenizer_bpe", "qwen2_bpe", "tokenizer.json")

SPECIAL = {
    "qwen3.jinja": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "mixtral.jinja": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "ernie45.jinja": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>",
                      "cls_token": "<|begin_of_sentence|>", "sep_token": "<|end_of_sentence|>", "mask_token": "<mask:1>"},
    "ernie45_thinking_style.jinja": {"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<|begin_of_sentence|>",
                                     "sep_token": "<|end_of_sentence|>"},
}

U = lambda c: {"role": "user", "content": c}
A = lambda c: {"role": "assistant", "content": c}
S = lambda c: {"role": "system", "content": c}

COMMON = [
    [U("Hello!")],
    [S("You are a helpful assistant."), U("What is 2+2?")],
    [S("Be brief."), U("Hi"), A("Hello! How can I help?"), U("Tell me a joke.")],
    [U("Hi"), A("Hello."), U("Bye"), A("Goodbye.")],
    [U("Quotes ' \" and braces {{ not a tag }} {% neither %}\nnew line\ttab"), A("Ünïcödé 中文 🙂"), U("  spaces  ")],
    [U("")],
]

QWEN3_THINK = [
    [U("What is 1+1?"), A("<think>\nAdd one and one.\n</think>\n\n2"), U("And 2+2?")],
    [U("Solve x+1=3"), A("<think>\nSubtract 1.\n</think>\n\nx = 2")],
    [S("Think."), U("Q1"), A("<think>r1</think>a1"), U("Q2"), A("\n\n<think>\n\nr2\n\n</think>\n\n\na2")],
    [U("Q"), A("No thinking block here.")],
    [U("<tool_response>data</tool_response>")],
    [U("Q"), {"role": "tool", "content": "result 1"}, {"role": "tool", "content": "result 2"}, U("thanks")],
]

MIXTRAL_BAD = [
    [U("one"), U("two")],
    [A("assistant first")],
    [U("hi"), {"role": "tool", "content": "x"}],
]


def cases():
    out = []
    for name in sorted(SPECIAL):
        convs = COMMON + (QWEN3_THINK if name == "qwen3.jinja" else []) + (MIXTRAL_BAD if name == "mixtral.jinja" else [])
        variants = [{}]
        if name == "qwen3.jinja":
            variants = [{}, {"enable_thinking": True}, {"enable_thinking": False}]
        for messages in convs:
            for gen in (True, False):
                for variables in variants:
                    out.append({"template": name, "special_tokens": SPECIAL[name], "messages": messages,
                                "add_generation_prompt": gen, "variables": variables})
    return out


def main():
    rendered = []
    for case in cases():
        with open(os.path.join(DIR, "templates", case["template"]), encoding="utf-8") as f:
            template = f.read()
        tok = PreTrainedTokenizerFast(tokenizer_file=TOKENIZER, **case["special_tokens"])
        try:
            text = tok.apply_chat_template(case["messages"], chat_template=template, tokenize=False,
                                           add_generation_prompt=case["add_generation_prompt"], **case["variables"])
            case["rendered"] = text
        except Exception as e:  # the template's raise_exception (TemplateError)
            case["error"] = str(e)
        rendered.append(case)
    with open(os.path.join(DIR, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(rendered, f, ensure_ascii=False, indent=1)
    print(f"{len(rendered)} cases, {sum('error' in c for c in rendered)} refused")


if __name__ == "__main__":
    main()
