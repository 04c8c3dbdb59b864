#!/usr/bin/env bash
# A real HDFS (Hadoop MiniDFSCluster: 1 NameNode + N DataNodes) for fletch's tests.
#
#   scripts/minidfs.sh start          build tools/minidfs if needed, start in the background,
#                                     wait until ready; prints hdfs://127.0.0.1:9000 on stdout
#   scripts/minidfs.sh stop           shut down, wait until its ports are free
#   scripts/minidfs.sh status         prints the control server's /status JSON (exit 3 if down)
#   scripts/minidfs.sh ctl PATH       call the control server, e.g. `ctl datanodes/stop`,
#                                     `ctl datanodes/start`, `ctl namenode/restart`, `ctl status`
#   scripts/minidfs.sh env            prints shell exports (MINIDFS_URL, HADOOP_CONF_DIR, ...)
#   scripts/minidfs.sh fs ARGS...     Hadoop's Java `hdfs dfs` shell against the cluster,
#                                     e.g. `fs -put -f x.parquet /data/logs/raw/`, `fs -ls -R /`
#   scripts/minidfs.sh build          only build (and fetch the Maven dependencies)
#   scripts/minidfs.sh restart        stop + start (fresh, empty file system)
#
# Environment (defaults):
#   FLETCH_CACHE            /var/cache/fletch
#   MINIDFS_NN_PORT         9000   NameNode RPC (the hdfs:// URL)
#   MINIDFS_NN_HTTP_PORT    9870   NameNode web UI / WebHDFS
#   MINIDFS_CONTROL_PORT    9099   control HTTP server
#   MINIDFS_DATANODES       1
#   MINIDFS_BLOCK_SIZE      16777216 (bytes; clients may use any multiple of 512)
#   MINIDFS_STATE_DIR       $FLETCH_CACHE/minidfs  (data/, conf/ = HADOOP_CONF_DIR, ready, pid)
#   MINIDFS_LOG_DIR         $FLETCH_CACHE          (log file: minidfs.log)
#   MINIDFS_START_TIMEOUT   180 seconds
#   MINIDFS_KEEP_DATA       0 (1 = keep the file system across restarts of the process)
#   MINIDFS_JAVA_OPTS       -Xms256m -Xmx1g
#   MINIDFS_LOG_LEVEL       WARN (Hadoop's log4j level)
#   MAVEN_REPO              Maven local repository (default ~/.m2/repository)
set -euo pipefail
FLETCH_LOG_TAG=minidfs
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

fletch_cache_dir
NN_PORT="${MINIDFS_NN_PORT:-9000}"
NN_HTTP_PORT="${MINIDFS_NN_HTTP_PORT:-9870}"
CONTROL_PORT="${MINIDFS_CONTROL_PORT:-9099}"
DATANODES="${MINIDFS_DATANODES:-1}"
BLOCK_SIZE="${MINIDFS_BLOCK_SIZE:-16777216}"
STATE_DIR="${MINIDFS_STATE_DIR:-$FLETCH_CACHE/minidfs}"
LOG_DIR="${MINIDFS_LOG_DIR:-$FLETCH_CACHE}"
LOG_FILE="$LOG_DIR/minidfs.log"
START_TIMEOUT="${MINIDFS_START_TIMEOUT:-180}"
KEEP_DATA="${MINIDFS_KEEP_DATA:-0}"
JAVA_OPTS="${MINIDFS_JAVA_OPTS:--Xms256m -Xmx1g}"
LOG_LEVEL="${MINIDFS_LOG_LEVEL:-WARN}"

PROJECT="$FLETCH_ROOT/tools/minidfs"
TARGET="$PROJECT/target"
READY_FILE="$STATE_DIR/ready"
PID_FILE="$STATE_DIR/pid"
CONF_DIR="$STATE_DIR/conf"
URL="hdfs://127.0.0.1:$NN_PORT"
CONTROL="http://127.0.0.1:$CONTROL_PORT"
MAIN_CLASS=fletch.minidfs.MiniDfsServer

for v in NN_PORT NN_HTTP_PORT CONTROL_PORT DATANODES BLOCK_SIZE START_TIMEOUT; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "MINIDFS_$v must be a number, got '${!v}'"
done

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found; run scripts/setup.sh all"; }

# Hash of everything the build depends on; the build is skipped when it is unchanged.
build_stamp() {
    {
        cat "$PROJECT/pom.xml"
        find "$PROJECT/src" -type f | LC_ALL=C sort | xargs cat
        java -version 2>&1 | head -n1
        echo "${MAVEN_REPO:-}"
    } | sha256sum | cut -d' ' -f1
}

