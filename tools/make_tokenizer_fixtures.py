#!/usr/bin/env python3
"""Trains small SentencePiece models and writes reference encodings for the Swift tokenizer tests.

Run with the maintainer venv (needs the `sentencepiece` package):
    /work/venv/bin/python tools/make_tokenizer_fixtures.py

Writes into Tests/Fixtures/tokenizer/:
  <name>.model              trained models (see MODELS below)
  inputs.txt                test inputs, one per line (split on b"\\n" only; file ends with "\\n")
  <name>.ids.txt            the library's ids for each input line, space separated
  <name>.decoded.jsonl      the library's DecodeIds(ids) for each input line, one JSON string a line
  <name>.pieces.jsonl       the pieces for each input line (for the models in PIECES_FOR)
  <name>.random_ids.txt     random id sequences (bytes, controls, unk, user pieces mixed)
  <name>.random_decoded.jsonl  the library's decode of each random sequence
  ties.txt, <name>.ties.ids.txt  runs of repeated characters (equal-score segmentations) and the
                            library's ids for them; `--ties-only` writes just these, for the
                            committed models

Optional: --extra-model PATH --extra-name NAME --extra-text FILE adds reference ids for another
model on the lines of FILE (the tests read FILE from its own place). For the built-in tiny model:
    tools/make_tokenizer_fixtures.py --extra-model Sources/moepack/Resources/tiny-moe/tokenizer.model \
        --extra-name tiny_moe --extra-text Sources/moepack/Resources/tiny-moe/heldout.txt
"""
import argparse
import io
import json
import os
import random
import sys
import zlib

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "tokenizer")
LICENSES = "/usr/share/common-licenses"

TRAIN_FILES = ["GPL-3", "GPL-2", "LGPL-2.1", "Apache-2.0", "MPL-2.0", "MPL-1.1"]
HELDOUT_FILES = ["GFDL-1.3", "Artistic", "BSD", "CC0-1.0"]

# A little non-English text so the vocabularies hold some multi-byte pieces.
MULTILINGUAL = [
    "Café au lait, naïve résumé, façade, jalapeño, Ångström, Zürich, São Paulo.",
    "Привет, как дела? Всё хорошо, спасибо.",
    "東京は日本の首都です。中文文本也可以被分词。",
    "한국어 문장도 조금 있습니다.",
    "Ελληνικά: καλημέρα κόσμε.",
    "مرحبا بالعالم",
    "emoji: 🙂 😀 👍 🚀",
]

USER_DEFINED = ["<|begin_of_sentence|>", "<|end_of_sentence|>", "[MASK]", "foo_bar", "▁Licen"]
CONTROL = ["<|im_start|>", "<|im_end|>"]

# name -> SentencePieceTrainer arguments (on top of the common ones).
MODELS = {
    # BPE, identity normalization, byte fallback, user-defined pieces.
    "bpe_identity_bf": dict(model_type="bpe", vocab_size=900, byte_fallback=True,
                            normalization_rule_name="identity",
                            user_defined_symbols=USER_DEFINED, control_symbols=CONTROL),
    # BPE, nmt_nfkc (precompiled charsmap), no byte fallback: unknowns merge into one <unk>.
    "bpe_nfkc": dict(model_type="bpe", vocab_size=700, byte_fallback=False,
                     user_defined_symbols=USER_DEFINED[:3]),
    # BPE, identity, keeps extra whitespace, no dummy prefix, pad id set.
    "bpe_raw_ws": dict(model_type="bpe", vocab_size=600, byte_fallback=True,
                       normalization_rule_name="identity", remove_extra_whitespaces=False,
                       add_dummy_prefix=False, pad_id=3,
                       user_defined_symbols=["<tab>", "\t"]),
    # Unigram, nmt_nfkc, byte fallback, user-defined pieces.
    "unigram_nfkc_bf": dict(model_type="unigram", vocab_size=900, byte_fallback=True,
                            user_defined_symbols=USER_DEFINED, control_symbols=CONTROL),
    # BPE with whitespace as suffix (the marker ends a word instead of starting it).
    "bpe_ws_suffix": dict(model_type="bpe", vocab_size=600, byte_fallback=True,
                          normalization_rule_name="identity", treat_whitespace_as_suffix=True),
    # Unigram, identity, no byte fallback, whitespace kept.
    "unigram_identity": dict(model_type="unigram", vocab_size=700, byte_fallback=False,
                             normalization_rule_name="identity",
                             remove_extra_whitespaces=False),
}


