#!/usr/bin/env bash
# KL against size on a checkpoint: size-target plans at several bits/weight next to uniform
# profiles and pruning alone, all scored against the checkpoint on held-out text.
#
#   tools/size_curve.sh [MODEL_DIR] [WORK_DIR]     (default: the built-in tiny model, /tmp/size-curve)
#
# MODEL_DIR needs calibration.txt and heldout.txt. Prints one line per bundle:
# name, bits/weight (stored bytes × 8 / checkpoint parameters), KL, top-1, perplexity.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:-$root/Sources/moepack/Resources/tiny-moe}"
work="${2:-/tmp/size-curve}"
moepack="${MOEPACK:-$root/.build/release/moepack}"
mkdir -p "$work"
cd "$work"
"$moepack" calibrate "$model" --data "$model/calibration.txt" --output stats.json > /dev/null
"$moepack" eval "$model" --data "$model/heldout.txt" --save-reference ref.mpkref > /dev/null
score() {  # name bundle
  local raw kl top ppl
  raw=$("$moepack" inspect "$2" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(c["bytes"] for c in d["byClassAndFormat"]))')
  out=$("$moepack" eval "$2" --data "$model/heldout.txt" --reference ref.mpkref --kv-cache f32)
  kl=$(echo "$out" | awk '/mean KL/ {print $3}'); top=$(echo "$out" | awk '/top-1/ {print $3}'); ppl=$(echo "$out" | awk '/^perplexity/ {print $2}')
  printf '%-22s %8.3f  KL %-10s top-1 %-8s ppl %s\n' "$1" "$(python3 -c "print($raw*8/$TOTAL)")" "$kl" "$top" "$ppl"
}
TOTAL=$("$moepack" inspect "$model" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["parametersTotal"])')
for p in wint8 wint4 wint4-all wint3 wint2; do
  "$moepack" convert "$model" --profile $p --calibration stats.json --output $p.mpk > /dev/null
  score $p $p.mpk
done
for r in 0.25 0.5 0.75; do
  "$moepack" convert "$model" --profile wint8 --calibration stats.json --prune-ratio $r --output prune-$r.mpk > /dev/null
  score "wint8 prune $r" prune-$r.mpk
done
for bpw in ${BPW:-2.5 3.0 3.5 4.0 4.5 5.0 6.0}; do
  if "$moepack" convert "$model" --calibration stats.json --data "$model/calibration.txt" --target-bpw $bpw --output plan-$bpw.mpk > /dev/null 2> plan-$bpw.err; then
    score "plan $bpw" plan-$bpw.mpk
  else
    echo "plan $bpw: $(tail -1 plan-$bpw.err)"
  fi
done
