#!/usr/bin/env bash
# Kill the real daemon with SIGKILL thousands of times while tasks and commands flow, checking
# after every tenth restart that nothing was lost, doubled or misplaced (tests/durability.rs).
#   scripts/crash-loop.sh [KILLS_PER_SEED] [SEEDS]     default: 1000 kills, 5 seeds
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-1000}
seeds=${2:-5}
cargo build --release --quiet
for seed in $(seq 1 "$seeds"); do
  echo "seed $seed: $kills kills"
  AGENTPLANE_CRASH_KILLS=$kills AGENTPLANE_CRASH_SEED=$((seed * 7919)) \
    cargo test --release --quiet --test durability kill_9 -- --nocapture
done
echo "$((kills * seeds)) kills, nothing lost"
