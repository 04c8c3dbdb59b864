#!/usr/bin/env bash
# Reproducible benchmarks behind BENCHMARKS.md. Loopback only; every step is bounded.
#
#   scripts/bench.sh data ROWS            private PostgreSQL + Parquet ($BENCH_FILES files, default 20) with
#                                         ROWS rows; prints loader rows/s and the table's size
#   scripts/bench.sh serve                start release fletch on the data (port 18080)
#   scripts/bench.sh latency [N]          median/p95 of N single requests per query (default 30)
#   scripts/bench.sh pgbench [SECONDS]    pgbench, 50 clients, the newest-100 SQL (the PostgreSQL ceiling)
#   scripts/bench.sh pg-groupby [N]       PostgreSQL's own GROUP BY of each aggregate in the latency table
#                                         (psql, median and max of N, default 3)
#   scripts/bench.sh throughput           closed loop, 50 connections (tools/loadgen throughput scenarios)
#   scripts/bench.sh scenarios MULT [TIME_SCALE]   the four k6 scenarios at MULT x VUs
#   scripts/bench.sh export SOURCE FORMAT [LIMIT] [asc|desc]  one streamed export (default
#                                         oldest first): rows/s and fletch peak RSS
#   scripts/bench.sh flight               Flight do_get of each source + Flight SQL aggregate latency
#   scripts/bench.sh flight-ab [RUNS]     hdfs do_get, alternating a default server and one with
#                                         flight.direct_do_get=false: rows/s, fletch CPU-seconds
#   scripts/bench.sh flight-floor [RUNS]  what an hdfs do_get costs at the least on this machine:
#                                         decoding the archive alone, moving its bytes over
#                                         loopback TCP alone, then do_get with pyarrow and with
#                                         a Rust client (rows/s, fletch and client CPU-seconds)
#   scripts/bench.sh slow-readers N [SECONDS]  N exports read at 16 KB/s at once (half
#                                         postgres, half hdfs; export_permits raised to admit
#                                         them all): fletch peak RSS
#   scripts/bench.sh spark-archive [N]    the same rows written by Spark Structured Streaming (hive
#                                         partitions, _spark_metadata, MAP metadata, ~200 files, into
#                                         $BENCH_DIR/spark, kept while the data is unchanged): the hdfs
#                                         latency table on the fletch-written and the Spark-written archive
#                                         (BENCH_SERVE_ARGS="--set parquet.newest_rows=0": without the copy
#                                         of the newest rows; `serve` and every step that starts fletch
#                                         take BENCH_SERVE_ARGS too)
#   scripts/bench.sh deep-pages [N]       pages deep into an archive of files not in time order
#                                         ($BENCH_DEEP_DIR, default the Spark-written $BENCH_DIR/spark)
#                                         without the copy of the newest rows: median / p95 of N requests
#                                         (default 10), rows decoded per page, and DuckDB's
#                                         ORDER BY timestamp LIMIT/OFFSET over the same files beside each
#   scripts/bench.sh many-files [FILES] [N]  FILES (default 10000) small Spark-written files of
#                                         $BENCH_MANY_ROWS rows (default 1000000) in all: listing and
#                                         footer time until /ready, fletch RSS, newest-100 and
#                                         GROUP BY latency (first request and median of N while the
#                                         rollups are built, then median of N once every file has one)
#   scripts/bench.sh replicas [SECONDS]   closed loop, 50 connections of postgres/logs?limit=100 through
#                                         HAProxy (deploy/haproxy/fletch.cfg) with 1, 2 and 3 release
#                                         replicas: req/s, p95, CPU seconds of each process
#   scripts/bench.sh ballista [RUNS]      a heavy SQL aggregate over a 10 M-row archive ($BENCH_DIR/ballista-10m,
#                                         written by `fletch load` when missing; BENCH_BALLISTA_URL for
#                                         another) run locally and as a Ballista job with 1 and 2 executors
#                                         (`fletch scheduler` / `fletch executor`, 2 task slots each, on this
#                                         machine): median and min of RUNS (default 5), CPU seconds of each role
#   scripts/bench.sh stop                 stop fletch and PostgreSQL
#
# State lives in $BENCH_DIR (default /var/tmp/fletch-bench). `serve` (and every step that
# starts fletch) reads Parquet from $BENCH_PARQUET_URL, default file://$BENCH_DIR/parquet;
# for the MiniDFS series load it with
#   fletch load --parquet hdfs://127.0.0.1:9000/bench/logs --rows 10000000 --file-rows 500000
# and set BENCH_PARQUET_URL=hdfs://127.0.0.1:9000/bench/logs. Release build in
# $CARGO_TARGET_DIR (default /var/cache/fletch-target-release); BENCH_FLETCH names another
# fletch binary to run instead (an older build, to measure before and after side by side).
set -euo pipefail
FLETCH_LOG_TAG=bench
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLETCH_ROOT"

