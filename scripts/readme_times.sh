#!/usr/bin/env bash
# The README's quick-start times, measured the way a user meets them: the smoke preset with an
# empty cache and with a warm one (three runs each, wall clock around the console script), and
# `kdrun --help` (hyperfine, when installed). Run it with nothing else on the machine.
#   scripts/readme_times.sh [WORKDIR]
set -euo pipefail
KDRUN=$(realpath "${KDRUN:-$(dirname "$0")/../.venv/bin/kdrun}")
WORK=$(realpath -m "${1:-$(mktemp -d)}")
mkdir -p "$WORK" && cd "$WORK"
export KDRUN_CACHE_DIR=$WORK/cache
wall() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
for i in 1 2 3; do
  rm -rf "$KDRUN_CACHE_DIR"
  echo "smoke, empty cache, run $i: $(wall "$KDRUN" experiment=smoke hydra.run.dir="$WORK/cold$i") s"
done
for i in 1 2 3; do
  echo "smoke, warm cache, run $i: $(wall "$KDRUN" experiment=smoke hydra.run.dir="$WORK/warm$i") s"
done
if command -v hyperfine >/dev/null; then
  hyperfine -N -w 2 -r 10 "$KDRUN --help" | grep -E "Time|Range"
else
  echo "kdrun --help: $(wall "$KDRUN" --help) s (one run; install hyperfine for mean ± sd)"
fi
