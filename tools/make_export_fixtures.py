#!/usr/bin/env python3
"""Golden outputs of the `compressed-tensors` package (PyPI) for moepack's compressed-tensors
export: symmetric integer codes and scales packed by its pack-quantized compressor, and the
weights its decompressor decodes from them. Needs torch and compressed-tensors (tools/
requirements.txt plus `pip install compressed-tensors`); CI only reads the committed JSON.

    python3 tools/make_export_fixtures.py      # writes Tests/Fixtures/export/compressed_tensors_pack.json
"""
import json
import os

import compressed_tensors
import torch
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "export", "compressed_tensors_pack.json")


def case(name, rows, cols, bits, group, seed):
    g = torch.Generator().manual_seed(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    codes = torch.randint(lo, hi + 1, (rows, cols), generator=g, dtype=torch.int64)
    per_row = cols // group if group else 1
    # f16-representable scales, some negative (moepack's 3- and 2-bit scales are signed).
    scales = (torch.rand(rows, per_row, generator=g) * 0.02 + 1e-3).to(torch.float16).to(torch.float32)
    scales[0, 0] = -scales[0, 0]
    expanded = scales.repeat_interleave(group, dim=1) if group else scales
    weight = codes.to(torch.float32) * expanded
    args = QuantizationArgs(num_bits=bits, type="int", symmetric=True,
                            strategy="group" if group else "channel", group_size=group)
    scheme = QuantizationScheme(targets=["Linear"], weights=args)
    state = {"weight": weight, "weight_scale": scales}
    packed = PackedQuantizationCompressor.compress(state, scheme)
    back = PackedQuantizationCompressor.decompress(dict(packed), scheme)["weight"]
    assert torch.equal(back, weight), name
    back16 = PackedQuantizationCompressor.decompress(
        {**packed, "weight_scale": scales.to(torch.float16)}, scheme)["weight"].to(torch.float32)
    return {
        "name": name, "rows": rows, "cols": cols, "bits": bits, "group": group or 0,
        "codes": codes.flatten().tolist(), "scales": scales.flatten().tolist(),
        "weight_packed": packed["weight_packed"].flatten().tolist(),
        "packed_shape": list(packed["weight_packed"].shape),
        "weight_shape": packed["weight_shape"].tolist(),
        "decompressed_f32": back.flatten().tolist(),
        "decompressed_f16_scales": back16.flatten().tolist(),
    }


def main():
    cases = [case("int4 group 32", 4, 64, 4, 32, 1), case("int4 group 128", 3, 256, 4, 128, 2),
             case("int8 channel, cols not a multiple of 4", 5, 42, 8, None, 3)]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"compressed_tensors": compressed_tensors.__version__, "torch": torch.__version__, "cases": cases}, f)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
