#!/usr/bin/env python3
"""Decode and prefill speed of moepack next to llama.cpp's and ik_llama.cpp's llama-bench on the
same model: each bundle runs in moepack and, exported to GGUF, in each engine. Python stdlib
only; it builds and downloads nothing: the engines are binaries built outside the repository
and passed in (either or both may be left out). Not run in CI.

    python3 tools/engine_bench.py --moepack .build/release/moepack \\
        --bundle wint4=/tmp/bench-wint4.mpk --bundle wint8=/tmp/bench-wint8.mpk \\
        [--gguf wint4=/tmp/bench-wint4.gguf] [--workdir /tmp/eb] \\
        [--llama-bench LLAMA_CPP/build/bin/llama-bench] [--ik-bench IK_LLAMA_CPP/build/bin/llama-bench] \\
        [--rounds 3] [--reps 3] [--threads 2] [--json results.json]

A bundle without --gguf is exported with `moepack export BUNDLE --to gguf` into --workdir.
Each round runs every (bundle, engine) once, the engine order rotating from round to round:

- moepack: `moepack bench BUNDLE --json --batch 1` at --prompt-tokens 128 (prefill 128, decode
  of --gen tokens after it, decode of 16 tokens at 2048 tokens of context) and at 512
  (prefill 512);
- llama.cpp: `llama-bench -p 128,512 -n GEN` and `-p 0 -n GEN -d 2048`;
- ik_llama.cpp: the same with `-gp 2048,GEN` for the depth, plus run-time repacking and fused
  MoE (`-rtr 1 -fmoe 1`).

Both engines run with flash attention on (`-fa 1`), f16 KV cache (their default, as moepack's
for a quantized bundle), --threads threads and -r --reps. Prints the CPU, each engine's version,
and a markdown table of the medians over rounds (tokens/s) with moepack / the faster engine;
--json also writes every sample and median.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

DEPTH = 2048  # moepack bench measures decode at 128 and 2048 tokens of context
TESTS = ["pp128", "pp512", "tg", f"tg@d{DEPTH}"]
LABELS = {"pp128": "prefill 128", "pp512": "prefill 512", "tg": "decode", f"tg@d{DEPTH}": f"decode @{DEPTH}"}


def run(cmd, timeout=3600):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{os.path.basename(cmd[0])} exited {p.returncode}: {p.stderr.strip()[-600:]}")
    return p.stdout


def moepack_bench(args, bundle):
    base = [args.moepack, "bench", bundle, "--json", "--batch", "1", "--threads", str(args.threads),
            "--runs", str(args.reps)]
    a = json.loads(run(base + ["--prompt-tokens", "128", "--gen-tokens", str(args.gen)]))
    b = json.loads(run(base + ["--prompt-tokens", "512", "--gen-tokens", "16"]))
    return {"pp128": a["prefillTokensPerSecond"], "tg": a["decodeTokensPerSecond"],
            f"tg@d{DEPTH}": a["decodeAtContext"][str(DEPTH)], "pp512": b["prefillTokensPerSecond"]}


def llama_bench(binary, gguf, args, ik):
    base = [binary, "-m", gguf, "-t", str(args.threads), "-r", str(args.reps), "-fa", "1", "-o", "json"]
    if ik:
        base += ["-rtr", "1", "-fmoe", "1"]
    depth = ["-p", "0", "-n", "0", "-gp", f"{DEPTH},{args.gen}"] if ik else ["-p", "0", "-n", str(args.gen), "-d", str(DEPTH)]
    rows = json.loads(run(base + ["-p", "128,512", "-n", str(args.gen)])) + json.loads(run(base + depth))
    out, info = {}, {}
    for r in rows:
        info = {"build_commit": r.get("build_commit"), "build_number": r.get("build_number"), "cpu_info": r.get("cpu_info")}
        n_prompt, n_gen, n_depth = r["n_prompt"], r["n_gen"], r.get("n_depth", 0)
        if n_gen == 0:
            out[f"pp{n_prompt}"] = r["avg_ts"]
        elif n_depth or n_prompt:  # mainline: -d; ik: -gp (the prompt is the depth, not timed)
            out[f"tg@d{n_depth or n_prompt}"] = r["avg_ts"]
        else:
            out["tg"] = r["avg_ts"]
    return out, info


def amd_core(family, model):
    """The Zen generation of an AMD family-25 CPU: a VM's model name is often just "AMD EPYC"."""
    if family != 25:
        return None
    return "Zen 4" if 0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model <= 0xAF else "Zen 3"


def cpu_summary():
    fields, flags = {}, set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "flags":
                flags = set(value.split())
            elif key in ("model name", "vendor_id", "cpu family", "model") and key not in fields:
                fields[key] = value.strip()
    model = fields.get("model name", "?")
    if fields.get("cpu family", "").isdigit() and fields.get("model", "").isdigit():
        family, number = int(fields["cpu family"]), int(fields["model"])
        core = amd_core(family, number) if fields.get("vendor_id") == "AuthenticAMD" else None
        model += f" (family {family}, model {number}" + (f": {core})" if core else ")")
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8"]
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags]}