cmd_build() {
    need java; need mvn
    local stamp
    stamp="$(build_stamp)"
    if [[ -f "$TARGET/.fletch-build-stamp" && "$(cat "$TARGET/.fletch-build-stamp")" == "$stamp" \
        && -s "$TARGET/classpath.txt" && -d "$TARGET/classes/fletch" ]]; then
        return 0
    fi
    local margs; mapfile -t margs < <(maven_args)
    local goals=(-q -f "$PROJECT/pom.xml" -DskipTests package dependency:build-classpath
        "-Dmdep.outputFile=$TARGET/classpath.txt")
    local blog; blog="$(mktemp)"
    log "building tools/minidfs (Maven, offline first)"
    if ! mvn "${margs[@]}" -o "${goals[@]}" >"$blog" 2>&1; then
        log "offline build failed (dependencies not cached yet?); fetching from Maven Central"
        if ! mvn "${margs[@]}" "${goals[@]}" >"$blog" 2>&1; then
            tail -n 40 "$blog" >&2
            rm -f "$blog"
            die "Maven build of tools/minidfs failed"
        fi
    fi
    rm -f "$blog"
    echo "$stamp" > "$TARGET/.fletch-build-stamp"
    log "build ok"
}

control_up() { curl -fsS -m 5 "$CONTROL/status" >/dev/null 2>&1; }

our_pid() {
    # pid from the pid file, if that process is still our Java server
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    if pid_alive "$pid" && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "$MAIN_CLASS"; then
        echo "$pid"
    fi
}

# The last 40 lines this start wrote to the log (LOG_OFFSET is set before launching).
LOG_OFFSET=0
log_tail() {
    tail -c "+$((LOG_OFFSET + 1))" "$LOG_FILE" 2>/dev/null | tail -n 40 >&2 || true
}

wait_ready() {
    local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
    while (( SECONDS < deadline )); do
        if [[ -f "$READY_FILE" ]] && control_up; then
            return 0
        fi
        if ! pid_alive "$pid"; then
            log "MiniDFS exited during startup; last lines of $LOG_FILE:"
            log_tail
            die "MiniDFS failed to start"
        fi
        sleep 0.2
    done
    log "MiniDFS not ready after ${START_TIMEOUT}s; last lines of $LOG_FILE:"
    log_tail
    kill "$pid" 2>/dev/null || true
    die "MiniDFS start timed out (MINIDFS_START_TIMEOUT=$START_TIMEOUT)"
}

# Serialize start/stop (parallel test threads may all call start).
lock_state() {
    mkdir -p "$STATE_DIR"
    exec 9>>"$STATE_DIR/.lock" || die "cannot create $STATE_DIR/.lock"
    flock -w $((START_TIMEOUT + 60)) 9 || die "timed out waiting for another minidfs.sh start/stop"
}

cmd_start() {
    need java; need curl
    mkdir -p "$STATE_DIR" "$LOG_DIR"
    lock_state
    local pid; pid="$(our_pid)"
    if [[ -n "$pid" ]]; then
        if [[ -f "$READY_FILE" ]] && control_up; then
            log "already running (pid $pid): $URL"
            echo "$URL"; return 0
        fi
        log "already starting (pid $pid), waiting"
        wait_ready "$pid"
        echo "$URL"; return 0
    fi
    local p
    for p in "$NN_PORT" "$CONTROL_PORT" "$NN_HTTP_PORT"; do
        if port_in_use "$p"; then
            die "port $p is in use by another process (not this MiniDFS: no live pid in $PID_FILE); stop it or set MINIDFS_*_PORT"
        fi
    done
    cmd_build
    rm -f "$READY_FILE"
    local t0=$SECONDS cp
    cp="$TARGET/classes:$(cat "$TARGET/classpath.txt")"
    local keep=()
    [[ "$KEEP_DATA" == 1 ]] && keep=(--keep-data)
    # Hadoop 3.4 on Java 17: JAXB (WebHDFS) and a few RPC paths need reflective access.
    local opens=(--add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED
        --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED
        --add-opens=java.base/java.util.concurrent=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED
        --add-opens=java.base/java.io=ALL-UNNAMED --add-exports=java.base/sun.net.dns=ALL-UNNAMED
        --add-exports=java.base/sun.net.util=ALL-UNNAMED)
    log "starting MiniDFS: NameNode 127.0.0.1:$NN_PORT, $DATANODES DataNode(s), control $CONTROL (log $LOG_FILE)"
    if [[ -f "$LOG_FILE" ]] && (( $(stat -c %s "$LOG_FILE") > 50 * 1024 * 1024 )); then
        mv -f "$LOG_FILE" "$LOG_FILE.old"   # keep one previous generation
    fi
    LOG_OFFSET="$(stat -c %s "$LOG_FILE" 2>/dev/null || echo 0)"
    echo "===== $(date -u '+%Y-%m-%dT%H:%M:%SZ') scripts/minidfs.sh start =====" >> "$LOG_FILE"
    # setsid: detach from the caller's process group so a Ctrl-C in a test runner does not
    # half-kill the cluster; `stop` (or POST /shutdown) ends it.
    # shellcheck disable=SC2086
    setsid java $JAVA_OPTS "${opens[@]}" "-Dminidfs.log.level=$LOG_LEVEL" \
        -Djava.net.preferIPv4Stack=true -cp "$cp" "$MAIN_CLASS" \
        --nn-port "$NN_PORT" --nn-http-port "$NN_HTTP_PORT" --control-port "$CONTROL_PORT" \
        --datanodes "$DATANODES" --block-size "$BLOCK_SIZE" --base-dir "$STATE_DIR/data" \
        --ready-file "$READY_FILE" --conf-dir "$CONF_DIR" "${keep[@]}" \
        </dev/null >>"$LOG_FILE" 2>&1 9>&- &
    pid=$!
    echo "$pid" > "$PID_FILE"
    wait_ready "$pid"
    log "ready in $((SECONDS - t0))s (pid $pid): $URL"
    echo "$URL"
}