BENCH_DIR="${BENCH_DIR:-/var/tmp/fletch-bench}"
# The reference engine of `deep-pages`, installed into its own venv under $BENCH_DIR.
DUCKDB_VERSION=2.0.1
fletch_cache_dir
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/fletch-target-release}"
FLETCH="${BENCH_FLETCH:-$CARGO_TARGET_DIR/release/fletch}"
PORT="${BENCH_PORT:-18080}"
PARQUET_URL="${BENCH_PARQUET_URL:-file://$BENCH_DIR/parquet}"
BASE="http://127.0.0.1:$PORT"
mkdir -p "$BENCH_DIR"

build() {
    cargo build --release --bin fletch --example flight_do_get --example decode_archive >&2
    go -C tools/loadgen build -o "$BENCH_DIR/loadgen" . >&2
}

pg_url() { cat "$BENCH_DIR/pg/url"; }

cmd_data() {
    local rows="${1:?rows}" files="${BENCH_FILES:-20}" t0
    build
    bash scripts/pg.sh start "$BENCH_DIR/pg" >/dev/null
    rm -rf "$BENCH_DIR/parquet"
    log "loading $rows rows into PostgreSQL and file://$BENCH_DIR/parquet ($files files)"
    "$FLETCH" load --pg-url "$(pg_url)" --parquet "file://$BENCH_DIR/parquet" --rows "$rows" \
        --file-rows $(( (rows + files - 1) / files )) --truncate
    t0=$(date +%s)
    psql "$(pg_url)" -qc "VACUUM ANALYZE logs" >/dev/null
    log "VACUUM ANALYZE took $(( $(date +%s) - t0 )) s"
    du -sh "$BENCH_DIR/parquet" >&2
    psql "$(pg_url)" -Atc "SELECT 'PostgreSQL logs with indexes: ' || pg_size_pretty(pg_total_relation_size('logs'))" >&2
}

cmd_serve() {
    cmd_stop_server
    "$FLETCH" serve --pg-url "$(pg_url)" --parquet-url "$PARQUET_URL" \
        --http-listen "127.0.0.1:$PORT" --flight-listen "${BENCH_FLIGHT:-127.0.0.1:18081}" ${BENCH_SERVE_ARGS:-} "$@" \
        > "$BENCH_DIR/server.out" 2> "$BENCH_DIR/server.log" &
    echo $! > "$BENCH_DIR/server.pid"
    for _ in $(seq 1 100); do
        curl -sf "$BASE/ready" >/dev/null 2>&1 && { log "fletch up (pid $(cat "$BENCH_DIR/server.pid"))"; return; }
        sleep 0.2
    done
    die "fletch did not become ready; see $BENCH_DIR/server.log"
}

cmd_stop_server() {
    if [[ -f "$BENCH_DIR/server.pid" ]]; then
        kill "$(cat "$BENCH_DIR/server.pid")" 2>/dev/null || true
        rm -f "$BENCH_DIR/server.pid"
        sleep 1
    fi
}

# time N requests of one URL (sequential), print median and p95 in ms; curl arguments after
# the label (e.g. a POST body)
time_url() {
    local n="$1" url="$2"
    for _ in $(seq 1 "$n"); do
        curl -s -o /dev/null -w '%{time_total}\n' "${@:4}" "$url"
    done | sort -n | awk -v label="$3" '{ a[NR] = $1 * 1000 } END {
        printf "%-58s median %8.2f ms   p95 %8.2f ms\n", label, a[int((NR + 1) / 2)], a[int(NR * 0.95 + 0.5)] }'
}

# Wait until the PostgreSQL rollup of the running server is built; prints the seconds since
# $1 (a `date +%s.%N`) and the rollup's own figures.
wait_for_pg_rollup() {
    local t0="$1" body
    for _ in $(seq 1 6000); do
        body="$(curl -s "$BASE/ready" || true)"
        if [[ "$body" == *'"rollup":{'*'"state":"ready"'* ]]; then
            echo "$(seconds_since "$t0") s after launch ($(grep -o '"rows":[0-9]*,' <<< "$body" | head -1)$(grep -o '"buckets":[0-9]*' <<< "$body" | head -1), built in $(grep -o '"last_build_ms":[0-9]*' <<< "$body" | cut -d: -f2) ms)"
            return
        fi
        sleep 0.2
    done
    die "PostgreSQL rollup not built within 20 minutes; see $BENCH_DIR/server.log"
}

cmd_latency() {
    local n="${1:-30}" t0
    # Caches would turn this into a cache benchmark: each request gets a fresh query by
    # disabling the result cache on a dedicated server instance.
    t0=$(date +%s.%N)
    cmd_serve --set cache.ttl_ms=0
    first_url "$BASE/api/query/postgres/logs/aggregate?group_by=level" "postgres aggregate group_by=level, rollup not built"
    echo "PostgreSQL rollup built $(wait_for_pg_rollup "$t0"); $(rss_mb "$(cat "$BENCH_DIR/server.pid")")"
    first_url "$BASE/api/query/postgres/logs/aggregate?group_by=service" "postgres aggregate group_by=service, rollup built"
    for src in postgres hdfs; do
        latency_table "$src" "$n"
    done
    cmd_serve
}

