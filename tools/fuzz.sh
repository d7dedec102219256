#!/usr/bin/env bash
# Coverage-guided fuzzing of moepack's parsers with libFuzzer (see docs/fuzzing.md).
#
#   tools/fuzz.sh TARGET SECONDS     fuzz one target (tools/fuzz.sh list: the targets)
#   tools/fuzz.sh all SECONDS        each target in turn, SECONDS each
#
# Builds moepack-fuzz with the address sanitizer and coverage instrumentation into
# .build-fuzz (debug: quicker to build, and most time goes to the optimized Foundation parsers
# anyway; FUZZ_CONFIG=release for faster runs), links libFuzzer in, and runs
# it on a working corpus in .fuzz/corpus/TARGET seeded from Tests/Fuzz/corpus/TARGET and
# Tests/Fuzz/regressions/TARGET. Reproducers of crashes, timeouts and OOMs go to
# .fuzz/crashes/TARGET (both outside git). Prints executions and coverage (libFuzzer's cov/ft)
# per target; exits non-zero when a target crashed.
#
# Environment: FUZZ_KEEP_GOING=1 goes on after a finding (libFuzzer's fork mode) so one known
# crash does not end a long run; FUZZ_TIMEOUT (seconds per input, default 10); FUZZ_RSS_MB
# (default 2048); FUZZ_SKIP_BUILD=1 uses the last build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

targets=(safetensors config bundle manifest tokenizer-model tokenizer-config chat-template completion-request chat-request)
usage() { echo "usage: tools/fuzz.sh TARGET|all SECONDS   (targets: ${targets[*]})" >&2; exit 2; }
[ "${1:-}" = list ] && { printf '%s\n' "${targets[@]}"; exit 0; }
[ $# -eq 2 ] || usage
[[ "$2" =~ ^[0-9]+$ ]] || usage
if [ "$1" = all ]; then selected=("${targets[@]}"); else
  [[ " ${targets[*]} " == *" $1 "* ]] || usage
  selected=("$1")
fi
seconds=$2
config="${FUZZ_CONFIG:-debug}"
scratch="$root/.build-fuzz"

# libFuzzer without its main: the driver keeps its own and calls LLVMFuzzerRunDriver.
swiftc_path="$(readlink -f "$(command -v swiftc)")"
fuzzer_lib="$(ls "$(dirname "$swiftc_path")"/../lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-"$(uname -m)".a 2>/dev/null | head -1)"
[ -n "$fuzzer_lib" ] || { echo "tools/fuzz.sh: libclang_rt.fuzzer_no_main not found next to $swiftc_path" >&2; exit 2; }

build_flags=(-c "$config" --scratch-path "$scratch" --product moepack-fuzz
  -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp
  -Xcc -fsanitize=address -Xcc -fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp
  -Xlinker "$fuzzer_lib" -Xlinker -u -Xlinker LLVMFuzzerRunDriver -Xlinker -lstdc++)
if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
  start=$SECONDS
  swift build "${build_flags[@]}" 2>&1 | grep -E "error|warning: unable|Compiling moepack|Build" | grep -v "^warning: 'swift-distributed" || true
  echo "fuzz build ($config, address sanitizer + coverage): $((SECONDS - start)) s"
fi
binary="$scratch/$config/moepack-fuzz"
[ -x "$binary" ] || { echo "tools/fuzz.sh: the fuzz build failed (no $binary)" >&2; exit 1; }

export SWIFT_BACKTRACE=enable=no       # libFuzzer handles the crash signals itself
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}"
failed=()
mkdir -p "$root/.fuzz"
summary="$root/.fuzz/summary.txt"   # the table of the last run
printf '%-20s %12s %8s %8s %8s %s\n' target execs exec/s cov ft findings > "$summary"
for target in "${selected[@]}"; do
  work="$root/.fuzz/corpus/$target" crashes="$root/.fuzz/crashes/$target"
  mkdir -p "$work" "$crashes"
  before=$(ls "$crashes" | wc -l)
  log="$root/.fuzz/$target.log"
  flags=(-max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}"
         -malloc_limit_mb="${FUZZ_RSS_MB:-2048}" -artifact_prefix="$crashes/" -print_final_stats=1 -detect_leaks=0)
  [ "${FUZZ_KEEP_GOING:-0}" = 1 ] && flags+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  echo "== $target: ${seconds}s"
  status=0
  "$binary" "$target" "${flags[@]}" "$work" "Tests/Fuzz/corpus/$target" "Tests/Fuzz/regressions/$target" > "$log" 2>&1 || status=$?
  # Last status line: "#N ... cov: C ft: F ... exec/s: E" (fork mode: "#N: cov: C ft: F ...").
  last=$(grep -E '^#[0-9]+:?[[:space:]].*cov: ' "$log" | tail -1 || true)
  execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  [ -n "$execs" ] || execs=$(echo "$last" | grep -oE '^#[0-9]+' | tr -d '#' || true)
  cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+' || true)
  ft=$(echo "$last" | grep -oE 'ft: [0-9]+' | grep -oE '[0-9]+' || true)
  rate=$(grep -oE 'stat::average_exec_per_sec: +[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  [ -n "$rate" ] || rate=$(echo "$last" | grep -oE 'exec/s: [0-9]+' | grep -oE '[0-9]+' || true)
  new=$(( $(ls "$crashes" | wc -l) - before ))
  echo "$last"
  printf '%-20s %12s %8s %8s %8s %s\n' "$target" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$new" >> "$summary"
  if [ "$status" -ne 0 ] || [ "$new" -gt 0 ]; then
    failed+=("$target")
    grep -E 'ERROR: |SUMMARY: |Fatal error|fuzz invariant|Test unit written' "$log" | head -8 || true
    echo "$target: finding (exit $status); reproducers in ${crashes#$root/}, log in ${log#$root/}"
  fi
done
echo
cat "$summary"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (replay one: $binary TARGET FILE; add it to Tests/Fuzz/regressions/TARGET once fixed)" >&2
  exit 1
fi
