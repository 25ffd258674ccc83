#!/usr/bin/env bash
# A real one-machine Slurm cluster with two fake nodes, n1 and n2, for tests, CI and users without a cluster.
#   bash launch/slurm_local.sh install   apt-get install Slurm (Debian 12: 22.05.8) and munge
#   bash launch/slurm_local.sh start     start munged, slurmctld and one slurmd per node; wait until both are idle
#   bash launch/slurm_local.sh status    say whether the cluster answers (sinfo)
#   bash launch/slurm_local.sh stop      cancel its jobs, stop the daemons this script started
# Run as root. Everything (slurm.conf, controller state, spool, logs, pid files, munge socket) lives in one state
# dir, ${LONGVIDEO_R1_SLURM_DIR:-/tmp/longvideo-r1-slurm}; /etc/slurm is never written. Slurm clients find the
# cluster through SLURM_CONF, which `start` prints:  export SLURM_CONF=<state dir>/slurm.conf
set -euo pipefail

state_dir="${LONGVIDEO_R1_SLURM_DIR:-/tmp/longvideo-r1-slurm}"
conf="$state_dir/slurm.conf"
pid_dir="$state_dir/pids"
log_dir="$state_dir/log"
munge_socket="$state_dir/munge/munge.socket"
nodes=(n1 n2)
# Every slurmd listens on its own port; slurmctld on one apart from Slurm's default 6817, so a system Slurm on the
# same machine does not collide with this one.
ctld_port=16817
first_node_port=17001
# How long `start` waits for the daemons, and `stop` for jobs and daemons to end.
start_timeout_s=60
stop_timeout_s=30
# The tag on the /etc/hosts line that `start` adds, so that `stop` removes that line and no other (not one that a
# cluster with another state dir added).
hosts_tag="# longvideo-r1-slurm $state_dir"

log() { echo "slurm_local: $*"; }
die() { echo "slurm_local: error: $*" >&2; exit 1; }

# The Slurm clients read the cluster's address and ports from this file; the daemons get it with -f too.
export SLURM_CONF="$conf"

need_root() {
    [[ $(id -u) -eq 0 ]] || die "run as root (the daemons run as root and /etc/hosts may need two names)"
}

install() {
    need_root
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        log "already installed: $(slurmctld -V)"
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    # The package lists are fetched only when apt does not know the packages yet.
    if ! apt-cache show slurmctld munge >/dev/null 2>&1; then
        apt-get update
    fi
    apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
    # (slurmctld -V, not sbatch --version: clients look for slurm.conf first, for up to 60 s.)
    log "installed: $(slurmctld -V)"
}

# True when process $1 exists and is no zombie (a daemon that ended but that its parent, often init, has not
# reaped yet). The state is the field after the command name in parentheses.
proc_running() {
    local stat
    stat=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ ${stat%% *} != Z ]]
}

# True when the process in pid file $1 runs. Just after `start_daemon` its command name may still be setsid's or
# setpriv's.
pid_running() {
    [[ -s $1 ]] && proc_running "$(<"$1")"
}

# True when the pid file $1 names a running process whose command name is $2 (guards against a reused pid).
pid_alive() {
    pid_running "$1" && [[ $(<"/proc/$(<"$1")/comm") == "$2" ]]
}

# The names of the daemons `start` runs, each with its pid file under $pid_dir and its log under $log_dir.
daemons() { echo munged slurmctld "${nodes[@]/#/slurmd-}"; }

# The process name of daemon $1, as /proc/PID/comm shows it.
comm_of() { case $1 in slurmd-*) echo slurmd ;; *) echo "$1" ;; esac; }

all_alive() {
    local d
    for d in $(daemons); do
        pid_alive "$pid_dir/$d.pid" "$(comm_of "$d")" || return 1
    done
}

# The last lines of every daemon's log, for error messages: its log file, or its stdout and stderr (munged, or a
# daemon that stopped before it opened its log file).
log_tails() {
    local d f
    for d in $(daemons); do
        f="$log_dir/$d.log"
        [[ -s $f ]] || f="$log_dir/$d.out"
        [[ -e $f ]] || continue
        echo "---- $f (last 12 lines)" >&2
        tail -n 12 "$f" >&2
    done
}

fail_start() {
    echo "slurm_local: error: $*" >&2
    log_tails
    exit 1
}

write_conf() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    # Each slurmd reports the whole machine's memory; the two nodes say they have half of it each.
    mem_mb=$(awk '/^MemTotal:/ { print int($2 / 1024 / 2) }' /proc/meminfo)
    cat >"$conf" <<EOF
