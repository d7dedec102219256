#!/usr/bin/env python3
"""Trains small byte-level BPE tokenizers the way Qwen2/Qwen3, Llama-3 and GPT-2 build theirs and
writes the `tokenizers` library's ids and decodings for the Swift tests.

Run with the reference venv (needs `tokenizers`; nothing else):
    /work/venv-ref/bin/python tools/make_bpe_fixtures.py
Versions used for the committed files: tokenizers 0.23.3.

Writes into Tests/Fixtures/tokenizer_bpe/:
  <name>/tokenizer.json        a trained tokenizer (see TOKENIZERS below), as the library saves it
  <name>/tokenizer_config.json the side file transformers reads next to it (special token names)
  inputs.jsonl                 one JSON object a line: {"text": ..., "kind": "hard" | "heldout"}
  <name>.expected.jsonl        for each input: {"ids": [...], "decoded": ..., "plain_ids": [...]}
                               ids = encode(text).ids (special tokens parsed, no post-processor),
                               decoded = decode(ids, skip_special_tokens=False), plain_ids = the ids
                               with special tokens not parsed (encode_special_tokens=True),
                               with_specials = encode(text, add_special_tokens=True).ids
  split_cases.jsonl            random strings from a pool of tricky characters (letters of every
                               case class, digits of other scripts, each kind of whitespace, CR/LF,
                               apostrophe contractions, long s, emoji, combining marks) and the pieces
                               the library's Split pre-tokenizer (Oniguruma) cuts them into with each
                               of the three regexes: {"text", "qwen2": [...], "llama3": [...], "gpt2": [...]}
  added_cases.jsonl            random strings mixing qwen2_bpe's added tokens (each flag), partial
                               token strings, whitespace, letters and digits, and the library's ids
                               for them with qwen2_bpe: {"text", "ids", "plain_ids"}
  <name>.random.jsonl          random strings stressing normalization and splitting (marks in both
                               orders, Hangul jamo, singletons such as U+212B, composition
                               exclusions, mixed scripts and whitespace) and the library's ids
  <name>.decode.jsonl          random id sequences (bytes, merged pieces, added tokens, pieces that
                               split UTF-8 characters): {"ids", "decoded", "skipped"} where skipped
                               is decode(ids, skip_special_tokens=True)

Held-out lines come from licence texts the tokenizers were not trained on, as in
make_tokenizer_fixtures.py. Everything is deterministic (fixed seeds, sorted inputs).
"""
import json
import os
import random
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "tokenizer_bpe")
LICENSES = "/usr/share/common-licenses"
TRAIN_FILES = ["GPL-3", "GPL-2", "LGPL-2.1", "Apache-2.0", "MPL-2.0"]
HELDOUT_FILES = ["GFDL-1.3", "Artistic", "BSD", "CC0-1.0", "MPL-1.1"]

# The split patterns exactly as the hub files carry them.
QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

MULTILINGUAL = [
    "Café au lait, naïve résumé, façade, jalapeño, Ångström, Zürich, São Paulo.",
    "Привет, как дела? Всё хорошо, спасибо.",
    "東京は日本の首都です。中文文本也可以被分词。",
    "한국어 문장도 조금 있습니다.",
    "Ελληνικά: καλημέρα κόσμε.",
    "مرحبا بالعالم",
    "emoji: 🙂 😀 👍 🚀",
    "def main():\n    print('hello, world')\n    return 0\n",
    "for (int i = 0; i < 10; ++i) { sum += a[i]; }",
    "It's, they're, we've, I'm, you'll, he'd. IT'S THEY'RE",
    "1234567890 3.14159 2025-07-01 $1,000,000",
]


def qwen_like(pattern):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    return tok


def build_qwen2():
    """Qwen2/Qwen3: NFC, Split(Qwen2 regex, isolated) + ByteLevel(no regex), ByteLevel post-processor
    (adds nothing), specials <|endoftext|>, <|im_start|>, <|im_end|>; <think> and </think> added
    but not special (as Qwen3's tokenizer.json has them)."""
    tok = qwen_like(QWEN2_PATTERN)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=1800, min_frequency=2, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_text(), trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.add_tokens([AddedToken("<think>", special=False, normalized=False),
                    AddedToken("</think>", special=False, normalized=False)])
    # Flags the library applies while matching: lstrip, rstrip, single_word, normalized.
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    tok.add_tokens([AddedToken("[R]", rstrip=True, normalized=False),
                    AddedToken("word", single_word=True, normalized=False),
                    AddedToken("Cafe\u0301!", normalized=True),   # matched after NFC: "Café!"
                    AddedToken("<both>", lstrip=True, rstrip=True, normalized=False)])
    config = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
              "add_bos_token": False, "tokenizer_class": "Qwen2Tokenizer", "model_max_length": 32768}
    return tok, config


