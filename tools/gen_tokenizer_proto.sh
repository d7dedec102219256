#!/usr/bin/env bash
# Regenerates Sources/MoETokenizer/Generated/sentencepiece_model.pb.swift from
# tools/proto/sentencepiece_model.proto. Needs protoc and a protoc-gen-swift built from
# swift-protobuf 1.39.0 (swift build -c release --product protoc-gen-swift); pass its path
# as PROTOC_GEN_SWIFT. Maintainers run this by hand; CI uses the committed output.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
plugin="${PROTOC_GEN_SWIFT:-protoc-gen-swift}"
protoc --plugin=protoc-gen-swift="$plugin" \
  --swift_out="$root/Sources/MoETokenizer/Generated" \
  --swift_opt=Visibility=Internal \
  -I "$root/tools/proto" "$root/tools/proto/sentencepiece_model.proto"