# Written by launch/slurm_local.sh: a one-machine cluster with two fake nodes (one slurmd each).
ClusterName=longvideo-r1
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
# Its own munged, on a socket in the state dir. cred_expire: a requeued batch job is held until its old job
# credential expires, plus a second (default 120 s); 5 is the least Slurm accepts.
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_socket,cred_expire=5
StateSaveLocation=$state_dir/ctld
SlurmctldPidFile=$state_dir/run/slurmctld.pid
SlurmctldLogFile=$log_dir/slurmctld.log
SlurmdSpoolDir=$state_dir/spool/%n
SlurmdPidFile=$state_dir/run/slurmd-%n.pid
SlurmdLogFile=$log_dir/slurmd-%n.log
# No cgroups: processes are tracked through their parent pids, and tasks are not bound to CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# No accounting daemon: finished jobs stay visible to \`scontrol show job\` for a day instead.
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=86400
JobRequeue=1
EnforcePartLimits=ALL
ReturnToService=2
MailProg=/bin/true
# Seconds between SIGTERM and SIGKILL when a job is cancelled, requeued or runs out of time.
KillWait=10
# The scheduler looks at pending jobs every second (default: 60 s, backfill 30 s), so a requeued job starts as
# soon as its hold ends, and a job submitted while others run starts at once.
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Two nodes on this machine, told apart by their slurmd's port (slurmd -N n1, slurmd -N n2).
NodeName=n[1-2] NodeHostname=$host NodeAddr=127.0.0.1 Port=$first_node_port-$((first_node_port + 1)) CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
# OverSubscribe=FORCE: a job starts even while an earlier one still holds a node's CPUs.
PartitionName=debug Nodes=n[1-2] Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
EOF
}