def build_llama3():
    """Llama-3: no normalizer, Split(\\p{N}{1,3} regex) + ByteLevel, ignore_merges, BOS added by
    a TemplateProcessing post-processor."""
    tok = qwen_like(LLAMA3_PATTERN)
    tok.normalizer = None
    trainer = trainers.BpeTrainer(vocab_size=1500, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in
                            ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                             "<|end_header_id|>", "<|eot_id|>"]])
    data = json.loads(tok.to_str())
    data["model"]["ignore_merges"] = True
    tok = Tokenizer.from_str(json.dumps(data))
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos)])
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
              "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 131072}
    return tok, config


def build_gpt2():
    """GPT-2: ByteLevel pre-tokenizer with its own regex and add_prefix_space, no normalizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    config = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "tokenizer_class": "GPT2Tokenizer"}
    return tok, config


TOKENIZERS = {"qwen2_bpe": build_qwen2, "llama3_bpe": build_llama3, "gpt2_bpe": build_gpt2}


def read_lines(names):
    lines = []
    for name in names:
        with open(os.path.join(LICENSES, name), encoding="utf-8") as f:
            lines += [l.rstrip("\n") for l in f]
    return lines


def training_text():
    text = read_lines(TRAIN_FILES)
    return text + MULTILINGUAL * 20


def hard_cases():
    return [
        "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "  \n  ", "a  b", "a   b",
        "a \n b", "end with spaces   ", "   start with spaces", "tabs\t\tand\t spaces \t",
        "Hello world", " Hello world", "Hello world\n", "line1\nline2\n\nline4\r\nline5\rline6",
        "trailing newlines\n\n\n", "   \n\n   \n", "x\u00a0y no-break\u2003em\u3000ideo", "\u2028\u2029\u0085",
        "digits 0 12 123 1234 12345 123456 3.14 1e10 -42 +7", "٠١٢٣ ๑๒๓ ½ ² ① Ⅻ", "00000000",
        "It's they're we've I'm you'll he'd IT'S WE'VE I'M", "'s 't 're 'x ' 'll''ll", "ſ's 'ſ",
        "Café naïve résumé", "Cafe\u0301 nai\u0308ve (combining)", "e\u0301\u0302\u0303 stacked",
        "\u0301 leading combining", "Å Å Å", "ﬁ ligature ＡＢＣ fullwidth", "Hangul \u1100\u1161\u11a8 jamo",
        "東京は日本の首都です。", "中文文本也可以被分词，对吧？", "한국어 문장", "Привет, мир!", "مرحبا بالعالم",
        "שלום עולם", "हिन्दी पाठ", "ภาษาไทย", "Ελληνικά", "mixed日本語andEnglish123混合",
        "emoji 🙂😀👍🚀", "family 👨‍👩‍👧‍👦 flag 🇯🇵 skin 👍🏽", "keycap 1️⃣ ❤️ ❤", "𝔸𝔹ℂ 𝟘𝟙𝟚 𐍈 𝄞",
        "\ue000\uf8ff \ufdd0 \ufffd", "zero\u200bwidth\u200cjoin\u200d\ufeff", "nul\x00 bell\x07 esc\x1b[0m del\x7f",
        "!!! ??? ... --- *** ### @@@ ~~~ ``` ", "a.b,c;d:e!f?g", "(parens) [brackets] {braces} <angles>",
        "https://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Windows\\System32",
        "def f(x):\n    return x ** 2\n\n\nclass A:\n\tpass\n", "    indented\n        more\n",
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", "<|im_start|><|im_end|>",
        "x<|endoftext|>y", "<|im_start", "<|im_start|", "<think>\nreasoning\n</think>\n\nanswer",
        "<think></think>", "a<think>b", "  <mask> after spaces", "x <mask>y", "<mask>", "text [R]   after",
        "[R]\n\nnext", "word", "a word here", "words", "sword", "word.", " word ", "wordword", "Café!",
        "Cafe\u0301!", "x<both>   y", "   <both>   ", "<|begin_of_text|>hi<|eot_id|>", "<|endoftext|>",
        "a" * 200, "ab" * 150, " " * 50 + "x", "\n" * 30, "🙂" * 20, "e\u0301" * 30,
        "Pneumonoultramicroscopicsilicovolcanoconiosis" * 5,
    ]


def heldout_lines():
    lines = [l for l in read_lines(HELDOUT_FILES) if l.strip()]
    rng = random.Random(7)
    lines = rng.sample(lines, 330)
    # A few held-out lines in other scripts: the licence texts are English.
    lines += ["Le café est très chaud ; l'été approche.", "Der Überzug kostet 12,50 €.",
              "今日はいい天気ですね。明日も晴れるでしょう。", "Это проверочная строка номер 42.",
              "नमस्ते दुनिया, यह एक परीक्षण है।", "Tôi yêu tiếng Việt.", "👋 Hi there! 🎉🎉"]
    return lines


def random_id_sequences(tok, rng, count=60):
    vocab = tok.get_vocab(with_added_tokens=True)
    ids = sorted(vocab.values())
    added = sorted(tok.get_added_tokens_decoder().keys())
    seqs = []
    for _ in range(count):
        n = rng.randint(1, 12)
        seq = []
        for _ in range(n):
            r = rng.random()
            if r < 0.15 and added:
                seq.append(rng.choice(added))
            elif r < 0.55:
                seq.append(rng.randint(0, 255))        # single byte-level symbols: may split UTF-8
            else:
                seq.append(rng.choice(ids))
        seqs.append(seq)
    return seqs


SPLIT_POOL = ["a", "B", "z", "é", "e\u0301", "中", "ß", "1", "٣", "½", "Ⅻ", " ", " ", "  ", "\t", "\n", "\r",
              "\r\n", "\u00a0", "\u0085", "\u2028", "\u3000", "'", "'s", "'S", "'ll", "'Re", "'ve", "'x", "!", ".",
              ",", "-", "_", "🙂", "👍🏽", "\u200b", "\x00", "$", "«", "\ufeff", "ſ", "ǅ", "ʰ", "\u212a", "'ſ"]

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def split_cases(count=1500):
    rng = random.Random(5)
    splitters = {name: pre_tokenizers.Split(Regex(p), behavior="isolated")
                 for name, p in [("qwen2", QWEN2_PATTERN), ("llama3", LLAMA3_PATTERN), ("gpt2", GPT2_PATTERN)]}
    rows = []
    for _ in range(count):
        text = "".join(rng.choice(SPLIT_POOL) for _ in range(rng.randint(1, 12)))
        row = {"text": text}
        for name, sp in splitters.items():
            row[name] = [piece for piece, _ in sp.pre_tokenize_str(text)]
        rows.append(row)
    return rows


ADDED_POOL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<mask>", "[R]", "word",
              "Café!", "Cafe\u0301!", "<both>", "<|im_start", "|>", "<", "wor", "d", " ", "  ", "\n", "\t", "\u3000",
              "a", "x", "1", "é", "\u0301", "中", "🙂", ".", "'s"]


def added_cases(tok, count=600):
    rng = random.Random(9)
    rows = []
    for _ in range(count):
        text = "".join(rng.choice(ADDED_POOL) for _ in range(rng.randint(1, 10)))
        ids = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = True
        plain = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        rows.append({"text": text, "ids": ids, "plain_ids": plain})
    return rows


RANDOM_POOL = ["e", "E", "a", "o", "\u0301", "\u0300", "\u0323", "\u0308", "\u0327", "\u1100", "\u1161", "\u11a8",
               "\uac00", "\u212b", "\u2126", "\u0958", "\u0915\u093c", "\u00c5", "\u1e9b\u0323", "\u0387", "\u2000",
               "\u00a0", " ", "  ", "\n", "\r\n", "\t", "1", "12", "123", "٣", "'", "'s", "'T", "中", "文", "ا", "ل",
               "🙂", "👨‍👩‍👧", "!", "?", "...", "-", "_", "$", "the", " the", "License", "ẞ", "ǅ", "ﬁ"]


def random_cases(tok, count=500):
    rng = random.Random(13)
    rows = []
    for _ in range(count):
        text = "".join(rng.choice(RANDOM_POOL) for _ in range(rng.randint(1, 14)))
        rows.append({"text": text, "ids": tok.encode(text, add_special_tokens=False).ids})
    return rows


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    inputs = [{"text": t, "kind": "hard"} for t in hard_cases()]
    inputs += [{"text": t, "kind": "heldout"} for t in heldout_lines()]
    write_jsonl(os.path.join(OUT, "inputs.jsonl"), inputs)
    write_jsonl(os.path.join(OUT, "split_cases.jsonl"), split_cases())
    for name, build in TOKENIZERS.items():
        tok, config = build()
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))   # exactly what is committed
        rows = []
        for item in inputs:
            text = item["text"]
            ids = tok.encode(text, add_special_tokens=False).ids
            with_specials = tok.encode(text, add_special_tokens=True).ids
            tok.encode_special_tokens = True
            plain = tok.encode(text, add_special_tokens=False).ids
            tok.encode_special_tokens = False
            rows.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                         "plain_ids": plain, "with_specials": with_specials})
        write_jsonl(os.path.join(OUT, f"{name}.expected.jsonl"), rows)
        rng = random.Random(11)
        write_jsonl(os.path.join(OUT, f"{name}.decode.jsonl"),
                    [{"ids": s, "decoded": tok.decode(s, skip_special_tokens=False),
                      "skipped": tok.decode(s, skip_special_tokens=True)} for s in random_id_sequences(tok, rng)])
        write_jsonl(os.path.join(OUT, f"{name}.random.jsonl"), random_cases(tok))
        if name == "qwen2_bpe":
            write_jsonl(os.path.join(OUT, "added_cases.jsonl"), added_cases(tok))
        print(f"{name}: vocab {tok.get_vocab_size()}, {len(rows)} inputs")


if __name__ == "__main__":
    main()