cmd_stop() {
    need curl
    lock_state
    local pid; pid="$(our_pid)"
    if [[ -z "$pid" ]]; then
        log "not running"
    else
        log "stopping MiniDFS (pid $pid)"
        curl -fsS -m 10 -X POST "$CONTROL/shutdown" >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 300); do pid_alive "$pid" || break; sleep 0.1; done
        if pid_alive "$pid"; then
            log "still running after 30s, sending SIGTERM"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
        fi
        if pid_alive "$pid"; then
            log "still running, sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -f "$PID_FILE" "$READY_FILE"
    local p
    for p in "$NN_PORT" "$CONTROL_PORT" "$NN_HTTP_PORT"; do
        wait_port_free "$p" 30 || die "port $p is still in use after stop (another process holds it)"
    done
    log "stopped"
}

cmd_status() {
    need curl
    if [[ -n "$(our_pid)" ]] && control_up; then
        curl -fsS -m 10 "$CONTROL/status"
        return 0
    fi
    log "not running"
    return 3
}

cmd_ctl() {
    need curl
    local path="${1#/}" method="${2:-}"
    [[ -n "$path" ]] || die "usage: scripts/minidfs.sh ctl PATH [METHOD]"
    if [[ -z "$method" ]]; then
        if [[ "$path" == status ]]; then method=GET; else method=POST; fi
    fi
    control_up || die "MiniDFS control server not reachable at $CONTROL (is it started?)"
    local out code
    out="$(curl -sS -m 300 -X "$method" -w '\n%{http_code}' "$CONTROL/$path")" \
        || die "request $method /$path failed"
    code="${out##*$'\n'}"
    out="${out%$'\n'*}"
    echo "$out"
    [[ "$code" == 200 ]] || die "$method /$path answered HTTP $code"
}

cmd_fs() {
    need java
    [[ -d "$CONF_DIR" ]] || die "no $CONF_DIR: start MiniDFS first (scripts/minidfs.sh start)"
    cmd_build
    java -Xmx512m -Dminidfs.log.level=ERROR \
        -cp "$CONF_DIR:$TARGET/classes:$(cat "$TARGET/classpath.txt")" \
        org.apache.hadoop.fs.FsShell -fs "$URL" "$@"
}

cmd_env() {
    cat <<EOF
export MINIDFS_URL=$URL
export FLETCH_HDFS_URL=$URL
export MINIDFS_CONTROL_URL=$CONTROL
export MINIDFS_WEBHDFS_URL=http://127.0.0.1:$NN_HTTP_PORT/webhdfs/v1
export HADOOP_CONF_DIR=$CONF_DIR
EOF
}

[[ $# -ge 1 ]] || usage
case "$1" in
    start)   cmd_start ;;
    stop)    cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status)  cmd_status ;;
    ctl)     shift; cmd_ctl "$@" ;;
    env)     cmd_env ;;
    fs)      shift; cmd_fs "$@" ;;
    build)   cmd_build ;;
    url)     echo "$URL" ;;
    *)       usage ;;
esac