# Models whose pieces (not just ids) are also written, for the piece-string test.
PIECES_FOR = {"bpe_identity_bf", "unigram_nfkc_bf"}


def read_lines(names):
    lines = []
    for name in names:
        with open(os.path.join(LICENSES, name), encoding="utf-8") as f:
            lines += [l.rstrip("\n") for l in f]
    return lines


def hard_cases():
    long_word = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 6
    cases = [
        "",
        " ",
        "   ",
        "Hello world",
        " Hello world",
        "Hello world ",
        "  Hello    world  ",
        "\tHello\tworld\t",
        "tab\t\tseparated\tvalues",
        "line with trailing tab\t",
        "carriage\rreturn",
        "form\x0cfeed and vertical\x0btab",
        "nul\x00byte and bell\x07 and escape\x1b[0m",
        "del\x7f and c1 \x85 \x9f controls",
        "no-break\u00a0space and\u2003em space and\u3000ideographic space",
        "zero\u200bwidth\u200cjoiner\u200dand\ufeffbom",
        "line\u2028separator\u2029paragraph",
        "Café naïve résumé",
        "Cafe\u0301 nai\u0308ve (combining marks)",
        "e\u0301\u0302\u0303\u0304\u0305 stacked combining",
        "\u0301 leading combining mark",
        "Ångström Å Å",
        "ﬁ ﬂ ﬃ ligatures and ① ② ⑳ and ㍻ and ＡＢＣ fullwidth",
        "½ ¼ ² ³ ™ ℃ ㎏",
        "東京は日本の首都です。",
        "中文文本也可以被分词，对吧？",
        "한국어 문장",
        "Привет, мир!",
        "مرحبا بالعالم",
        "שלום עולם",
        "हिन्दी पाठ",
        "ภาษาไทย",
        "emoji 🙂😀👍🚀",
        "family 👨‍👩‍👧‍👦 flag 🇯🇵 skin 👍🏽",
        "keycap 1️⃣ and variation ❤️ ❤",
        "math 𝔸𝔹ℂ 𝟘𝟙𝟚 and ancient 𐍈 and music 𝄞",
        "private use \ue000\uf8ff and noncharacter \ufdd0 \uffff and \U0010ffff",
        "replacement \ufffd char and U+FFFE \ufffe",
        "specials <|begin_of_sentence|>hi<|end_of_sentence|> [MASK] foo_bar",
        "<|begin_of_sentence|>",
        "<s> </s> <unk> <pad> <0x41> <|im_start|>",
        "▁ already has ▁▁ markers▁",
        "under_score and foo_barbaz and xfoo_bar",
        "License Licensed Licensee LICENSE license",
        long_word,
        "x" * 300,
        "ab" * 200,
        "1234567890 3.14159 1,000,000 0x1F 2026-11-29",
        "!!! ??? ... --- *** ### $$$ %%% &&& @@@",
        "\"quoted\" 'single' `back` (paren) [bracket] {brace}",
        "mixed\tall \u3000 kinds\u00a0of  \t spaces",
        "a",
        "Z",
        "é",
        "🙂",
        "\t",
        "\x00",
        "GNU GENERAL PUBLIC LICENSE Version 3, 29 June 2007",
        "You may convey verbatim copies of the Program's source code as you receive it.",
    ]
    return cases


TIE_MODELS = ["unigram_identity", "unigram_nfkc_bf", "unigram_unused", "bpe_identity_bf", "bpe_nfkc"]


