#!/usr/bin/env bash
# Time one 4-job smoke sweep three ways on a warm cache (teacher, soft labels and baselines
# cached by a first, untimed sweep): serial, joblib with 2 jobs, and Slurm (kdrun_slurm preset,
# one CPU per job, on the cluster of $SLURM_CONF, e.g. `eval "$(scripts/local_slurm.sh start)"`).
#   scripts/time_sweeps.sh [WORKDIR] [ROUNDS]     # prints one line per sweep
# For Slurm it also prints each task's queue wait (sacct Submit->Start) and the job's wall time
# beyond kdrun's own timing.total (interpreter, imports, Hydra, submitit).
set -euo pipefail
KDRUN=${KDRUN:-$(dirname "$0")/../.venv/bin/kdrun}
KDRUN=$(realpath "$KDRUN")
WORK=$(realpath -m "${1:-/tmp/kdrun-time-sweeps}")
ROUNDS=${2:-2}
SWEEP=(-m experiment=smoke shots=1,2 loss.alpha=0.5,0.9)
declare -A LAUNCHER=(
  [serial]=""
  [joblib2]="hydra/launcher=joblib hydra.launcher.n_jobs=2"
  [slurm]="hydra/launcher=kdrun_slurm hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=2"
)
mkdir -p "$WORK" && cd "$WORK"
export KDRUN_CACHE_DIR=$WORK/cache
"$KDRUN" "${SWEEP[@]}" hydra.sweep.dir=warmup >/dev/null 2>&1 # fills the cache, not timed

for round in $(seq "$ROUNDS"); do
  for way in serial joblib2 slurm; do
    dir=$way-$round
    rm -rf "$dir"
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086  # the launcher overrides are words
    "$KDRUN" "${SWEEP[@]}" ${LAUNCHER[$way]} hydra.sweep.dir="$dir" >"$dir.log" 2>&1
    t1=$(date +%s.%N)
    jobs=$(python3 -c "import json,sys; print(' '.join(f\"{json.load(open(f'$dir/{j}/metrics.json'))['timing']['total']:.1f}\" for j in range(4)))")
    printf '%-8s round %d: wall %6.1f s; kdrun timing.total per job: %s s\n' "$way" "$round" "$(echo "$t1 - $t0" | bc)" "$jobs"
    if [ "$way" = slurm ]; then
      array=$(basename "$(ls -d "$dir"/.submitit/*_0)" _0)
      sacct -n -X -P -o JobID,Submit,Start,End -j "$array" | python3 -c "
import json, sys
from datetime import datetime as dt
t = lambda s: dt.fromisoformat(s).timestamp()
for line in sorted(sys.stdin):
    jid, sub, start, end = line.strip().split('|')
    task = int(jid.split('_')[1])
    total = json.load(open(f'$dir/{task}/metrics.json'))['timing']['total']
    print(f'    task {task}: queued {t(start) - t(sub):4.0f} s, ran {t(end) - t(start):4.0f} s, '
          f'of which outside kdrun timing.total {t(end) - t(start) - total:4.1f} s')
"
    fi
  done
done
