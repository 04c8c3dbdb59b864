# shellcheck shell=bash
# Helpers shared by fletch's scripts (sourced, not executed).
# Progress goes to stderr; stdout is reserved for the one value a script prints.

FLETCH_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
FLETCH_ROOT="$(cd "$FLETCH_SCRIPTS_DIR/.." && pwd)"

log() { printf '[%s] %s\n' "${FLETCH_LOG_TAG:-fletch}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${FLETCH_LOG_TAG:-fletch}" "$*" >&2; exit 1; }

# The cache directory (venv, jars, logs, MiniDFS state). Defaults to /var/cache/fletch;
# falls back to ~/.cache/fletch for a user who cannot write there.
fletch_cache_dir() {
    if [[ -n "${FLETCH_CACHE:-}" ]]; then
        mkdir -p "$FLETCH_CACHE" || die "cannot create FLETCH_CACHE=$FLETCH_CACHE"
    elif mkdir -p /var/cache/fletch 2>/dev/null && [[ -w /var/cache/fletch ]]; then
        FLETCH_CACHE=/var/cache/fletch
    else
        FLETCH_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/fletch"
        mkdir -p "$FLETCH_CACHE" || die "cannot create $FLETCH_CACHE (set FLETCH_CACHE)"
        log "note: /var/cache/fletch is not writable, using FLETCH_CACHE=$FLETCH_CACHE"
    fi
    FLETCH_CACHE="$(cd "$FLETCH_CACHE" && pwd)"
    export FLETCH_CACHE
}

# port_in_use PORT [HOST]: true if something accepts TCP connections there.
port_in_use() {
    local port="$1" host="${2:-127.0.0.1}"
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# wait_port_free PORT TIMEOUT_SECONDS
wait_port_free() {
    local port="$1" timeout="$2" waited=0
    while port_in_use "$port"; do
        if (( waited >= timeout * 10 )); then
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

# pid_alive PID
pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# maven_args: extra arguments for every mvn call (local repository override).
maven_args() {
    local args=(-B -ntp)
    if [[ -n "${MAVEN_REPO:-}" ]]; then
        args+=("-Dmaven.repo.local=$MAVEN_REPO")
    fi
    printf '%s\n' "${args[@]}"
}