# The single-request table of one source: N requests per query.
latency_table() {
    local src="$1" n="$2"
    time_url "$n" "$BASE/api/query/$src/logs?limit=100&count=none" "$src logs?limit=100"
    time_url "$n" "$BASE/api/query/$src/logs?limit=100" "$src logs?limit=100 (default count)"
    time_url "$n" "$BASE/api/query/$src/logs?limit=100&level=ERROR&count=none" "$src logs?limit=100&level=ERROR"
    for g in level service host; do
        time_url "$n" "$BASE/api/query/$src/logs/aggregate?group_by=$g" "$src aggregate group_by=$g"
        time_url "$n" "$BASE/api/query/$src/logs/aggregate?group_by=$g&level=ERROR" "$src aggregate group_by=$g&level=ERROR"
    done
    time_url "$n" "$BASE/api/query/$src/stats" "$src stats"
}

# One request of a URL, timed: "LABEL first X ms". Curl arguments after the label.
first_url() {
    curl -s -o /dev/null -w '%{time_total}\n' "${@:3}" "$1" |
        awk -v label="$2" '{ printf "%-58s first  %8.2f ms\n", label, $1 * 1000 }'
}

# Parquet data files below a directory (not Hadoop's .crc files).
data_files() { find "$1" -name '*.parquet' ! -name '.*' | wc -l; }

# Seconds since $1 (a `date +%s.%N`), two decimals.
seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f\n", b - a }'; }

# Start fletch on one Parquet directory alone (no PostgreSQL), result cache off, and wait
# until /ready lists WANT data files (listing + every footer read). Prints the seconds
# from launch to that.
serve_archive() {
    local url="$1" want="$2" t0 body
    cmd_stop_server
    t0=$(date +%s.%N)
    "$FLETCH" serve --parquet-url "$url" --http-listen "127.0.0.1:$PORT" \
        --flight-listen "${BENCH_FLIGHT:-127.0.0.1:18081}" --set cache.ttl_ms=0 ${BENCH_SERVE_ARGS:-} \
        > "$BENCH_DIR/server.out" 2> "$BENCH_DIR/server.log" &
    echo $! > "$BENCH_DIR/server.pid"
    for _ in $(seq 1 15000); do
        body="$(curl -s "$BASE/ready" || true)"
        if [[ "$body" == *'"status":"READY"'* && "$(grep -o '"files":[0-9]*' <<< "$body" | head -1)" == "\"files\":$want" ]]; then
            seconds_since "$t0"
            return
        fi
        sleep 0.02
    done
    die "fletch did not list $want files within 5 minutes; see $BENCH_DIR/server.log"
}

# Ask for a page of newest rows (which starts reading the copy of the newest rows), wait
# until /ready shows the copy for the current listing; print what it holds and the seconds
# since $1 (a `date +%s.%N`). `parquet.newest_rows=0` (no copy) returns at once.
wait_for_newest_rows() {
    local t0="$1" body held
    curl -s -o /dev/null "$BASE/api/query/hdfs/logs?limit=1&count=none"
    for _ in $(seq 1 3000); do
        body="$(curl -s "$BASE/ready" || true)"
        held="$(grep -o '"newest_rows":{[^}]*}' <<< "$body" || true)"
        if [[ "$held" == *'"capacity":0'* ]]; then
            echo "no copy (parquet.newest_rows=0)"
            return
        fi
        if [[ "$held" == *"\"generation\":$(grep -o '"generation":[0-9]*' <<< "$body" | head -1 | cut -d: -f2),"* ]]; then
            echo "$(grep -o '"rows":[0-9]*' <<< "$held") held $(seconds_since "$t0") s after launch"
            return
        fi
        sleep 0.1
    done
    die "the newest rows were not read within 5 minutes; see $BENCH_DIR/server.log"
}

# Wait until /ready says every file of the served archive has its label rollup (built in
# the background); print the seconds since $1 (a `date +%s.%N`). Bounded by 10 minutes.
wait_for_rollups() {
    local t0="$1" body
    for _ in $(seq 1 3000); do
        body="$(curl -s "$BASE/ready" || true)"
        if python3 -c 'import json, sys
ls = json.loads(sys.argv[1])["sources"]["hdfs"]["detail"]["layouts"]
sys.exit(0 if all(l["fast_paths"]["label_rollups"] == l["files"] for l in ls) else 1)' "$body" 2>/dev/null; then
            seconds_since "$t0"
            return
        fi
        sleep 0.2
    done
    die "rollups not built for every file within 10 minutes; see $BENCH_DIR/server.log"
}

