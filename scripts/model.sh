#!/bin/sh
# Run the tailer's model-based test (agent/tests/it/model_moto.rs) on many seeds.
# Usage: scripts/model.sh N [FIRST] [OPS]
#   N      how many seeds (default 50)
#   FIRST  first seed (default 1000; CI runs the seeds in CI_SEEDS)
#   OPS    operations per seed (default 24)
# A failing seed prints its logrotate scheme and operation list; re-run it
# alone with TAILRACE_MODEL_SEEDS=<seed>, and add it to CI_SEEDS once fixed.
set -eu
n=${1:-50}
first=${2:-1000}
ops=${3:-24}
last=$((first + n - 1))
cd "$(dirname "$0")/.."
TAILRACE_MODEL_SEEDS="$first-$last" TAILRACE_MODEL_OPS="$ops" \
    cargo test -p tailrace-agent --test it model_moto:: -- --nocapture