def tie_cases():
    """Runs of one or two repeated characters: segmentations made of the same pieces in another
    order have exactly equal scores, so these test the library's tie-breaking."""
    cases = []
    for ch in ["=", "-", ".", "*", "#", "~", "_", "0", "a", "=-", "-=", "ab", "é", "🙂"]:
        for n in list(range(1, 25)) + [31, 32, 33, 47, 64, 100]:
            cases.append(ch * n)
    cases += ["=" * n + " " + "-" * n for n in range(1, 20)]
    cases += [" " * n + "=" * n for n in range(1, 12)]
    return cases


def tie_references(names):
    """ties.txt and, per model, NAME.ties.ids.txt (existing models, nothing retrained)."""
    inputs = tie_cases()
    write_lines(os.path.join(OUT, "ties.txt"), inputs)
    for name in names:
        sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, f"{name}.model"))
        write_lines(os.path.join(OUT, f"{name}.ties.ids.txt"), [" ".join(map(str, sp.encode(t))) for t in inputs])


def fuzz_cases(rng, n):
    ranges = [(0x20, 0x7e), (0x00, 0x1f), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x4ff),
              (0x590, 0x6ff), (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff),
              (0x2000, 0x206f), (0x2100, 0x22ff), (0x3000, 0x30ff), (0x3400, 0x4dbf),
              (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0xe000, 0xf8ff), (0xf900, 0xfaff),
              (0xfb00, 0xfdff), (0xfe00, 0xfe6f), (0xff00, 0xffef), (0xfff0, 0xfffd),
              (0x10000, 0x1ffff), (0x1f300, 0x1faff), (0x20000, 0x2ffff), (0xe0000, 0xe01ef),
              (0x10fff0, 0x10ffff)]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 40)):
            if rng.random() < 0.5:
                chars.append(rng.choice(["a", "b", "the ", " ", "  ", "\t", "License", "e\u0301",
                                         "foo_bar", "[MASK]", "."]))
                continue
            lo, hi = rng.choice(ranges)
            cp = rng.randint(lo, hi)
            if 0xD800 <= cp <= 0xDFFF or cp == 0x0A:
                cp = 0x41
            chars.append(chr(cp))
        out.append("".join(chars))
    return out


def _varint(buf, pos):
    value, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def _put_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def mark_unused(model_bytes, piece_ids):
    """Rewrites ModelProto.pieces[i].type to UNUSED (5) for i in piece_ids. Minimal protobuf
    editing (the venv has no protobuf package): top-level field 1 holds the pieces."""
    out, pos, index = bytearray(), 0, 0
    while pos < len(model_bytes):
        key, p2 = _varint(model_bytes, pos)
        field, wire = key >> 3, key & 7
        assert wire == 2, "ModelProto top-level fields are all length-delimited"
        length, p3 = _varint(model_bytes, p2)
        body = model_bytes[p3:p3 + length]
        if field == 1:
            if index in piece_ids:
                # Drop an existing type field (3, varint) and append type = UNUSED.
                q, kept = 0, bytearray()
                while q < len(body):
                    k, q2 = _varint(body, q)
                    f, w = k >> 3, k & 7
                    if w == 0:
                        _, q3 = _varint(body, q2)
                    elif w == 5:
                        q3 = q2 + 4
                    else:
                        n, q2b = _varint(body, q2)
                        q3 = q2b + n
                    if f != 3:
                        kept += body[q:q3]
                    q = q3
                body = bytes(kept) + bytes([0x18, 5])
            index += 1
        out += _put_varint(key) + _put_varint(len(body)) + body
        pos = p3 + length
    return bytes(out)


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8", newline="") as f:
        for l in lines:
            assert "\n" not in l, repr(l)
            f.write(l + "\n")


def write_jsonl(path, items):
    with open(path, "w", encoding="utf-8", newline="") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=True) + "\n")