# "RSS N MB, peak N MB" of a process
rss_mb() { awk '/VmRSS/ { r = int($2 / 1024) } /VmHWM/ { h = int($2 / 1024) } END { printf "RSS %d MB, peak %d MB", r, h }' "/proc/$1/status"; }

cmd_spark_archive() {
    local n="${1:-30}" src="$BENCH_DIR/parquet" dst="$BENCH_DIR/spark" stamp which dir files secs pid t0
    [[ -x "$FLETCH" && -d "$src" ]] || die "no release fletch or no $src: run scripts/bench.sh data ROWS first"
    stamp="$(ls -l --time-style=+%s "$src" | md5sum)"
    if [[ "$(cat "$dst.stamp" 2>/dev/null)" != "$stamp" ]]; then
        rm -rf "$dst" "$dst.stamp"
        log "writing the rows of $src with Spark Structured Streaming into $dst"
        "$FLETCH_CACHE/venv/bin/python" scripts/bench_spark_archive.py convert "$src" "$dst" 2>"$BENCH_DIR/spark-convert.log" >&2 ||
            die "conversion failed; see $BENCH_DIR/spark-convert.log"
        echo "$stamp" > "$dst.stamp"
    fi
    for which in fletch spark; do
        dir="$src"; [[ "$which" == spark ]] && dir="$dst"
        files="$(data_files "$dir")"
        t0=$(date +%s.%N)
        secs="$(serve_archive "file://$dir" "$files")"
        pid="$(cat "$BENCH_DIR/server.pid")"
        {
            echo "$which-written archive: $files files, $(du -sh "$dir" | cut -f1); /ready after $secs s; $(rss_mb "$pid")"
            first_url "$BASE/api/query/hdfs/logs/aggregate?group_by=level" "hdfs aggregate group_by=level"
            echo "label rollups for every file $(wait_for_rollups "$t0") s after launch"
            echo "newest rows: $(wait_for_newest_rows "$t0")"
            latency_table hdfs "$n"
            echo "after the table: $(rss_mb "$pid")"
        } | tee "$BENCH_DIR/latency-$which.txt" >&2
    done
    cmd_stop_server
    # Side by side: median / p95 of each, and the Spark-written median over the fletch-written one.
    printf '%-44s %21s %21s %7s\n' query "fletch-written" "Spark-written" ratio
    awk 'FNR == NR { if (/ median /) { m[FNR] = $(NF - 4); p[FNR] = $(NF - 1) } next }
         / median / { printf "%-44s %9.2f / %8.2f %9.2f / %8.2f %6.2fx\n", substr($0, 6, 44), m[FNR], p[FNR], $(NF - 4), $(NF - 1), $(NF - 4) / m[FNR] }' \
        "$BENCH_DIR/latency-fletch.txt" "$BENCH_DIR/latency-spark.txt"
}

cmd_deep_pages() {
    local n="${1:-10}" dir="${BENCH_DEEP_DIR:-$BENCH_DIR/spark}" files secs t0 venv="$BENCH_DIR/duckdb-venv"
    [[ -x "$FLETCH" && -d "$dir" ]] || die "no release fletch or no $dir: run scripts/bench.sh spark-archive first"
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
        log "installing DuckDB $DUCKDB_VERSION into $venv (the reference)"
        python3 -m venv "$venv" && "$venv/bin/pip" install -q "duckdb==$DUCKDB_VERSION" >&2 || die "could not install DuckDB"
    fi
    files="$(data_files "$dir")"
    t0=$(date +%s.%N)
    secs="$(BENCH_SERVE_ARGS="--set parquet.newest_rows=0 ${BENCH_SERVE_ARGS:-}" serve_archive "file://$dir" "$files")"
    echo "$files files, $(du -sh "$dir" | cut -f1): /ready after $secs s; label rollups for every file" \
        "$(wait_for_rollups "$t0") s after launch"
    "$venv/bin/python" scripts/bench_deep_pages.py "$BASE" "$dir" "$n"
    echo "fletch after the pages: $(rss_mb "$(cat "$BENCH_DIR/server.pid")")"
    cmd_stop_server
}

