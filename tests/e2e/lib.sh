# shellcheck shell=bash
# Helpers shared by the tests/e2e scripts. Source it, do not run it:
#   . "$(dirname "$(readlink -f "$0")")/lib.sh"
#
# Conventions
#   E2E_ROOT (default /tmp/df-e2e) holds every piece of state: $E2E_ROOT/<component>/...
#   A daemon NAME started by e2e_start runs in its own session, in the background, with
#   stdout+stderr appended to its log; DIR/NAME.pid holds one line "PID STARTTIME", where
#   STARTTIME is field 22 of /proc/PID/stat (clock ticks since boot). It survives exec but
#   differs for a reused pid, so e2e_stop never signals a process that is not ours.
#
#   e2e_start NAME DIR LOG -- CMD...   start unless our recorded process is alive
#   e2e_stop NAME DIR                  TERM (KILL after 10 s) our recorded process only
#   e2e_alive NAME DIR                 0 if our recorded process runs (zombies count as dead)
#   e2e_wait_tcp HOST PORT [SECS]      wait until the port accepts connections
#   e2e_hosts_add IP NAME / e2e_hosts_del NAME   /etc/hosts lines marked "# df-e2e"
#   e2e_umount_under DIR               lazily unmount every mount point below DIR

E2E_ROOT=${E2E_ROOT:-/tmp/df-e2e}
E2E_HOSTS_MARK="# df-e2e"

e2e_log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
e2e_die() { e2e_log "ERROR: $*"; exit 1; }

# e2e_need BINARY...: fail with a hint when a program is missing (install.sh installs them)
e2e_need() {
    local b
    for b in "$@"; do
        command -v "$b" >/dev/null 2>&1 || e2e_die "$b not found: run tests/e2e/install.sh first"
    done
}

_e2e_stat_fields() {  # _e2e_stat_fields PID -> fields after "(comm)" of /proc/PID/stat
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    printf '%s\n' "${s##*) }"
}
_e2e_starttime() { local f; f=$(_e2e_stat_fields "$1") || return 1; set -- $f; echo "${20}"; }
_e2e_running() { local f; f=$(_e2e_stat_fields "$1") || return 1; [ "${f%% *}" != Z ]; }

e2e_pid() { local p; read -r p _ < "$2/$1.pid" 2>/dev/null && echo "$p"; }

e2e_alive() {  # e2e_alive NAME DIR
    local pf="$2/$1.pid" pid want
    [ -s "$pf" ] || return 1
    read -r pid want < "$pf" || true
    [ -n "${pid:-}" ] && [ -n "${want:-}" ] || return 1
    _e2e_running "$pid" || return 1
    [ "$(_e2e_starttime "$pid")" = "$want" ]
}

e2e_start() {  # e2e_start NAME DIR LOG -- CMD ARGS...
    local name=$1 dir=$2 log=$3 pid st
    shift 3; [ "${1:-}" = -- ] && shift
    mkdir -p "$dir"
    if e2e_alive "$name" "$dir"; then
        e2e_log "$name already running (pid $(e2e_pid "$name" "$dir"))"
        return 0
    fi
    rm -f "$dir/$name.pid"
    set +m  # without job control the & child is no group leader, so setsid execs in place
    setsid "$@" >>"$log" 2>&1 </dev/null &
    pid=$!
    st=$(_e2e_starttime "$pid") || e2e_die "$name exited at once (log $log)"
    printf '%s %s\n' "$pid" "$st" > "$dir/$name.pid"
    e2e_log "started $name pid $pid (log $log)"
}

e2e_stop() {  # e2e_stop NAME DIR
    local name=$1 dir=$2 pf="$2/$1.pid" pid _i
    [ -e "$pf" ] || return 0
    pid=$(e2e_pid "$name" "$dir" || true)
    if e2e_alive "$name" "$dir"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _i in $(seq 1 100); do _e2e_running "$pid" || break; sleep 0.1; done
        if _e2e_running "$pid"; then
            e2e_log "$name (pid $pid) ignored TERM for 10 s, sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        e2e_log "stopped $name (pid $pid)"
    else
        e2e_log "$name: recorded pid ${pid:-?} is gone or belongs to another process; not signalling it"
    fi
    rm -f "$pf"
}

e2e_wait_tcp() {  # e2e_wait_tcp HOST PORT [SECS]
    local _i
    for _i in $(seq 1 $(( ${3:-20} * 10 ))); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

e2e_port_busy() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

_e2e_re() { printf '%s' "$1" | sed 's/[][\.*^$]/\\&/g'; }

e2e_hosts_add() {  # e2e_hosts_add IP NAME  (idempotent; touches only marked lines)
    local ip=$1 name=$2
    if grep -qE "^$(_e2e_re "$ip")[[:space:]]+$(_e2e_re "$name")[[:space:]]+${E2E_HOSTS_MARK}\$" /etc/hosts; then
        return 0
    fi
    e2e_hosts_del "$name"
    [ ! -s /etc/hosts ] || [ -z "$(tail -c1 /etc/hosts)" ] || echo >> /etc/hosts  # no newline at the end
    printf '%s %s %s\n' "$ip" "$name" "$E2E_HOSTS_MARK" >> /etc/hosts
    e2e_log "/etc/hosts: added $ip $name"
}

e2e_hosts_del() {  # e2e_hosts_del NAME  (removes only lines carrying our marker)
    local re tmp
    re="[[:space:]]$(_e2e_re "$1")[[:space:]]+${E2E_HOSTS_MARK}\$"
    grep -qE "$re" /etc/hosts || return 0
    tmp=$(mktemp)
    grep -vE "$re" /etc/hosts > "$tmp" || true
    cat "$tmp" > /etc/hosts  # in place: /etc/hosts may be a bind mount, so never rename over it
    rm -f "$tmp"
    e2e_log "/etc/hosts: removed $1"
}

e2e_umount_under() {  # e2e_umount_under DIR  (deepest first; never anything outside DIR)
    local d m
    d=$(readlink -f "$1") || return 0
    awk -v d="$d/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}
