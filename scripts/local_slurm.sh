#!/usr/bin/env bash
# A one-node Slurm cluster inside this machine, for the slow tier and for trying
# `hydra/launcher=submitit_slurm` without a cluster (Debian's Slurm 22.05 packages):
#
#   scripts/local_slurm.sh install        # apt-get install the packages (root)
#   eval "$(scripts/local_slurm.sh start)" # start it; prints `export SLURM_CONF=...`
#   scripts/local_slurm.sh status          # sinfo and squeue
#   scripts/local_slurm.sh stop            # stop the daemons, delete the directory
#
# Everything lives in one directory (KDRUN_SLURM_DIR, default /tmp/kdrun-slurm): a private
# munged (or the one running), a private MariaDB and slurmdbd (submitit asks `sacct` for the
# state of a job; without accounting a cancelled job reads as "UNKNOWN" and its sweep waits
# forever), slurmctld and slurmd with a generated slurm.conf (proctrack/linuxproc, task/none,
# one partition `debug`, this node's real CPUs and memory from `slurmd -C`). Ports are picked
# free, so it does not collide with a real Slurm here. `start` waits until the node is idle and
# `sacct` answers; it exits non-zero with the reason (and the daemon's log tail) otherwise.
set -euo pipefail

DIR=${KDRUN_SLURM_DIR:-/tmp/kdrun-slurm}
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
COMMANDS=(munged mungekey mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sinfo sacct)
START_TIMEOUT_S=${KDRUN_SLURM_START_TIMEOUT_S:-90}

say() { echo "local_slurm: $*" >&2; }
die() {
  say "$*"
  exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Wait until "$@" succeeds; on timeout name what failed and show the log that says why.
wait_for() {
  local what=$1 logfile=$2
  shift 2
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      say "$what did not come up within ${START_TIMEOUT_S}s; the end of $logfile:"
      tail -n 20 "$logfile" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.5
  done
}

install() {
  if (check_commands) 2>/dev/null; then
    say "the packages are installed"
    return
  fi
  command -v apt-get >/dev/null || die "no apt-get here: install ${PACKAGES[*]} by hand"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}" >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}" >&2; }
}

check_commands() {
  local missing=()
  for c in "${COMMANDS[@]}"; do command -v "$c" >/dev/null || missing+=("$c"); done
  ((${#missing[@]} == 0)) ||
    die "missing ${missing[*]}: run \`scripts/local_slurm.sh install\` (apt-get install ${PACKAGES[*]})"
}

node_line() {
  # slurmd -C: "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105" then "UpTime=...".
  slurmd -C | head -n 1
}

write_configs() {
  local node cpus mem host
  node=$(node_line)
  host=$(sed -E 's/^NodeName=([^ ]+).*/\1/' <<<"$node")
  cpus=$(sed -E 's/.*CPUs=([0-9]+).*/\1/' <<<"$node")
  mem=$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<<"$node")
  cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=kdrun
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((mem / cpus))
ReturnToService=2
# submitit ignores SIGTERM (it waits for a preemption signal), so scancel lands after KillWait.
KillWait=2
MinJobAge=300
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
JobAcctGatherType=jobacct_gather/none
$node
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/etc/slurmdbd.conf"
}

# Slurm's clients find munged only at its default socket (AuthInfo is not read by all of
# them), so use a munged already running there, or start one with the system's key.
start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "using the munged already running"
    return
  fi
  [ -f /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key >&2
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  munged --force --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log"
  wait_for munged "$DIR/log/munged.log" bash -c 'munge -n | unmunge'
}

start() {
  check_commands
  [ ! -e "$DIR/run" ] || die "$DIR/run exists: a cluster may be running; \`$0 stop\` first"
  mkdir -p "$DIR"/{etc,db,state,spool,log,run}
  CTLD_PORT=$(free_port) SLURMD_PORT=$(free_port) DBD_PORT=$(free_port) DB_PORT=$(free_port)

  start_munge
  mariadb-install-db --no-defaults --datadir="$DIR/db" --user=root \
    --auth-root-authentication-method=normal --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 ||
    { tail -n 20 "$DIR/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
  mariadbd --no-defaults --datadir="$DIR/db" --socket="$DIR/run/mariadb.sock" --user=root \
    --bind-address=127.0.0.1 --port="$DB_PORT" --pid-file="$DIR/run/mariadbd.pid" \
    --log-error="$DIR/log/mariadb.log" --innodb-buffer-pool-size=32M >/dev/null 2>&1 &
  wait_for mariadbd "$DIR/log/mariadb.log" mariadb --no-defaults --socket="$DIR/run/mariadb.sock" -u root -e "select 1"
  mariadb --no-defaults --socket="$DIR/run/mariadb.sock" -u root -e \
    "CREATE USER 'slurm'@'127.0.0.1'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

  write_configs
  export SLURM_CONF=$DIR/etc/slurm.conf
  slurmdbd # reads slurmdbd.conf next to $SLURM_CONF
  wait_for slurmdbd "$DIR/log/slurmdbd.log" sacctmgr -i list cluster
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF"
  wait_for "slurmd (node idle)" "$DIR/log/slurmd.log" bash -c 'sinfo -h -o %t | grep -qx idle'
  wait_for "sacct" "$DIR/log/slurmdbd.log" sacct -n -X -S now
  printf 'export SLURM_CONF=%q\n' "$SLURM_CONF" | tee "$DIR/env"
  say "up: $(sinfo -h -o '%P %D node(s) %c CPUs %m MB %t'); env in $DIR/env"
}

stop() {
  local pid name
  if [ -f "$DIR/etc/slurm.conf" ]; then # cancel this cluster's jobs while slurmd can end them
    export SLURM_CONF=$DIR/etc/slurm.conf
    squeue -h -o %A 2>/dev/null | xargs -r scancel 2>/dev/null || true
    for _ in $(seq 50); do
      [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  local pids=() alive=()
  for name in slurmd slurmctld slurmdbd mariadbd munged; do # all at once: each takes seconds
    pid=$(cat "$DIR/run/$name.pid" 2>/dev/null) && kill "$pid" 2>/dev/null && pids+=("$pid")
  done
  for _ in $(seq 100); do
    alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    ((${#alive[@]} == 0)) && break
    sleep 0.1
  done
  for pid in "${alive[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
  say "stopped; removed $DIR"
}

status() {
  export SLURM_CONF=$DIR/etc/slurm.conf
  sinfo && squeue
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
status) status ;;
*) die "usage: $0 install|start|stop|status (directory: KDRUN_SLURM_DIR, default /tmp/kdrun-slurm)" ;;
esac