cmd_many_files() {
    local want="${1:-10000}" n="${2:-30}" rows="${BENCH_MANY_ROWS:-1000000}" dir files secs pid
    [[ -x "$FLETCH" ]] || die "no release fletch at $FLETCH: run scripts/bench.sh data ROWS first"
    dir="$BENCH_DIR/many-$want-$rows"
    if [[ ! -f "$dir/_SUCCESS" ]]; then
        rm -rf "$dir"
        log "writing $want small files ($rows rows) with Spark into $dir"
        "$FLETCH_CACHE/venv/bin/python" scripts/bench_spark_archive.py small-files "$dir" "$want" "$rows" 2>"$BENCH_DIR/spark-many.log" >&2 ||
            die "writing failed; see $BENCH_DIR/spark-many.log"
    fi
    files="$(data_files "$dir")"
    local t0
    t0=$(date +%s.%N)
    secs="$(serve_archive "file://$dir" "$files")"
    pid="$(cat "$BENCH_DIR/server.pid")"
    local sql='{"sql": "SELECT level, count(*) AS n FROM hdfs.logs GROUP BY level ORDER BY n DESC"}'
    echo "$files files, $rows rows, $(du -sh "$dir" | cut -f1): listing + footers until /ready $secs s; $(rss_mb "$pid")"
    # First requests and medians while the rollups are still being built, then medians
    # once every file has one.
    for step in first_url "time_url $n" rollups "time_url $n"; do
        if [[ "$step" == rollups ]]; then
            echo "label rollups for every file $(wait_for_rollups "$t0") s after launch; $(rss_mb "$pid")"
            continue
        fi
        $step "$BASE/api/query/hdfs/logs?limit=100&count=none" "hdfs logs?limit=100"
        $step "$BASE/api/query/hdfs/logs/aggregate?group_by=level" "hdfs aggregate group_by=level"
        $step "$BASE/api/sql" "SQL GROUP BY level" -H 'Content-Type: application/json' -d "$sql"
        echo "$(rss_mb "$pid")"
    done
    cmd_stop_server
}

# CPU-seconds (user + system) a process has used so far, and its peak RSS in MB.
cpu_seconds() { awk '{ print ($14 + $15) / 100 }' "/proc/$1/stat"; }
peak_rss_mb() { awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$1/status"; }
# "; fletch CPU N s" since an earlier cpu_seconds reading $1 of process $2.
cpu_since() { awk -v a="$1" -v b="$(cpu_seconds "$2")" 'BEGIN { printf "; fletch CPU %.2f s\n", b - a }'; }

# PostgreSQL's own GROUP BY for each aggregate the latency table asks fletch for, run by
# psql (median and max of N), to put beside fletch's figure for the same query.
cmd_pg_groupby() {
    local n="${1:-3}" col filter sql
    for col in level service host; do
        for filter in "" "WHERE level = 'ERROR'"; do
            sql="SELECT $col, count(*) FROM logs $filter GROUP BY $col"
            for _ in $(seq 1 "$n"); do
                psql "$(pg_url)" -qAt -o /dev/null -c '\timing on' -c "$sql" | grep -o 'Time: [0-9.]*' | cut -d' ' -f2
            done | sort -n | awk -v label="$sql" '{ a[NR] = $1 } END {
                printf "%-58s median %8.1f ms   max %8.1f ms\n", label, a[int((NR + 1) / 2)], a[NR] }'
        done
    done
}

cmd_pgbench() {
    local secs="${1:-30}"
    printf 'SELECT id, "timestamp", level, service, host, message, metadata::text, created_at FROM logs ORDER BY "timestamp" DESC LIMIT 100;\n' > "$BENCH_DIR/newest.sql"
    pgbench -n -c 50 -j 2 -T "$secs" -f "$BENCH_DIR/newest.sql" -M prepared "$(pg_url)" 2>&1 | grep -E "tps|latency average|number of transactions"
}

cmd_throughput() {
    "$BENCH_DIR/loadgen" --base-url "$BASE" --scenario throughput --duration "${1:-30s}" --json "$BENCH_DIR/throughput.json"
}

