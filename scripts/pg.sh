#!/usr/bin/env bash
# Private PostgreSQL clusters for fletch's tests, benchmarks and demo.
#
#   scripts/pg.sh start  DIR [PORT]  initdb (first time) + start; prints the URL on stdout
#   scripts/pg.sh stop   DIR         fast shutdown (no error if not running)
#   scripts/pg.sh status DIR         prints the URL and exits 0 if running, exit 3 if not
#   scripts/pg.sh url    DIR         prints the URL recorded for DIR
#   scripts/pg.sh destroy DIR        stop (immediate) and delete the cluster's files
#
# The URL is postgres://postgres@127.0.0.1:PORT/fletch (trust auth, loopback only); it is
# also written to DIR/url, the port to DIR/port. Layout: DIR/data (PGDATA), DIR/sock (unix
# socket), DIR/postgres.log. As root, the cluster runs as the `postgres` system user, which
# then owns DIR; if a parent of DIR is private to root (a 0700 temp dir), the cluster files
# go to /tmp/fletch-pg/<hash> and DIR/data links there (`destroy` removes them).
#
# Environment:
#   PG_FAST=1             fsync/synchronous_commit/full_page_writes off (default 1; 0 = durable)
#   PG_SHARED_BUFFERS     default 1GB
#   PG_MAX_CONNECTIONS    default 200
#   PG_BINDIR             PostgreSQL server binaries (default: newest /usr/lib/postgresql/*/bin)
#   PG_START_TIMEOUT      seconds to wait for the server (default 60)
set -euo pipefail
FLETCH_LOG_TAG=pg
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

PG_FAST="${PG_FAST:-1}"
PG_SHARED_BUFFERS="${PG_SHARED_BUFFERS:-1GB}"
PG_MAX_CONNECTIONS="${PG_MAX_CONNECTIONS:-200}"
PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"

find_bindir() {
    if [[ -n "${PG_BINDIR:-}" ]]; then
        [[ -x "$PG_BINDIR/postgres" ]] || die "PG_BINDIR=$PG_BINDIR has no postgres binary"
        echo "$PG_BINDIR"; return
    fi
    local d
    # newest Debian server package first (sort -V: 16 sorts after 15)
    # shellcheck disable=SC2012
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        if [[ -x "$d/postgres" && -x "$d/initdb" ]]; then echo "$d"; return; fi
    done
    if command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        if [[ -n "$d" && -x "$d/postgres" ]]; then echo "$d"; return; fi
    fi
    d="$(command -v postgres 2>/dev/null || true)"
    if [[ -n "$d" ]]; then dirname "$d"; return; fi
    die "PostgreSQL server binaries (initdb, postgres) not found. Run: scripts/setup.sh pg"
}

# Run a PostgreSQL binary as the cluster owner (postgres when we are root).
as_owner() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Free TCP port on 127.0.0.1 (nothing listening), picked at random in 20000-59999.
pick_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        if ! port_in_use "$p"; then
            echo "$p"; return 0
        fi
    done
    die "could not find a free port"
}

# Absolute path of DIR; created when $2 is "create", else it may not exist.
resolve_dir() {
    local dir="$1"
    if [[ "${2:-}" == create ]]; then
        mkdir -p "$dir" || die "cannot create $dir"
    fi
    if [[ -d "$dir" ]]; then (cd "$dir" && pwd); else realpath -m "$dir"; fi
}

# Serialize start/stop on one DIR (parallel test threads may call start at once).
lock_dir() {
    exec 9>>"$DIR/.pg.lock" || die "cannot create $DIR/.pg.lock"
    flock -w 120 9 || die "timed out waiting for the lock on $DIR (another pg.sh start/stop?)"
}

url_for() { echo "postgres://postgres@127.0.0.1:$1/fletch"; }