def references(sp, name, inputs, rng):
    ids = [sp.encode(t) for t in inputs]
    write_lines(os.path.join(OUT, f"{name}.ids.txt"), [" ".join(map(str, x)) for x in ids])
    write_jsonl(os.path.join(OUT, f"{name}.decoded.jsonl"), [sp.decode(x) for x in ids])
    if name in PIECES_FOR:
        write_jsonl(os.path.join(OUT, f"{name}.pieces.jsonl"), [sp.encode(t, out_type=str) for t in inputs])
    # Random id sequences, biased towards byte, control and special pieces.
    n = sp.get_piece_size()
    special = [i for i in range(n) if sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i)
               or sp.id_to_piece(i).startswith("<|") or sp.id_to_piece(i).startswith("▁")]
    seqs = []
    for _ in range(120):
        seq = [rng.choice(special) if rng.random() < 0.6 else rng.randrange(n)
               for _ in range(rng.randint(0, 12))]
        seqs.append(seq)
    write_lines(os.path.join(OUT, f"{name}.random_ids.txt"), [" ".join(map(str, s)) for s in seqs])
    write_jsonl(os.path.join(OUT, f"{name}.random_decoded.jsonl"), [sp.decode(s) for s in seqs])


# ERNIE 4.5's published chat template (tokenizer_config.json "chat_template"), rendered with jinja2
# the way transformers does, to give reference prompts for the Swift ChatTemplate.
ERNIE_CHAT_TEMPLATE = (
    '{%- if not add_generation_prompt is defined -%}\n    {%- set add_generation_prompt = true -%}\n{%- endif -%}\n'
    '{%- if not cls_token is defined -%}\n    {%- set cls_token = "<|begin_of_sentence|>" -%}\n{%- endif -%}\n'
    '{%- if not sep_token is defined -%}\n    {%- set sep_token = "<|end_of_sentence|>" -%}\n{%- endif -%}\n'
    '{{- cls_token -}}\n{%- for message in messages -%}\n    {%- if message["role"] == "user" -%}\n'
    '        {{- "User: " + message["content"] + "\\n" -}}\n    {%- elif message["role"] == "assistant" -%}\n'
    '        {{- "Assistant: " + message["content"] + sep_token -}}\n    {%- elif message["role"] == "system" -%}\n'
    '        {{- message["content"] + "\\n" -}}\n    {%- endif -%}\n{%- endfor -%}\n'
    '{%- if add_generation_prompt -%}\n    {{- "Assistant: " -}}\n{%- endif -%}'
)

ERNIE_CONFIG = {
    "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>",
    "cls_token": "<|begin_of_sentence|>", "sep_token": "<|end_of_sentence|>", "mask_token": "[MASK]",
    "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
    "added_tokens_decoder": {"900": {"content": "<|tool|>", "special": True, "lstrip": False,
                                     "rstrip": False, "normalized": False, "single_word": False}},
    "chat_template": ERNIE_CHAT_TEMPLATE,
}


