#!/usr/bin/env python3
"""Reads a GGUF file that `moepack export --to gguf` wrote with the `gguf` package from PyPI
(llama.cpp's own reader) and compares it with what moepack expects.

    python3 tools/gguf_check.py MODEL.gguf EXPECTED.json

EXPECTED.json (written by Tests/MoEExportTests/GGUFPackageTests.swift):
    {"metadata": {"key": value, ...},            every key must be present with this value
     "required_keys": ["key", ...],             keys that must be present (any value)
     "tensors": {"name": {"type": "Q4_0", "shape": [n, rows, cols], "npy": "file.npy",
                          "tolerance": 0 or a bound relative to each row's largest weight}}}
The .npy files hold moepack's own dequantisation of the bundle tensors (experts stacked in
the export's order). Every tensor of the file must be listed, and every listed tensor must
dequantize (gguf.quants.dequantize) to its .npy exactly (tolerance 0) or within the bound.
Prints one JSON line with the counts; exit status 1 on any difference.
"""
import json
import os
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize


def field_value(field):
    """A metadata field as a Python value (strings decoded, arrays as lists)."""
    types = field.types
    if types[0] == GGUFValueType.ARRAY:
        if types[1] == GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if types[0] == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]].tolist()[0]


def main():
    path, expected_path = sys.argv[1], sys.argv[2]
    expected = json.load(open(expected_path))
    base = os.path.dirname(expected_path)
    reader = GGUFReader(path)
    failures = []

    fields = {name: field_value(f) for name, f in reader.fields.items()}
    for key in expected.get("required_keys", []):
        if key not in fields:
            failures.append(f"metadata key {key} missing")
    for key, want in expected.get("metadata", {}).items():
        got = fields.get(key)
        if isinstance(want, float) and isinstance(got, float):
            ok = abs(got - want) <= 1e-6 * max(1.0, abs(want))
        else:
            ok = got == want
        if not ok:
            failures.append(f"metadata {key}: {got!r}, expected {want!r}")

    listed = expected["tensors"]
    seen = set()
    exact = bounded = 0
    worst = 0.0
    for t in reader.tensors:
        seen.add(t.name)
        spec = listed.get(t.name)
        if spec is None:
            failures.append(f"tensor {t.name} is not expected")
            continue
        if t.tensor_type.name != spec["type"]:
            failures.append(f"tensor {t.name}: type {t.tensor_type.name}, expected {spec['type']}")
            continue
        values = dequantize(t.data, t.tensor_type).astype(np.float32)
        want = np.load(os.path.join(base, spec["npy"])).astype(np.float32)
        values = values.reshape(want.shape) if values.size == want.size else values
        if list(values.shape) != spec["shape"] or values.shape != want.shape:
            failures.append(f"tensor {t.name}: shape {list(values.shape)}, expected {spec['shape']}")
            continue
        tol = spec.get("tolerance", 0)
        if tol == 0:
            if not np.array_equal(values, want):
                diff = np.abs(values - want).max()
                failures.append(f"tensor {t.name}: differs by up to {diff:g} (expected exact)")
            else:
                exact += 1
        else:
            rows = want.reshape(-1, want.shape[-1])
            row_max = np.abs(rows).max(axis=1, keepdims=True)
            err = np.abs(values.reshape(rows.shape) - rows)
            rel = float((err / np.where(row_max > 0, row_max, 1)).max())
            worst = max(worst, rel)
            if rel > tol:
                failures.append(f"tensor {t.name}: error {rel:g} of the row's largest weight, bound {tol:g}")
            else:
                bounded += 1
    for name in listed:
        if name not in seen:
            failures.append(f"tensor {name} missing")

    print(json.dumps({"tensors": len(reader.tensors), "exact": exact, "within_bound": bounded,
                      "worst_relative_error": worst, "metadata_keys": len(fields), "failures": failures[:20]}))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