# Is the cluster in $DATA running? (pg_ctl status: 0 running, 3 not running, 4 no data dir)
is_running() {
    [[ -f "$DATA/PG_VERSION" ]] || return 1
    as_owner "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

running_port() {
    # postmaster.pid line 4 is the port
    sed -n '4p' "$DATA/postmaster.pid" 2>/dev/null || true
}

# Sets DIR, DATA, SOCK, LOGFILE, BIN. As root the server runs as `postgres`, which must
# be able to reach DIR; when a parent of DIR is private (e.g. a 0700 temp dir) the cluster
# lives in /tmp/fletch-pg/<hash of DIR> instead, linked from DIR/data.
setup_paths() {
    DIR="$(resolve_dir "$1" "${2:-}")"
    BIN="$(find_bindir)"
    local home="$DIR"
    if [[ $EUID -eq 0 ]] && id postgres >/dev/null 2>&1 \
        && ! runuser -u postgres -- test -x "$(dirname "$DIR")" 2>/dev/null; then
        home="/tmp/fletch-pg/$(printf '%s' "$DIR" | sha1sum | cut -c1-16)"
        EXTERNAL=1
    else
        EXTERNAL=0
    fi
    DATA="$home/data"
    SOCK="$home/sock"
    LOGFILE="$home/postgres.log"
    # Unix socket paths are limited to 107 bytes; fall back to a short private dir.
    if (( ${#SOCK} + 18 > 100 )); then
        SOCK="/tmp/fletch-pg/$(printf '%s' "$DIR" | sha1sum | cut -c1-16).sock"
        log "note: $DIR is too long for a unix socket path, socket dir is $SOCK"
    fi
}

prepare_owner() {
    if [[ "$EXTERNAL" == 1 ]]; then
        log "note: the postgres user cannot reach $DIR (private parent dir); cluster files are in $(dirname "$DATA"), linked from $DIR/data"
        install -d -m 1777 /tmp/fletch-pg
        install -d -o postgres -g postgres -m 755 "$(dirname "$DATA")"
        ln -sfn "$DATA" "$DIR/data"
        ln -sfn "$LOGFILE" "$DIR/postgres.log"
    fi
    if [[ $EUID -ne 0 ]]; then
        mkdir -p "$SOCK" || die "cannot create $SOCK"
        return 0
    fi
    id postgres >/dev/null 2>&1 || die "system user 'postgres' missing (install postgresql: scripts/setup.sh pg)"
    [[ "$EXTERNAL" == 1 ]] || chown postgres: "$DIR"
    [[ -d /tmp/fletch-pg ]] || install -d -m 1777 /tmp/fletch-pg
    mkdir -p "$SOCK"
    chown postgres: "$SOCK"
    touch "$LOGFILE"
    chown postgres: "$LOGFILE"
    if ! runuser -u postgres -- test -w "$(dirname "$DATA")"; then
        die "the postgres user cannot write to $(dirname "$DATA")"
    fi
}

write_conf() {
    local port="$1"
    local fast_settings=""
    if [[ "$PG_FAST" == "1" ]]; then
        fast_settings="fsync = off
synchronous_commit = off
full_page_writes = off"
    fi
    # Written to a file of its own, included from postgresql.conf, so restarts can rewrite it.
    as_owner tee "$DATA/fletch.conf" >/dev/null <<EOF
# written by scripts/pg.sh -- regenerated on every start
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$SOCK'
max_connections = $PG_MAX_CONNECTIONS
shared_buffers = $PG_SHARED_BUFFERS
effective_cache_size = 16GB
work_mem = 64MB
maintenance_work_mem = 512MB
max_worker_processes = 8
max_parallel_workers = 2
max_parallel_workers_per_gather = 2
max_parallel_maintenance_workers = 2
random_page_cost = 1.1
effective_io_concurrency = 200
max_wal_size = 8GB
min_wal_size = 1GB
checkpoint_timeout = 30min
wal_buffers = 16MB
huge_pages = try
dynamic_shared_memory_type = posix
$fast_settings
logging_collector = off
log_line_prefix = '%m [%p] '
timezone = 'UTC'
log_timezone = 'UTC'
EOF
}

cmd_start() {
    local want_port="${2:-}"
    [[ -z "$want_port" || "$want_port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$want_port'"
    setup_paths "$1" create
    lock_dir

    if is_running; then
        local p; p="$(running_port)"
        [[ -n "$p" ]] || die "cluster in $DATA is running but its port is unknown"
        if [[ -n "$want_port" && "$want_port" != "$p" ]]; then
            die "cluster in $DATA already runs on port $p, not $want_port (stop it first)"
        fi
        log "already running on port $p ($DATA)"
        echo "$p" > "$DIR/port"; url_for "$p" > "$DIR/url"
        url_for "$p"
        return 0
    fi

    prepare_owner
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        log "initdb $DATA ($("$BIN/postgres" --version))"
        if [[ $EUID -eq 0 ]]; then
            install -d -o postgres -g postgres -m 700 "$DATA"
        else
            install -d -m 700 "$DATA"
        fi
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C \
            >"$DIR/initdb.log" 2>&1 || { tail -n 30 "$DIR/initdb.log" >&2; die "initdb failed (log: $DIR/initdb.log)"; }
        as_owner tee "$DATA/pg_hba.conf" >/dev/null <<'EOF'
# written by scripts/pg.sh: trust, loopback and the private unix socket only
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
EOF
        echo "include_if_exists = 'fletch.conf'" | as_owner tee -a "$DATA/postgresql.conf" >/dev/null
    fi

    local port attempt
    for attempt in 1 2 3 4 5; do
        if [[ -n "$want_port" ]]; then
            port="$want_port"
            port_in_use "$port" && die "port $port is already in use"
        elif [[ -f "$DIR/port" && $attempt -eq 1 ]] && ! port_in_use "$(cat "$DIR/port")"; then
            port="$(cat "$DIR/port")"   # keep the port of a previous run when it is free
        else
            port="$(pick_port)"
        fi
        write_conf "$port"
        log "starting PostgreSQL on 127.0.0.1:$port (data $DATA, fast=$PG_FAST, shared_buffers=$PG_SHARED_BUFFERS)"
        if as_owner "$BIN/pg_ctl" start -D "$DATA" -l "$LOGFILE" -w -t "$PG_START_TIMEOUT" -s >/dev/null 2>&1 9>&-; then
            break
        fi
        if [[ -z "$want_port" ]] && grep -q "could not bind\|Address already in use" <(tail -n 20 "$LOGFILE"); then
            log "port $port was taken meanwhile, retrying with another one"
            continue
        fi
        tail -n 30 "$LOGFILE" >&2
        die "PostgreSQL failed to start (log: $LOGFILE)"
    done
    is_running || { tail -n 30 "$LOGFILE" >&2; die "PostgreSQL failed to start (log: $LOGFILE)"; }

    local psql=("$BIN/psql" -X -q -h "$SOCK" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1)
    if [[ "$(as_owner "${psql[@]}" -tAc "select 1 from pg_database where datname = 'fletch'")" != "1" ]]; then
        log "creating database fletch"
        as_owner "${psql[@]}" -c "create database fletch" >/dev/null || die "create database fletch failed"
    fi
    echo "$port" > "$DIR/port"
    url_for "$port" > "$DIR/url"
    log "ready: $(url_for "$port")"
    url_for "$port"
}

cmd_stop() {
    setup_paths "$1"
    [[ -d "$DIR" ]] && lock_dir
    if ! is_running; then
        log "not running ($DATA)"
        return 0
    fi
    log "stopping PostgreSQL ($DATA)"
    as_owner "$BIN/pg_ctl" stop -D "$DATA" -m fast -w -t 60 -s >/dev/null \
        || die "pg_ctl stop failed (log: $LOGFILE)"
    log "stopped"
}

cmd_status() {
    setup_paths "$1"
    if is_running; then
        local p; p="$(running_port)"
        log "running on port $p ($DATA)"
        url_for "$p"
        return 0
    fi
    log "not running ($DATA)"
    return 3
}

cmd_destroy() {
    setup_paths "$1"
    if is_running; then
        log "stopping PostgreSQL ($DATA)"
        as_owner "$BIN/pg_ctl" stop -D "$DATA" -m immediate -w -t 60 -s >/dev/null || true
    fi
    if [[ "$EXTERNAL" == 1 ]]; then
        rm -rf "$(dirname "$DATA")"
    fi
    [[ "$SOCK" == /tmp/fletch-pg/*.sock ]] && rm -rf "$SOCK"
    rm -rf "$DIR/data" "$DIR/sock" "$DIR/postgres.log" "$DIR/initdb.log" "$DIR/url" "$DIR/port" "$DIR/.pg.lock"
    log "removed the cluster of $DIR"
}

cmd_url() {
    [[ -f "$1/url" ]] || die "no $1/url: start the cluster first (scripts/pg.sh start $1)"
    cat "$1/url"
}

[[ $# -ge 2 ]] || usage
case "$1" in
    start)  [[ $# -le 3 ]] || usage; cmd_start "$2" "${3:-}" ;;
    stop)   cmd_stop "$2" ;;
    status) cmd_status "$2" ;;
    url)    cmd_url "$2" ;;
    destroy) cmd_destroy "$2" ;;
    *)      usage ;;
esac