cmd_replicas() {
    local secs="${1:-30}" n i pids lb_pid m0 f0 h0 p0 lb_cfg="$BENCH_DIR/haproxy.cfg"
    command -v haproxy >/dev/null || die "haproxy not found: scripts/setup.sh haproxy"
    cmd_stop_server
    for n in 1 2 3; do
        pids=()
        for i in $(seq 1 "$n"); do
            # The route measured never uses the PostgreSQL rollup: not built, so the
            # replicas' start-up does not share the cores with the measurement.
            "$FLETCH" serve --pg-url "$(pg_url)" --http-listen "127.0.0.1:$((18090 + i))" --flight-listen "" \
                --set postgres.rollup=false > "$BENCH_DIR/replica-$i.log" 2>&1 &
            pids+=($!)
        done
        for i in $(seq 1 "$n"); do
            for _ in $(seq 1 100); do curl -sf "127.0.0.1:$((18090 + i))/ready" >/dev/null && break; sleep 0.2; done
        done
        # The repository's balancer configuration, with the servers beyond N left out.
        sed -E "/ r($(seq -s '|' "$((n + 1))" 3))( |\")/d" deploy/haproxy/fletch.cfg > "$lb_cfg"
        FLETCH_LB_HTTP="127.0.0.1:$PORT" FLETCH_LB_FLIGHT=127.0.0.1:18089 \
            FLETCH_HTTP_1=127.0.0.1:18091 FLETCH_HTTP_2=127.0.0.1:18092 FLETCH_HTTP_3=127.0.0.1:18093 \
            FLETCH_FLIGHT_1=127.0.0.1:18094 FLETCH_FLIGHT_2=127.0.0.1:18095 FLETCH_FLIGHT_3=127.0.0.1:18096 \
            FLETCH_CHECK_PORT_1=18091 FLETCH_CHECK_PORT_2=18092 FLETCH_CHECK_PORT_3=18093 \
            haproxy -f "$lb_cfg" > "$BENCH_DIR/haproxy.log" 2>&1 &
        lb_pid=$!
        sleep 2
        m0="$(machine_cpu_seconds)" p0="$(postgres_cpu_seconds)" h0="$(cpu_seconds "$lb_pid")"
        f0=0; for i in "${pids[@]}"; do f0="$(awk -v a="$f0" -v b="$(cpu_seconds "$i")" 'BEGIN { print a + b }')"; done
        log "$n replica(s) behind HAProxy, ${secs} s closed loop"
        "$BENCH_DIR/loadgen" --base-url "$BASE" --scenario throughput_postgres_logs --duration "${secs}s" \
            --json "$BENCH_DIR/replicas-$n.json" | grep -E '^(throughput_postgres_logs|scenario) ' >&2 || true
        local f1=0; for i in "${pids[@]}"; do f1="$(awk -v a="$f1" -v b="$(cpu_seconds "$i")" 'BEGIN { print a + b }')"; done
        log "CPU seconds: fletch (all replicas) $(awk -v a="$f0" -v b="$f1" 'BEGIN { printf "%.1f", b - a }'), HAProxy $(awk -v a="$h0" -v b="$(cpu_seconds "$lb_pid")" 'BEGIN { printf "%.1f", b - a }'), PostgreSQL $(awk -v a="$p0" -v b="$(postgres_cpu_seconds)" 'BEGIN { printf "%.1f", b - a }'), the whole machine $(awk -v a="$m0" -v b="$(machine_cpu_seconds)" 'BEGIN { printf "%.1f", b - a }')"
        kill "$lb_pid" "${pids[@]}" 2>/dev/null || true
        wait "$lb_pid" "${pids[@]}" 2>/dev/null || true
    done
}

cmd_scenarios() {
    local mult="${1:?multiplier}" scale="${2:-1}"
    local rss_log="$BENCH_DIR/rss-scenarios-${mult}x.log" pid fletch0 pg0 machine0
    pid="$(cat "$BENCH_DIR/server.pid")"
    log "PostgreSQL rollup ready $(wait_for_pg_rollup "$(date +%s.%N)") (waited for)"
    fletch0="$(cpu_seconds "$pid")" pg0="$(postgres_cpu_seconds)" machine0="$(machine_cpu_seconds)"
    sample_rss "$rss_log" &
    local sampler=$!
    "$BENCH_DIR/loadgen" --base-url "$BASE" --scenario postgres_logs,postgres_aggregate,hdfs_logs,hdfs_aggregate \
        --vu-mult "$mult" --time-scale "$scale" --json "$BENCH_DIR/scenarios-${mult}x.json" &
    # The load generator's own CPU time: its last reading before it exits (within 1 s).
    local lg=$! lg_cpu=0
    while kill -0 "$lg" 2>/dev/null; do
        lg_cpu="$(cpu_seconds "$lg" 2>/dev/null || echo "$lg_cpu")"
        sleep 1
    done
    wait "$lg" || true
    kill "$sampler" 2>/dev/null || true
    log "load generator CPU seconds: $lg_cpu"
    log "fletch peak RSS during the run: $(sort -n "$rss_log" | tail -1) kB"
    log "CPU seconds during the run: fletch $(awk -v a="$fletch0" -v b="$(cpu_seconds "$pid")" 'BEGIN { printf "%.1f", b - a }'), PostgreSQL $(awk -v a="$pg0" -v b="$(postgres_cpu_seconds)" 'BEGIN { printf "%.1f", b - a }'), the whole machine $(awk -v a="$machine0" -v b="$(machine_cpu_seconds)" 'BEGIN { printf "%.1f", b - a }')"
}

# CPU-seconds the whole machine has been busy (every core; /proc/stat, idle and iowait excluded).
machine_cpu_seconds() { awk '/^cpu / { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / 100 }' /proc/stat; }

# CPU-seconds of the bench PostgreSQL: the postmaster, its live processes and the ones that
# ended (the postmaster's children times).
postgres_cpu_seconds() {
    local pm; pm="$(head -1 "$BENCH_DIR/pg/data/postmaster.pid")"
    { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat"
      for c in $(pgrep -P "$pm"); do awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null; done
    } | awk '{ s += $1 } END { printf "%.2f\n", s / 100 }'
}

sample_rss() {
    local pid; pid="$(cat "$BENCH_DIR/server.pid")"
    while kill -0 "$pid" 2>/dev/null; do
        awk '/VmRSS/ { print $2 }' "/proc/$pid/status" >> "$1"
        sleep 0.2
    done
}