def named(pairs, what):
    out = {}
    for p in pairs:
        name, sep, path = p.partition("=")
        if not sep or not name or not path:
            sys.exit(f"{what} takes NAME=PATH, got {p!r}")
        out[name] = path
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moepack", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "moepack"))
    ap.add_argument("--bundle", action="append", default=[], metavar="NAME=PATH", required=True)
    ap.add_argument("--gguf", action="append", default=[], metavar="NAME=PATH", help="use this GGUF instead of exporting")
    ap.add_argument("--llama-bench", help="llama.cpp's llama-bench binary")
    ap.add_argument("--ik-bench", help="ik_llama.cpp's llama-bench binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3, help="moepack --runs and llama-bench -r within a round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen", type=int, default=128, help="decoded tokens per measurement")
    ap.add_argument("--workdir", help="where exported GGUF files go (default: a new temporary folder)")
    ap.add_argument("--json", metavar="PATH", help="also write samples and medians as JSON ('-': stdout)")
    args = ap.parse_args()

    bundles, ggufs = named(args.bundle, "--bundle"), named(args.gguf, "--gguf")
    workdir = args.workdir or tempfile.mkdtemp(prefix="engine_bench.")
    os.makedirs(workdir, exist_ok=True)
    for name, path in ggufs.items():
        if name not in bundles:
            sys.exit(f"--gguf {name}=... names no --bundle")
        if not os.path.isfile(path):
            sys.exit(f"--gguf {name}: no file at {path}")
    for name, bundle in bundles.items():
        if name not in ggufs:
            ggufs[name] = os.path.join(workdir, f"{name}.gguf")
            run([args.moepack, "export", bundle, "--to", "gguf", "--output", ggufs[name], "--force"])

    engines = {"moepack": None}
    if args.llama_bench:
        engines["llama.cpp"] = args.llama_bench
    if args.ik_bench:
        engines["ik_llama.cpp"] = args.ik_bench
    names = list(engines)
    samples, failures, versions = [], [], {e: {"path": p} for e, p in engines.items()}
    versions["moepack"] = {"path": args.moepack, "git": subprocess.run(
        ["git", "-C", os.path.dirname(os.path.abspath(__file__)), "describe", "--always", "--dirty"],
        capture_output=True, text=True).stdout.strip(),  # the tree's, not necessarily the binary's
        "built": time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(args.moepack)))}
    for rnd in range(args.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for bname, bundle in bundles.items():
            for engine in order:
                try:
                    if engine == "moepack":
                        values = moepack_bench(args, bundle)
                    else:
                        values, info = llama_bench(engines[engine], ggufs[bname], args, engine == "ik_llama.cpp")
                        versions[engine].update(info)
                except (RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as e:
                    failures.append({"engine": engine, "bundle": bname, "round": rnd, "error": str(e)})
                    print(f"! {engine} on {bname}: {e}", file=sys.stderr)
                    continue
                samples += [{"engine": engine, "bundle": bname, "round": rnd, "test": t, "tok_s": v}
                            for t, v in values.items()]

    medians = {}
    for s in samples:
        medians.setdefault((s["engine"], s["bundle"], s["test"]), []).append(s["tok_s"])
    medians = {k: statistics.median(v) for k, v in medians.items()}

    cpu = cpu_summary()
    out = sys.stderr if args.json == "-" else sys.stdout  # the table steps aside for JSON on stdout
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, flags: {' '.join(cpu['flags'])}; "
          f"{args.threads} threads, {args.rounds} rounds, medians in tokens/s\n", file=out)
    for e, v in versions.items():
        print(f"- {e}: " + ", ".join(f"{k} {x}" for k, x in v.items() if k != "cpu_info"), file=out)
    others = names[1:]
    print("\n| bundle | test | " + " | ".join(names) + (" | moepack / faster engine |" if others else " |"), file=out)
    print("|---" * (len(names) + 2 + bool(others)) + "|", file=out)
    for bname in bundles:
        for t in TESTS:
            cells = [medians.get((e, bname, t)) for e in names]
            row = [bname, LABELS[t]] + ["fail" if c is None else f"{c:.1f}" for c in cells]
            if others:
                best = max((c for c in cells[1:] if c is not None), default=None)
                row.append(f"{cells[0] / best:.2f}" if best and cells[0] is not None else "-")
            print("| " + " | ".join(row) + " |", file=out)
    for f in failures:
        print(f"\nfailed: {f['engine']} on {f['bundle']} (round {f['round']}): {f['error']}", file=out)

    if args.json:
        doc = {"cpu": cpu, "threads": args.threads, "rounds": args.rounds, "versions": versions, "ggufs": ggufs,
               "samples": samples, "failures": failures,
               "medians": [{"engine": e, "bundle": b, "test": t, "tok_s": v} for (e, b, t), v in medians.items()]}
        if args.json == "-":
            json.dump(doc, sys.stdout, indent=1)
        else:
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
