#!/usr/bin/env bash
# Fuzz tailrace's parsers of hostile input (issue #6) with cargo-fuzz/libFuzzer.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# Default: every target (`cargo fuzz list` in fuzz/) for 30 s each, one after
# the other (CI: about 6 × 30 s plus the build). For a longer hunt give more
# seconds, e.g. `scripts/fuzz.sh 1800 logformat_parse`, or run one target by
# hand on all cores:
#   cd fuzz && cargo fuzz run -s none logformat_parse target/work-corpus/logformat_parse \
#     corpus/logformat_parse -- -jobs=2 -workers=2 -max_total_time=3600
#
# Inputs: the committed seeds fuzz/corpus/<target>/ and earlier finds
# fuzz/regressions/<target>/ are read, never written; what the fuzzer learns
# goes to fuzz/target/work-corpus/<target>/ (kept between runs on a machine,
# not committed). A crash, timeout or out-of-memory is minimized when
# possible and copied to fuzz/regressions/<target>/ (commit it, fix the bug:
# `cargo test --workspace` replays that directory), and the script exits 1.
#
# Toolchain, as found on this project's machines (rustc 1.95, cargo-fuzz
# 0.13.2): with `--sanitizer none` cargo-fuzz passes no -Z flag, so the
# stable toolchain builds the targets as is; RUSTC_BOOTSTRAP is not needed
# (and setting it only forces a full rebuild). AddressSanitizer
# (`-s address`, cargo-fuzz's default) needs nightly; the code under test is
# safe Rust (tailrace-wire forbids unsafe), so the sanitizer adds little and
# costs speed: not used here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT/fuzz"

secs=${1:-30}
shift || true
case "$secs" in '' | *[!0-9]*)
  echo "usage: $0 [seconds-per-target] [target...]" >&2
  exit 2
  ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${#targets[@]} fuzz targets (sanitizer: none)"
cargo fuzz build -s none

found=()
for t in "${targets[@]}"; do
  work="target/work-corpus/$t"
  artifacts="artifacts/$t"
  mkdir -p "$work" "$artifacts" "regressions/$t"
  seeds=("corpus/$t")
  if compgen -G "regressions/$t/*" >/dev/null; then seeds+=("regressions/$t"); fi
  before=$(find "$artifacts" -type f | sort)
  echo "== $t: ${secs}s"
  # -timeout: one input taking 10 s is a hang (quadratic time or worse);
  # -rss_limit_mb: unbounded allocation; -max_len: long enough for long lines
  # and several-record inputs. The last line of libFuzzer's output is the
  # execution count.
  status=0
  cargo fuzz run -s none "$t" "$work" "${seeds[@]}" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" \
    >"target/$t.log" 2>&1 || status=$?
  grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "target/$t.log" || tail -n 5 "target/$t.log"
  new=$(comm -13 <(echo "$before") <(find "$artifacts" -type f | sort) | grep -v '^$' || true)
  if [ "$status" -ne 0 ] || [ -n "$new" ]; then
    echo "!! $t failed (exit $status); log: fuzz/target/$t.log"
    grep -E -m 5 'panicked|ERROR: libFuzzer|SUMMARY' "target/$t.log" || true
    for a in $new; do
      name=$(basename "$a")
      case "$name" in
        crash-*)
          # Smallest input that still panics the same way.
          if cargo fuzz tmin -s none "$t" "$a" -- -runs=2000 >"target/$t.tmin.log" 2>&1; then
            min=$(ls -t "$artifacts"/minimized-from-* 2>/dev/null | head -n 1 || true)
            [ -n "$min" ] && a=$min
          fi
          ;;
      esac
      cp "$a" "regressions/$t/$name"
      echo "   -> fuzz/regressions/$t/$name"
    done
    found+=("$t")
  fi
done

if [ ${#found[@]} -gt 0 ]; then
  echo "== fuzzing found problems in: ${found[*]}"
  exit 1
fi
echo "== fuzzing: no crash, hang or out-of-memory in ${#targets[@]} targets × ${secs}s"