cmd_export() {
    local src="${1:?source}" fmt="${2:?format}" limit="${3:-}" order="${4:-asc}"
    cmd_serve
    local pid; pid="$(cat "$BENCH_DIR/server.pid")"
    local q="format=$fmt"
    [[ -n "$limit" ]] && q="$q&limit=$limit"
    local start end bytes
    start=$(date +%s.%N)
    bytes=$(curl -s "$BASE/api/query/$src/logs/export?$q&order_dir=$order" | wc -c)
    end=$(date +%s.%N)
    local hwm; hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
    local rows="${limit:-$(curl -s "$BASE/api/query/$src/stats" | sed -E 's/.*"logs_count":([0-9]+).*/\1/')}"
    awk -v r="$rows" -v s="$start" -v e="$end" -v b="$bytes" -v h="$hwm" -v src="$src" -v f="$fmt" -v o="$order" 'BEGIN {
        printf "%s export %s %s: %d rows, %.1f MB in %.2f s = %.0f rows/s; fletch peak RSS %.0f MB\n", src, f, o, r, b / 1e6, e - s, r / (e - s), h / 1024 }'
}

cmd_flight() {
    cmd_serve
    local pid; pid="$(cat "$BENCH_DIR/server.pid")"
    "$FLETCH_CACHE/venv/bin/python" scripts/bench_flight.py "grpc://${BENCH_FLIGHT:-127.0.0.1:18081}"
    log "fletch peak RSS: $(peak_rss_mb "$pid") MB"
}

cmd_flight_ab() {
    local runs="${1:-4}" cpu_before
    cmd_serve
    local direct; direct="$(cat "$BENCH_DIR/server.pid")"
    "$FLETCH" serve --pg-url "$(pg_url)" --parquet-url "$PARQUET_URL" --http-listen 127.0.0.1:0 \
        --flight-listen 127.0.0.1:18091 --set flight.direct_do_get=false \
        > "$BENCH_DIR/server-tonic.out" 2> "$BENCH_DIR/server-tonic.log" &
    local tonic=$!
    sleep 12 # both servers build their rollups before the first run
    for i in $(seq 1 "$runs"); do
        for v in "direct $direct 18081" "tonic $tonic 18091"; do
            set -- $v
            cpu_before=$(cpu_seconds "$2")
            printf '%s run %d: ' "$1" "$i"
            "$FLETCH_CACHE/venv/bin/python" scripts/bench_doget.py "grpc://127.0.0.1:$3"
            cpu_since "$cpu_before" "$2"
        done
    done
    log "peak RSS: direct $(peak_rss_mb "$direct") MB, tonic $(peak_rss_mb "$tonic") MB"
    kill "$tonic"
}

cmd_flight_floor() {
    local runs="${1:-3}" pid cpu_before bytes
    build
    cmd_serve
    pid="$(cat "$BENCH_DIR/server.pid")"
    sleep 12 # rollups are built in the background after start; let them finish first
    [[ "$PARQUET_URL" == file://* ]] || die "flight-floor decodes a local archive (BENCH_PARQUET_URL=file://...)"
    "$CARGO_TARGET_DIR/release/examples/decode_archive" "${PARQUET_URL#file://}" 2
    bytes=$(curl -s "$BASE/api/query/hdfs/logs/export?format=arrow" | wc -c)
    python3 scripts/bench_loopback.py "$bytes"
    for i in $(seq 1 "$runs"); do
        cpu_before=$(cpu_seconds "$pid")
        printf 'pyarrow do_get run %d: ' "$i"
        "$FLETCH_CACHE/venv/bin/python" scripts/bench_doget.py "grpc://${BENCH_FLIGHT:-127.0.0.1:18081}"
        cpu_since "$cpu_before" "$pid"
        cpu_before=$(cpu_seconds "$pid")
        printf 'Rust do_get run %d: ' "$i"
        "$CARGO_TARGET_DIR/release/examples/flight_do_get" "http://${BENCH_FLIGHT:-127.0.0.1:18081}" | tr -d '\n'
        cpu_since "$cpu_before" "$pid"
    done
    log "fletch peak RSS: $(peak_rss_mb "$pid") MB"
}

cmd_slow_readers() {
    local n="${1:?readers}" secs="${2:-30}"
    # A fresh process per run, so its VmHWM is this run's peak.
    cmd_serve --set "admission.export_permits=$n"
    local pid
    pid="$(cat "$BENCH_DIR/server.pid")"
    log "fletch RSS before: $(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status") MB"
    python3 scripts/bench_slow_readers.py "$BASE" "$pid" "$n" "$secs"
    cmd_serve
}

BALLISTA_SQL="SELECT service, host, level, count(*) AS n, avg(length(message)) AS avg_len, \
min(timestamp) AS first, max(timestamp) AS last FROM hdfs.logs GROUP BY service, host, level"

# RUNS timings of the aggregate with engine $2, after one warm-up; label $3.
time_sql() {
    local runs="$1" engine="$2" body
    body="{\"sql\": \"$BALLISTA_SQL\", \"engine\": \"$engine\", \"format\": \"csv\"}"
    curl -sf -o /dev/null -d "$body" "$BASE/api/sql" || die "the $engine run failed: $(curl -s -d "$body" "$BASE/api/sql")"
    for _ in $(seq 1 "$runs"); do
        curl -sf -o /dev/null -w '%{time_total}\n' -d "$body" "$BASE/api/sql"
    done | sort -n | awk -v label="$3" '{ a[NR] = $1 * 1000 } END {
        printf "%-40s median %9.1f ms   min %9.1f ms\n", label, a[int((NR + 1) / 2)], a[1] }'
}

