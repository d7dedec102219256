#!/usr/bin/env python3
"""Mutation campaign through the CLI: mutated bundles and checkpoint directories go through
`moepack inspect` (bundles with --verify) and `moepack logits`, and every run is classified.

    python3 tools/mutate_campaign.py [--count 300] [--seconds 600] [--moepack .build/release/moepack]

First a deterministic sweep of config.json (every integer field at 2^40 and 2^40 + 1, the
attention sizes at 2^40 together; --no-sweep skips it), then random mutations: bit flips and
random bytes anywhere, truncations, trailing bytes, header length fields +-1 (bundles also
with the header checksum made right, so the change gets past it), numbers in the bundle
manifest and in config.json replaced by huge, negative, fractional or wrong-typed values,
safetensors offsets, shapes and dtypes changed, fields deleted.

Each run has a memory limit (RLIMIT_AS, --memory-mb, default 2048) and a timeout
(--timeout, default 30 s). Outcomes:
  clean-error     non-zero exit with a one-line message on stderr (what DESIGN.md asks for)
  messy-error     non-zero exit, but stderr empty or more than one line
  crash           killed by a signal (a trap, a segfault)
  hang            still running at the timeout
  oom             the memory limit was hit (allocation failure or kill)
  accepted        exit 0, output finite (for a bundle, only when the mutation cannot be seen
                  by a checksum, e.g. alignment padding)
  accepted-odd    exit 0 with non-finite logits, or a mutated bundle accepted by --verify
Reproducers of everything but clean errors and accepted runs are kept in --keep (default
.fuzz/campaign). Prints a summary table; exits 1 when a crash, hang, oom or odd output was seen.
Standard library only.
"""
import argparse
import array
import collections
import json
import math
import os
import random
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests/Fixtures/checkpoints")
BAD = ("crash", "hang", "oom", "accepted-odd")
HUGE = [2 ** 40, 2 ** 40 + 1, 2 ** 53, 2 ** 63 - 1, 2 ** 64, 10 ** 30, 1e308, -1, -(2 ** 63), 0, 1.5, "7", None, True, [1, 2]]


# ---------- bundle helpers ----------

_table = []


def crc32c_fast(data):
    if not _table:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ (0x82F63B78 & -(c & 1))
            _table.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = _table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def fix_header_crc(blob):
    blob[60:64] = struct.pack("<I", crc32c_fast(bytes(blob[:60])))


def set_manifest(blob, manifest):
    """A bundle with `manifest` (bytes) in place of its own, lengths and checksums made right."""
    offset, _ = struct.unpack("<QQ", blob[16:32])
    out = bytearray(blob[:offset]) + manifest
    out[24:32] = struct.pack("<Q", len(manifest))
    out[32:40] = struct.pack("<Q", len(out))
    out[40:44] = struct.pack("<I", crc32c_fast(manifest))
    fix_header_crc(out)
    return out