# Make n1 and n2 resolve (to 127.0.0.1), so that e.g. MASTER_ADDR=n1 works in jobs.
add_hosts() {
    local missing=() n
    for n in "${nodes[@]}"; do
        getent hosts "$n" >/dev/null || missing+=("$n")
    done
    [[ ${#missing[@]} -eq 0 ]] && return
    log "adding ${missing[*]} to /etc/hosts"
    echo "127.0.0.1 ${missing[*]} $hosts_tag" >>/etc/hosts
}

remove_hosts() {
    grep -qF "$hosts_tag" /etc/hosts || return 0
    log "removing the line it added to /etc/hosts"
    local kept
    kept=$(grep -vF "$hosts_tag" /etc/hosts)
    # Written in place, not renamed over: in a container /etc/hosts is often a bind mount.
    printf '%s\n' "$kept" >/etc/hosts
}

# The daemons `start` has started (or found running) so far; `wait_until` fails at once when one of them exits.
started=()

# Start daemon $1 (a name from `daemons`), which listens on TCP port $2 ("-": none), with command "${@:3}" in the
# foreground, in its own session, unless the one started earlier still runs; its pid goes to $pid_dir/$1.pid, its
# stdout and stderr to $log_dir/$1.out.
start_daemon() {
    local name=$1 port=$2
    shift 2
    started+=("$name")
    if pid_alive "$pid_dir/$name.pid" "$(comm_of "$name")"; then
        log "$name already runs (pid $(<"$pid_dir/$name.pid"))"
        return
    fi
    # Clients would reach another cluster's slurmctld on that port; a slurmd could not listen on it.
    if [[ $port != - ]] && port_in_use "$port"; then
        fail_start "port $port, for $name, is in use (another Slurm cluster on this machine? its status and stop)"
    fi
    setsid "$@" >>"$log_dir/$name.out" 2>&1 </dev/null &
    echo $! >"$pid_dir/$name.pid"
    log "started $name (pid $!)"
}

# Poll command "$@" every 0.2 s until it succeeds; fail with message $what after $start_timeout_s, or as soon as
# a daemon started so far has exited.
wait_until() {
    local what=$1
    shift
    local deadline=$((SECONDS + start_timeout_s)) d
    until "$@" >/dev/null 2>&1; do
        for d in "${started[@]}"; do
            pid_running "$pid_dir/$d.pid" || fail_start "$d exited while waiting for $what"
        done
        ((SECONDS < deadline)) || fail_start "timed out after ${start_timeout_s}s waiting for $what"
        sleep 0.2
    done
}

munge_works() { munge -n -S "$munge_socket" | unmunge -S "$munge_socket"; }

# True when sinfo lists every node as idle (or mixed/allocated: busy with jobs that survived a restart).
nodes_ready() {
    local states
    states=$(sinfo -h -N -o '%N %t' 2>/dev/null) || return 1
    [[ $(grep -cE '^n[0-9]+ (idle|mix|alloc)$' <<<"$states") -eq ${#nodes[@]} ]]
}

# True when something listens on 127.0.0.1 port $1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
    need_root
    command -v slurmctld >/dev/null || die "Slurm is not installed: bash launch/slurm_local.sh install"
    if all_alive && sinfo -h >/dev/null 2>&1; then
        add_hosts
        log "already up ($state_dir)"
        sinfo
        echo "export SLURM_CONF=$conf"
        return
    fi
    mkdir -p "$state_dir/ctld" "$state_dir/run" "$pid_dir" "$log_dir" "$state_dir/munge"
    local n
    for n in "${nodes[@]}"; do
        mkdir -p "$state_dir/spool/$n"
    done
    chown munge:munge "$state_dir/munge"
    chmod 755 "$state_dir/munge"
    # slurm.conf first: every Slurm client and daemon below reads it.
    write_conf
    add_hosts

    # munged runs as the munge user, who owns the package's key (/etc/munge/munge.key): as root it refuses a key
    # that root does not own. Its socket, pid and seed files go to a state dir folder that user owns; its log
    # (stderr, in the foreground) to $log_dir/munged.out.
    start_daemon munged - setpriv --reuid=munge --regid=munge --init-groups munged --foreground \
        --socket="$munge_socket" --pid-file="$state_dir/munge/munged.pid" \
        --seed-file="$state_dir/munge/munged.seed"
    wait_until "munged to answer on $munge_socket" munge_works

    start_daemon slurmctld "$ctld_port" slurmctld -D -f "$conf"
    wait_until "slurmctld to answer (scontrol ping)" scontrol ping

    local port=$first_node_port
    for n in "${nodes[@]}"; do
        start_daemon "slurmd-$n" "$port" slurmd -D -f "$conf" -N "$n"
        port=$((port + 1))
    done
    wait_until "nodes ${nodes[*]} to be idle (sinfo -N)" nodes_ready
    all_alive || fail_start "a daemon exited during start"

    sinfo
    log "up in $state_dir; for Slurm commands in other shells:"
    echo "export SLURM_CONF=$conf"
}

stop() {
    need_root
    # Jobs first, while the daemons can still end them; their processes would outlive the daemons otherwise.
    if pid_alive "$pid_dir/slurmctld.pid" slurmctld && sinfo -h >/dev/null 2>&1; then
        local jobs
        mapfile -t jobs < <(squeue -h -o %A)
        if [[ ${#jobs[@]} -gt 0 ]]; then
            log "cancelling jobs: ${jobs[*]}"
            scancel "${jobs[@]}" || true
            local deadline=$((SECONDS + stop_timeout_s))
            while [[ -n $(squeue -h -o %A) ]] && ((SECONDS < deadline)); do
                sleep 0.5
            done
        fi
    fi
    # Then the daemons, in the reverse order of `start`: SIGTERM, a wait, and SIGKILL for any still there.
    local d pids=() names=()
    for d in "${nodes[@]/#/slurmd-}" slurmctld munged; do
        if pid_alive "$pid_dir/$d.pid" "$(comm_of "$d")"; then
            pids+=("$(<"$pid_dir/$d.pid")")
            names+=("$d")
        fi
    done
    if [[ ${#pids[@]} -gt 0 ]]; then
        log "stopping ${names[*]} (pids ${pids[*]})"
        kill -TERM "${pids[@]}" 2>/dev/null || true
        local deadline=$((SECONDS + stop_timeout_s)) p alive
        while ((SECONDS < deadline)); do
            alive=()
            for p in "${pids[@]}"; do
                proc_running "$p" && alive+=("$p")
            done
            [[ ${#alive[@]} -eq 0 ]] && break
            sleep 0.2
        done
        for p in "${pids[@]}"; do
            if proc_running "$p"; then
                log "SIGKILL $p (still there after ${stop_timeout_s}s)"
                kill -KILL "$p" 2>/dev/null || true
            fi
        done
    else
        log "no daemon of its own runs"
    fi
    rm -f "$pid_dir"/*.pid
    remove_hosts
    log "stopped; state and logs kept in $state_dir (rm -rf it for a cluster without job history)"
}

status() {
    # (A client facing no slurmctld retries for about 10 s: the pid file answers "down" at once.)
    if pid_alive "$pid_dir/slurmctld.pid" slurmctld && sinfo >/dev/null 2>&1; then
        log "up ($state_dir)"
        sinfo
        echo "export SLURM_CONF=$conf"
    else
        log "down (no answer from slurmctld with SLURM_CONF=$conf)"
        return 1
    fi
}

case "${1:-}" in
    install | start | stop | status) "$1" ;;
    *)
        echo "usage: bash $0 install|start|stop|status" >&2
        exit 2
        ;;
esac