sum_cpu() { local t=0 p; for p in "$@"; do t="$(awk -v a="$t" -v b="$(cpu_seconds "$p")" 'BEGIN { print a + b }')"; done; echo "$t"; }

cmd_ballista() {
    local runs="${1:-5}" url="${BENCH_BALLISTA_URL:-file://$BENCH_DIR/ballista-10m}" sched n i pids f0 s0 e0
    if [[ -z "${BENCH_BALLISTA_URL:-}" && ! -d "$BENCH_DIR/ballista-10m" ]]; then
        build
        log "writing 10,000,000 rows into $url (20 files)"
        "$FLETCH" load --parquet "$url" --rows 10000000 --file-rows 500000 --quiet
    fi
    cmd_stop_server
    "$FLETCH" scheduler --listen 127.0.0.1:18070 --parquet-url "$url" > "$BENCH_DIR/scheduler.log" 2>&1 &
    sched=$!
    serve_archive "$url" "$(data_files "${url#file://}")" > /dev/null
    cmd_stop_server
    "$FLETCH" serve --parquet-url "$url" --http-listen "127.0.0.1:$PORT" --flight-listen "" \
        --set cache.ttl_ms=0 --set ballista.scheduler=df://127.0.0.1:18070 \
        --set admission.query_timeout_ms=600000 > "$BENCH_DIR/server.out" 2> "$BENCH_DIR/server.log" &
    echo $! > "$BENCH_DIR/server.pid"
    for _ in $(seq 1 300); do curl -sf "$BASE/ready" >/dev/null 2>&1 && break; sleep 0.2; done
    log "$(du -sh "${url#file://}" 2>/dev/null | cut -f1) archive, $runs runs each: $BALLISTA_SQL"
    f0="$(cpu_seconds "$(cat "$BENCH_DIR/server.pid")")"
    time_sql "$runs" local "local (DataFusion in fletch)" >&2
    log "CPU seconds: fletch $(awk -v a="$f0" -v b="$(cpu_seconds "$(cat "$BENCH_DIR/server.pid")")" 'BEGIN { printf "%.1f", b - a }')"
    pids=()
    for n in 1 2; do
        i=$((n - 1))
        "$FLETCH" executor --scheduler df://127.0.0.1:18070 --flight-port $((18071 + 2 * i)) \
            --grpc-port $((18072 + 2 * i)) --slots 2 --parquet-url "$url" > "$BENCH_DIR/executor-$n.log" 2>&1 &
        pids+=($!)
        sleep 3
        f0="$(cpu_seconds "$(cat "$BENCH_DIR/server.pid")")" s0="$(cpu_seconds "$sched")" e0="$(sum_cpu "${pids[@]}")"
        time_sql "$runs" ballista "Ballista, $n executor(s)" >&2
        log "CPU seconds: fletch $(awk -v a="$f0" -v b="$(cpu_seconds "$(cat "$BENCH_DIR/server.pid")")" 'BEGIN { printf "%.1f", b - a }'), scheduler $(awk -v a="$s0" -v b="$(cpu_seconds "$sched")" 'BEGIN { printf "%.1f", b - a }'), executors $(awk -v a="$e0" -v b="$(sum_cpu "${pids[@]}")" 'BEGIN { printf "%.1f", b - a }')"
    done
    kill "${pids[@]}" "$sched" 2>/dev/null || true
    wait "${pids[@]}" "$sched" 2>/dev/null || true
    cmd_stop_server
}

cmd_stop() {
    cmd_stop_server
    bash scripts/pg.sh stop "$BENCH_DIR/pg" >/dev/null 2>&1 || true
}

case "${1:-}" in
    data|serve|latency|pgbench|throughput|replicas|scenarios|export|flight|stop) c="$1"; shift; "cmd_$c" "$@" ;;
    flight-ab) shift; cmd_flight_ab "$@" ;;
    flight-floor) shift; cmd_flight_floor "$@" ;;
    slow-readers) shift; cmd_slow_readers "$@" ;;
    spark-archive) shift; cmd_spark_archive "$@" ;;
    deep-pages) shift; cmd_deep_pages "$@" ;;
    many-files) shift; cmd_many_files "$@" ;;
    ballista) shift; cmd_ballista "$@" ;;
    pg-groupby) shift; cmd_pg_groupby "$@" ;;
    *) sed -n '2,53p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