def chat_fixtures(sp):
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.ext import loopcontrols
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    template = env.from_string(ERNIE_CHAT_TEMPLATE)
    convs = [
        [{"role": "user", "content": "Hello!"}],
        [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "What is the GNU GPL?"}],
        [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello, how can I help?"},
         {"role": "user", "content": "Tell me about licenses.\nTwo lines."},
         {"role": "assistant", "content": "Sure."},
         {"role": "user", "content": "  spaces  and 東京 🙂 "}],
        [{"role": "user", "content": "a"}, {"role": "tool", "content": "ignored"},
         {"role": "assistant", "content": ""}],
        [],
    ]
    cases = []
    specials = ["<|begin_of_sentence|>", "<|end_of_sentence|>", "<|im_start|>", "<|im_end|>", "<|tool|>",
                "<s>", "</s>", "<unk>", "[MASK]"]
    ids_of = {"<|tool|>": 900}

    def encode_special(text):
        # Longest special token at the earliest position; plain segments go to the library.
        out, i, start = [], 0, 0
        while i < len(text):
            m = max((t for t in specials if text.startswith(t, i)), key=len, default=None)
            if m is None:
                i += 1
                continue
            if i > start:
                out += sp.encode(text[start:i])
            out.append(ids_of.get(m, sp.piece_to_id(m)))
            i += len(m)
            start = i
        if start < len(text):
            out += sp.encode(text[start:])
        return out

    for conv in convs:
        for gen in (True, False):
            text = template.render(messages=conv, add_generation_prompt=gen,
                                   cls_token=ERNIE_CONFIG["cls_token"], sep_token=ERNIE_CONFIG["sep_token"])
            cases.append({"messages": conv, "add_generation_prompt": gen, "text": text,
                          "ids": encode_special(text)})
    extra = ["plain <|im_start|>user\nhi<|im_end|> tail", "<s>x</s>", "<|tool|><|tool|>a<|tool|>",
             "[MASK][MASK] foo_bar", "no specials here", "<|begin_of_sentence|"]
    specials_cases = [{"text": t, "ids": encode_special(t), "plain_ids": sp.encode(t)} for t in extra]
    with open(os.path.join(OUT, "ernie_config", "tokenizer_config.json"), "w") as f:
        json.dump(ERNIE_CONFIG, f, indent=1)
    with open(os.path.join(OUT, "chat_cases.json"), "w") as f:
        json.dump({"chat": cases, "special": specials_cases}, f, indent=1, ensure_ascii=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--extra-model")
    ap.add_argument("--extra-name")
    ap.add_argument("--extra-text")
    ap.add_argument("--ties-only", action="store_true",
                    help="write only the tie-breaking references, for the committed models")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if args.ties_only:
        tie_references(TIE_MODELS)
        return

    if args.extra_model:
        sp = spm.SentencePieceProcessor(model_file=args.extra_model)
        with open(args.extra_text, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        references(sp, args.extra_name, lines, random.Random(7))
        return

    train = read_lines(TRAIN_FILES) + MULTILINGUAL * 20
    heldout = [l for l in read_lines(HELDOUT_FILES) if l.strip()][:150]
    rng = random.Random(1234)
    inputs = hard_cases() + heldout + fuzz_cases(rng, 150)
    write_lines(os.path.join(OUT, "inputs.txt"), inputs)

    for name, extra in MODELS.items():
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(train), model_writer=buf, num_threads=1,
            character_coverage=1.0 if "nfkc" not in name else 0.9995,
            max_sentence_length=100000, minloglevel=2, **extra)
        path = os.path.join(OUT, f"{name}.model")
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        sp = spm.SentencePieceProcessor(model_file=path)
        references(sp, name, inputs, random.Random(zlib.crc32(name.encode())))
        print(name, sp.get_piece_size(), os.path.getsize(path), file=sys.stderr)
        if name in ("bpe_identity_bf", "unigram_identity"):
            # The same model with some frequent multi-character pieces marked UNUSED: BPE still
            # merges through them and splits them back, unigram skips them.
            unused_name = name.split("_")[0] + "_unused"
            normal = [i for i in range(sp.get_piece_size())
                      if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i))
                      and len(sp.id_to_piece(i)) >= 2 and not sp.id_to_piece(i).startswith("<|")]
            chosen = set(normal[:: max(1, len(normal) // 40)][:40])
            upath = os.path.join(OUT, f"{unused_name}.model")
            with open(upath, "wb") as f:
                f.write(mark_unused(buf.getvalue(), chosen))
            usp = spm.SentencePieceProcessor(model_file=upath)
            assert sum(usp.is_unused(i) for i in range(usp.get_piece_size())) == len(chosen)
            references(usp, unused_name, inputs, random.Random(zlib.crc32(unused_name.encode())))

    tie_references(TIE_MODELS)

    # Special tokens and chat template, on the BPE model that has the ERNIE markers as pieces.
    os.makedirs(os.path.join(OUT, "ernie_config"), exist_ok=True)
    chat_fixtures(spm.SentencePieceProcessor(model_file=os.path.join(OUT, "bpe_identity_bf.model")))


if __name__ == "__main__":
    main()
