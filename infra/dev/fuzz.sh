#!/usr/bin/env bash
# Fuzzes the parsers of flashgate-core (core/fuzz, cargo-fuzz and libFuzzer): builds every
# target, then runs each for FUZZ_SECONDS from its committed seeds (core/fuzz/corpus/<t>/)
# plus what earlier runs on this machine found. Exits non-zero on any crash or failed
# property, after printing the input that caused it.
#
#   FUZZ_SECONDS=10      seconds per target (./dev test); e.g. 600 for a longer hunt
#   FUZZ_TARGETS="jwt sign"   some targets only (default: all of core/fuzz/Cargo.toml)
#   FUZZ_SANITIZER=address    or none (faster; core itself has no unsafe code)
#   FLASHGATE_FUZZ_DIR   build dir, working corpus and crash inputs; outside the checkout
#                        (default ~/.cache/flashgate/fuzz), so a fresh clone reuses the build
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../versions.env
. "$ROOT/infra/versions.env"
. "$ROOT/infra/dev/paths.sh"

SECONDS_EACH=${FUZZ_SECONDS:-10}
SANITIZER=${FUZZ_SANITIZER:-address}
WORK=${FLASHGATE_FUZZ_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flashgate/fuzz}
FUZZ=$ROOT/core/fuzz
say() { printf '[fuzz] %s\n' "$*"; }

[ -x "$FG_CARGO_FUZZ_ROOT/bin/cargo-fuzz" ] || { say "cargo-fuzz $CARGO_FUZZ_VERSION is missing: run ./dev setup"; exit 1; }
export PATH="$FG_CARGO_FUZZ_ROOT/bin:$PATH"
# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module, …) to rustc:
# rustup's stable compiler accepts them with this, as the edge build does for build-std.
export RUSTC_BOOTSTRAP=1
targets=${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' "$FUZZ/Cargo.toml" | grep -vx flashgate-core-fuzz)}
# -a: debug assertions and overflow checks, so an arithmetic overflow is a finding too.
flags=(-a --sanitizer "$SANITIZER" --target-dir "$WORK/target" --fuzz-dir "$FUZZ")
mkdir -p "$WORK/logs"

started=$(date +%s)
say "building ${targets//$'\n'/ } (sanitizer $SANITIZER, in $WORK)"
if ! (cd "$FUZZ" && cargo fuzz build "${flags[@]}") >"$WORK/logs/build.log" 2>&1; then
  tail -40 "$WORK/logs/build.log"
  say "build failed"
  exit 1
fi
say "built in $(($(date +%s) - started)) s"

failed=()
for t in $targets; do
  corpus="$WORK/corpus/$t" artifacts="$WORK/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  log="$WORK/logs/$t.log"
  # New inputs go to the first corpus dir (outside the checkout); the seeds are only read.
  if (cd "$FUZZ" && cargo fuzz run "${flags[@]}" "$t" "$corpus" "$FUZZ/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$artifacts/") >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    say "$t: ok, ${runs:-?} runs in ${SECONDS_EACH} s, corpus $(find "$corpus" -type f | wc -l) inputs"
  else
    failed+=("$t")
    grep -E 'panicked at|assertion|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY' "$log" | head -20 || true
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [ -n "$crash" ] && [ -f "$crash" ]; then
      say "$t: FAILED on $crash (base64: $(base64 -w0 "$crash"))"
      say "reproduce: (cd core/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -a $t $crash)"
    else
      tail -30 "$log"
      say "$t: FAILED (log: $log)"
    fi
  fi
done
say "done in $(($(date +%s) - started)) s"
[ ${#failed[@]} -eq 0 ] || { say "failed: ${failed[*]}"; exit 1; }