def json_paths(value, path=()):
    """Every (path, value) of numbers in a JSON tree."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from json_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from json_paths(v, path + (i,))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


def set_path(tree, path, value):
    node = tree
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def dumps(tree):
    # Python writes 2**64 and 1e308 as JSON numbers; that is what a hostile file holds too.
    return json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()


def checked_ranges(blob):
    """Byte ranges of a bundle its checksums cover: header, manifest, payloads."""
    offset, length = struct.unpack("<QQ", blob[16:32])
    manifest = json.loads(bytes(blob[offset:offset + length]))
    ranges = [(0, 64), (offset, offset + length)]
    for entry in manifest["tensors"] + manifest["files"]:
        ranges.append((entry["payload"]["offset"], entry["payload"]["offset"] + entry["payload"]["length"]))
    return ranges


def unchecked(desc, base, blob):
    """True when a mutation the checksums should catch was accepted: bytes changed in place
    inside a checked range (mutations that rewrite the manifest fix its checksum on purpose)."""
    if desc.startswith(("manifest-", "header-field+-1-crc-fixed")) or len(blob) != len(base):
        return False
    changed = [i for i in range(len(blob)) if blob[i] != base[i]]
    ranges = checked_ranges(base)
    return any(lo <= i < hi for i in changed for lo, hi in ranges)


def mutate_bundle(blob, rng):
    blob = bytearray(blob)
    offset, length = struct.unpack("<QQ", blob[16:32])
    kind = rng.choice(["bitflip", "bitflip-header", "random-bytes", "truncate", "append", "header-field+-1",
                       "header-field+-1-crc-fixed", "manifest-number", "manifest-number", "manifest-delete",
                       "payload-bitflip"])
    if kind == "bitflip":
        i = rng.randrange(len(blob) * 8)
        blob[i // 8] ^= 1 << (i % 8)
        return kind + f"@{i // 8}", blob
    if kind == "bitflip-header":
        i = rng.randrange(64 * 8)
        blob[i // 8] ^= 1 << (i % 8)
        return kind + f"@{i // 8}", blob
    if kind == "random-bytes":
        at = rng.randrange(len(blob))
        n = rng.randint(1, 16)
        blob[at:at + n] = bytes(rng.randrange(256) for _ in range(n))
        return kind + f"@{at}", blob
    if kind == "truncate":
        cut = rng.choice([0, 7, 63, 64, offset, offset + length - 1, rng.randrange(len(blob))])
        return kind + f"@{cut}", blob[:cut]
    if kind == "append":
        return kind, blob + bytes(rng.randint(1, 100))
    if kind.startswith("header-field"):
        at = rng.choice([8, 12, 16, 24, 32, 44])
        size = 4 if at in (8, 12, 44) else 8
        fmt = "<I" if size == 4 else "<Q"
        value = struct.unpack(fmt, blob[at:at + size])[0]
        value = (value + rng.choice([1, -1])) % (1 << (8 * size))
        blob[at:at + size] = struct.pack(fmt, value)
        if kind.endswith("crc-fixed"):
            fix_header_crc(blob)
        return kind + f"@{at}", blob
    manifest = json.loads(bytes(blob[offset:offset + length]))
    if kind == "manifest-number":
        paths = list(json_paths(manifest))
        path, _ = rng.choice(paths)
        value = rng.choice(HUGE)
        set_path(manifest, path, value)
        return f"{kind}:{'.'.join(map(str, path))}={value!r}", set_manifest(blob, dumps(manifest))
    if kind == "manifest-delete":
        tensor = rng.choice(manifest["tensors"])
        key = rng.choice(list(tensor.keys()) + ["payload.crc32c", "payload.raw_length"])
        if "." in key:
            del tensor["payload"][key.split(".")[1]]
        else:
            del tensor[key]
        return f"{kind}:{tensor.get('name', '?')}.{key}", set_manifest(blob, dumps(manifest))
    # payload-bitflip: inside a payload; the payload checksum must catch it
    tensor = rng.choice(manifest["tensors"])["payload"]
    if tensor["length"] == 0:
        return "payload-bitflip-empty", blob
    i = tensor["offset"] * 8 + rng.randrange(tensor["length"] * 8)
    blob[i // 8] ^= 1 << (i % 8)
    return kind + f"@{i // 8}", blob


# ---------- checkpoint helpers ----------

def config_sweep(checkpoint):
    """Deterministic config.json edits run before the random ones: each integer field at 2^40
    (the largest value ModelConfig takes) and at 2^40 + 1, and the attention sizes at 2^40 together."""
    config = json.loads(open(os.path.join(checkpoint, "config.json"), "rb").read())
    keys = [k for k, v in config.items() if isinstance(v, int) and not isinstance(v, bool)]
    edits = [{k: v} for k in keys for v in (2 ** 40, 2 ** 40 + 1)]
    edits.append({"num_attention_heads": 2 ** 40, "num_key_value_heads": 2 ** 40, "head_dim": 2 ** 40})
    return edits


def apply_config_edit(directory, edit):
    path = os.path.join(directory, "config.json")
    config = json.loads(open(path, "rb").read())
    config.update(edit)
    open(path, "wb").write(dumps(config))
    return "config-sweep:" + ",".join(f"{k}={v}" for k, v in edit.items())


def mutate_checkpoint(directory, rng):
    """Mutates one file of a checkpoint directory in place; returns a description."""
    st_path = os.path.join(directory, "model.safetensors")
    config_path = os.path.join(directory, "config.json")
    kind = rng.choice(["config-number", "config-number", "config-delete", "config-truncate", "st-header-length+-1",
                       "st-bitflip-header", "st-bitflip-data", "st-truncate", "st-offsets", "st-shape", "st-dtype",
                       "st-huge-header-length"])
    if kind.startswith("config"):
        text = open(config_path, "rb").read()
        config = json.loads(text)
        if kind == "config-number":
            keys = [k for k, v in config.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            key = rng.choice(keys)
            config[key] = rng.choice(HUGE)
            out = dumps(config)
            desc = f"{kind}:{key}={config[key]!r}"
        elif kind == "config-delete":
            key = rng.choice(list(config.keys()))
            del config[key]
            out, desc = dumps(config), f"{kind}:{key}"
        else:
            cut = rng.randrange(len(text))
            out, desc = text[:cut], f"{kind}@{cut}"
        open(config_path, "wb").write(out)
        return desc
    blob = bytearray(open(st_path, "rb").read())
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(bytes(blob[8:8 + n]))
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)

    def rewrite(new_header):
        text = json.dumps(new_header).encode()
        text += b" " * (-len(text) % 8)
        return struct.pack("<Q", len(text)) + text + bytes(blob[8 + n:])

    if kind == "st-header-length+-1":
        blob[:8] = struct.pack("<Q", n + rng.choice([1, -1]))
        desc = kind
    elif kind == "st-huge-header-length":
        value = rng.choice([2 ** 63, 2 ** 64 - 1, 100 * 1024 * 1024, len(blob)])
        blob[:8] = struct.pack("<Q", value)
        desc = f"{kind}={value}"
    elif kind == "st-bitflip-header":
        i = rng.randrange((8 + n) * 8)
        blob[i // 8] ^= 1 << (i % 8)
        desc = f"{kind}@{i // 8}"
    elif kind == "st-bitflip-data":
        # An exponent bit of one f32 (bit 30 makes most values huge or infinite).
        begin, end = header[name]["data_offsets"]
        at = 8 + n + begin + 4 * rng.randrange(max((end - begin) // 4, 1)) + 3
        blob[at] ^= rng.choice([0x40, 0x7F, 0x80])
        desc = f"{kind}:{name}@{at}"
    elif kind == "st-truncate":
        cut = rng.choice([0, 4, 8, 8 + n - 1, 8 + n, rng.randrange(len(blob))])
        blob = blob[:cut]
        desc = f"{kind}@{cut}"
    elif kind == "st-offsets":
        offsets = header[name]["data_offsets"]
        i = rng.randrange(2)
        offsets[i] = rng.choice([offsets[i] + 1, offsets[i] - 1, -1, 2 ** 63 - 1, 2 ** 64, offsets[1 - i]])
        blob = bytearray(rewrite(header))
        desc = f"{kind}:{name}[{i}]={offsets[i]}"
    elif kind == "st-shape":
        shape = header[name]["shape"]
        choice = rng.choice(["swap", "huge", "negative", "zero", "extra"])
        if choice == "swap":
            shape.reverse()
        elif choice == "huge":
            shape[0] = rng.choice([2 ** 40, 2 ** 62, 2 ** 64])
        elif choice == "negative":
            shape[0] = -shape[0]
        elif choice == "zero":
            shape[0] = 0
        else:
            shape.append(1)
        blob = bytearray(rewrite(header))
        desc = f"{kind}:{name}:{choice}={shape}"
    else:
        header[name]["dtype"] = rng.choice(["BF16", "F16", "F64", "I8", "", 7])
        blob = bytearray(rewrite(header))
        desc = f"{kind}:{name}={header[name]['dtype']!r}"
    open(st_path, "wb").write(blob)
    return desc


# ---------- running ----------

def limit_memory(megabytes):
    def apply():
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def read_npy(path):
    data = open(path, "rb").read()
    if data[:6] != b"\x93NUMPY":
        return None
    header_len = struct.unpack("<H", data[8:10])[0] if data[6] == 1 else struct.unpack("<I", data[8:12])[0]
    start = (10 if data[6] == 1 else 12) + header_len
    values = array.array("f")
    values.frombytes(data[start:start + (len(data) - start) // 4 * 4])
    return values


OOM_PATTERN = re.compile(r"out of memory|cannot allocate|bad_alloc|failed to allocate|ENOMEM|cannot map", re.I)


def run(command, timeout, memory_mb, npy):
    env = dict(os.environ, SWIFT_BACKTRACE="enable=no")
    start = time.monotonic()
    try:
        proc = subprocess.run(command, capture_output=True, timeout=timeout, preexec_fn=limit_memory(memory_mb), env=env)
    except subprocess.TimeoutExpired:
        return "hang", f"no answer in {timeout}s", time.monotonic() - start
    elapsed = time.monotonic() - start
    stderr = proc.stderr.decode(errors="replace").strip()
    lines = [l for l in stderr.splitlines() if l.strip()]
    if proc.returncode < 0 or proc.returncode >= 128:
        sig = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
        outcome = "oom" if OOM_PATTERN.search(stderr) or sig == 9 else "crash"
        return outcome, f"signal {sig}: " + " | ".join(lines[-3:]), elapsed
    if proc.returncode != 0:
        if OOM_PATTERN.search(stderr) and "cannot map" not in stderr:
            return "oom", " | ".join(lines[-2:]), elapsed
        return ("clean-error" if len(lines) == 1 else "messy-error"), " | ".join(lines[:3]) or "(no message)", elapsed
    if npy:
        values = read_npy(npy) if os.path.exists(npy) else None
        if values is None:
            return "accepted-odd", "exit 0 but no readable .npy", elapsed
        bad = sum(1 for v in values if not math.isfinite(v))
        if bad:
            return "accepted-odd", f"{bad} of {len(values)} logits are not finite", elapsed
    return "accepted", "", elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moepack", default=None, help="moepack binary (default: .build/release, else .build/debug)")
    parser.add_argument("--count", type=int, default=300, help="mutations in all (each runs two commands)")
    parser.add_argument("--seconds", type=float, default=600, help="stop after this long")
    parser.add_argument("--timeout", type=float, default=30, help="seconds per run")
    parser.add_argument("--memory-mb", type=int, default=2048, help="address-space limit per run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bundle", default=os.path.join(ROOT, "Tests/Fuzz/corpus/bundle/dense-wint4.mpk"))
    parser.add_argument("--checkpoint", default=os.path.join(FIXTURES, "dense"))
    parser.add_argument("--no-sweep", action="store_true", help="skip the deterministic config.json sweep")
    parser.add_argument("--keep", default=os.path.join(ROOT, ".fuzz/campaign"), help="where reproducers go")
    args = parser.parse_args()
    moepack = args.moepack
    if moepack is None:
        for config in ("release", "debug"):
            candidate = os.path.join(ROOT, ".build", config, "moepack")
            if os.path.exists(candidate):
                moepack = candidate
                break
    if not moepack or not os.path.exists(moepack):
        sys.exit("mutate_campaign.py: no moepack binary; build it (swift build -c release) or pass --moepack")
    rng = random.Random(args.seed)
    base_bundle = open(args.bundle, "rb").read()
    os.makedirs(args.keep, exist_ok=True)
    counts = collections.Counter()
    findings = []
    slowest = 0.0
    start = time.monotonic()
    done = 0
    sweep = [] if args.no_sweep else config_sweep(args.checkpoint)
    with tempfile.TemporaryDirectory(prefix="moepack-mutate-") as tmp:
        while done < args.count and time.monotonic() - start < args.seconds:
            done += 1
            on_bundle = not sweep and done % 2 == 1
            case = os.path.join(tmp, f"case{done}")
            npy = os.path.join(tmp, "out.npy")
            if on_bundle:
                desc, blob = mutate_bundle(base_bundle, rng)
                model = case + ".mpk"
                open(model, "wb").write(blob)
                commands = [("bundle inspect --verify", [moepack, "inspect", model, "--verify"], None)]
            else:
                shutil.copytree(args.checkpoint, case, ignore=shutil.ignore_patterns("golden"))
                desc = apply_config_edit(case, sweep.pop(0)) if sweep else mutate_checkpoint(case, rng)
                model = case
                commands = [("checkpoint inspect", [moepack, "inspect", model], None)]
            commands.append((("bundle" if on_bundle else "checkpoint") + " logits",
                             [moepack, "logits", model, "--tokens", "1,2,3", "--output", npy, "--threads", "1"], npy))
            for label, command, out in commands:
                if out and os.path.exists(out):
                    os.remove(out)
                outcome, message, elapsed = run(command, args.timeout, args.memory_mb, out)
                slowest = max(slowest, elapsed)
                if on_bundle and outcome == "accepted" and label.endswith("--verify") and unchecked(desc, base_bundle, blob):
                    outcome, message = "accepted-odd", "a change no checksum covers was accepted by --verify"
                counts[(label, outcome)] += 1
                if outcome in BAD or outcome == "messy-error":
                    keep = os.path.join(args.keep, f"{done:04d}-{label.replace(' ', '-')}-{outcome}")
                    if os.path.isdir(model):
                        shutil.copytree(model, keep, dirs_exist_ok=True)
                    else:
                        shutil.copy(model, keep + ".mpk")
                    findings.append((outcome, label, desc, message[:160], os.path.relpath(keep, ROOT)))
            if os.path.isdir(case):
                shutil.rmtree(case)
            elif os.path.exists(case + ".mpk"):
                os.remove(case + ".mpk")
    outcomes = ["clean-error", "messy-error", "crash", "hang", "oom", "accepted", "accepted-odd"]
    labels = sorted({label for label, _ in counts})
    print(f"{done} mutations, {sum(counts.values())} runs in {time.monotonic() - start:.0f}s "
          f"(slowest run {slowest:.1f}s; limits {args.timeout:.0f}s, {args.memory_mb} MB; {os.path.relpath(moepack, ROOT)})")
    print(f"{'command':26}" + "".join(f"{o:>13}" for o in outcomes))
    for label in labels:
        print(f"{label:26}" + "".join(f"{counts[(label, o)]:>13}" for o in outcomes))
    print(f"{'all':26}" + "".join(f"{sum(counts[(l, o)] for l in labels):>13}" for o in outcomes))
    if findings:
        print("\nfindings (reproducers kept):")
        for outcome, label, desc, message, keep in findings:
            print(f"  {outcome:12} {label:24} {desc}\n  {'':12} {message}\n  {'':12} {keep}")
    sys.exit(1 if any(f[0] in BAD for f in findings) else 0)


if __name__ == "__main__":
    main()
