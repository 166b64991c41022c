#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by slurm-up.sh, by PID files only.
# Cancels all jobs first (so no slurmstepd is left behind), then stops
# slurmd, slurmctld, slurmdbd, mariadbd, munged. Safe to run when nothing runs.
#   SLURM_PURGE=1  also delete controller state, spool, logs, job-completion file and
#                  the accounting database (next start is a blank cluster, job ids from 1)
set -uo pipefail
log() { echo "[slurm-down] $*"; }

pid_of() {  # pid_of PIDFILE COMM -> prints pid if alive and named COMM
  local f=$1 comm=$2 pid
  [ -s "$f" ] || return 1
  pid=$(tr -dc 0-9 < "$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$comm" ] && echo "$pid"
}

running() {  # running PID -> 0 while PID exists and is not a zombie (init may reap late)
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

stop_daemon() {  # stop_daemon PIDFILE COMM
  local f=$1 comm=$2 pid
  if pid=$(pid_of "$f" "$comm"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then log "$comm ($pid) ignored TERM for 15 s, sending KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    log "$comm stopped (pid $pid)"
  else
    log "$comm not running"
  fi
  rm -f "$f"
}

# 1. cancel every job while the controller and node daemon are up; wait until they are gone
if pid_of /run/slurmctld.pid slurmctld >/dev/null \
    && for f in /run/slurmd.pid /run/slurmd-*.pid; do pid_of "$f" slurmd && break; done >/dev/null; then
  ids=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${ids// /}" ]; then
    log "cancelling jobs: $ids"
    scancel $ids 2>/dev/null || true
    for _ in $(seq 1 150); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi

# 2. daemons: node daemon first, munge last (the others need it to shut down cleanly)
for f in /run/slurmd.pid /run/slurmd-*.pid; do   # (one per node when several run here)
  [ -e "$f" ] || continue
  stop_daemon "$f" slurmd
done
stop_daemon /run/slurmctld.pid       slurmctld
stop_daemon /run/slurmdbd.pid        slurmdbd
if [ "${SLURM_PURGE:-0}" = 1 ] && pid_of /run/mysqld/mysqld.pid mariadbd >/dev/null; then
  mariadb --socket=/run/mysqld/mysqld.sock -e 'DROP DATABASE IF EXISTS slurm_acct_db' || true
fi
stop_daemon /run/mysqld/mysqld.pid   mariadbd
stop_daemon /run/munge/munged.pid    munged

sed -i '/^# slurm-fake-nodes begin$/,/^# slurm-fake-nodes end$/d' /etc/hosts
if [ "${SLURM_PURGE:-0}" = 1 ]; then
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/* \
         /var/log/slurm/slurmctld.log /var/log/slurm/slurmd*.log /var/log/slurm/slurmdbd.log \
         /var/log/slurm/jobcomp.log
  log "state, logs and accounting database purged"
fi
exit 0
