#!/usr/bin/env bash
# Idempotent installer for fletch's tests, CI and demo. Installs only what is missing;
# a second run takes seconds.
#
#   scripts/setup.sh pg        PostgreSQL server (Debian packages) -- enough for the demo
#   scripts/setup.sh java      JDK 17 + Maven
#   scripts/setup.sh minidfs   java + build tools/minidfs (fetches Hadoop's jars into ~/.m2)
#   scripts/setup.sh jars      java + Flight SQL JDBC driver into $FLETCH_CACHE/jars
#   scripts/setup.sh python    Python venv at $FLETCH_CACHE/venv (scripts/requirements-test.txt)
#   scripts/setup.sh haproxy   HAProxy (Debian package) for the replica test
#   scripts/setup.sh helm      helm (Go module, built once into $FLETCH_CACHE/go/bin) for deploy/
#   scripts/setup.sh all       everything above (the default)
#   scripts/setup.sh image     podman, buildah, debootstrap, runc for deploy/build-image.sh (not in all)
# Several parts may be given: scripts/setup.sh pg python
#
# Environment:
#   FLETCH_CACHE                 /var/cache/fletch (venv/, jars/, minidfs/, logs)
#   FLETCH_PYTHON                python3 (interpreter used to create the venv)
#   FLIGHT_SQL_JDBC_VERSION      18.3.0
#   HELM_VERSION                 v4.3.2 (helm.sh/helm/v4)
#   MAVEN_REPO                   Maven local repository (default ~/.m2/repository)
set -euo pipefail
FLETCH_LOG_TAG=setup
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FLIGHT_SQL_JDBC_VERSION="${FLIGHT_SQL_JDBC_VERSION:-18.3.0}"
HELM_VERSION="${HELM_VERSION:-v4.3.2}"
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
export DEBIAN_FRONTEND=noninteractive

usage() {
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ------------------------------------------------------------------ Debian packages
APT_UPDATED=0

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

apt_install() {
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "Debian packages present: $*"
        return 0
    fi
    command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root (or sudo) to install: ${missing[*]}"
        sudo=(sudo -E)
    fi
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        "${sudo[@]}" apt-get update -qq >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >&2 || die "apt-get install failed: ${missing[*]}"
}

# ------------------------------------------------------------------ parts
part_pg() {
    apt_install postgresql postgresql-contrib procps ca-certificates curl
    local bindir=""
    # shellcheck disable=SC2012
    bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    [[ -n "$bindir" && -x "$bindir/initdb" && -x "$bindir/postgres" ]] \
        || die "PostgreSQL installed but initdb/postgres not found under /usr/lib/postgresql/*/bin"
    log "PostgreSQL ok: $("$bindir/postgres" --version)"
}

JAVA_OK=0
part_java() {
    [[ $JAVA_OK -eq 0 ]] || return 0
    apt_install openjdk-17-jdk-headless maven curl procps ca-certificates
    command -v java >/dev/null || die "java not on PATH after installing openjdk-17-jdk-headless"
    command -v mvn >/dev/null || die "mvn not on PATH after installing maven"
    local jv
    jv="$(java -version 2>&1 | head -n1)"
    [[ "$jv" =~ \"(1[7-9]|2[0-9])[.\"] ]] || log "warning: java is '$jv'; Java 17 is the tested version"
    log "Java ok: $jv; $(mvn -v 2>/dev/null | head -n1 | sed 's/\x1b\[[0-9;]*m//g')"
    JAVA_OK=1
}

part_minidfs() {
    part_java
    log "MiniDFS: building tools/minidfs if changed (first run downloads ~100 MB of Hadoop jars)"
    "$FLETCH_SCRIPTS_DIR/minidfs.sh" build
    log "MiniDFS ok: tools/minidfs/target"
}

part_jars() {
    part_java
    local dir="$FLETCH_CACHE/jars"
    local jar="$dir/flight-sql-jdbc-driver-$FLIGHT_SQL_JDBC_VERSION.jar"
    mkdir -p "$dir"
    if [[ ! -s "$jar" ]]; then
        log "fetching org.apache.arrow:flight-sql-jdbc-driver:$FLIGHT_SQL_JDBC_VERSION (Maven Central)"
        local margs; mapfile -t margs < <(maven_args)
        local blog; blog="$(mktemp)"
        if ! mvn "${margs[@]}" -q "$DEPENDENCY_PLUGIN:copy" \
            "-Dartifact=org.apache.arrow:flight-sql-jdbc-driver:$FLIGHT_SQL_JDBC_VERSION" \
            "-DoutputDirectory=$dir" >"$blog" 2>&1; then
            tail -n 30 "$blog" >&2; rm -f "$blog"
            die "could not fetch flight-sql-jdbc-driver $FLIGHT_SQL_JDBC_VERSION (set FLIGHT_SQL_JDBC_VERSION?)"
        fi
        rm -f "$blog"
        [[ -s "$jar" ]] || die "mvn dependency:copy succeeded but $jar is missing"
    fi
    # Stable name for tests and the Spark demo.
    ln -sfn "$(basename "$jar")" "$dir/flight-sql-jdbc-driver.jar"
    log "JDBC driver ok: $dir/flight-sql-jdbc-driver.jar -> $(basename "$jar")"
}

part_python() {
    local req="$FLETCH_SCRIPTS_DIR/requirements-test.txt"
    local venv="$FLETCH_CACHE/venv"
    local py="${FLETCH_PYTHON:-python3}"
    local stamp
    stamp="$(sha256sum < "$req" | cut -d' ' -f1)"
    if [[ -x "$venv/bin/python" && -f "$venv/.fletch-stamp" && "$(cat "$venv/.fletch-stamp")" == "$stamp" ]] \
        && "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        log "Python venv ok: $venv ($("$venv/bin/python" --version 2>&1))"
        return 0
    fi
    if ! command -v "$py" >/dev/null 2>&1; then
        apt_install python3 python3-venv
        py=python3
    fi
    "$py" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' 2>/dev/null \
        || die "$py is older than Python 3.9 (set FLETCH_PYTHON)"
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        rm -rf "$venv"
        log "creating venv $venv with $("$py" --version 2>&1)"
        if ! "$py" -m venv "$venv" 2>/dev/null; then
            # Debian's system python needs python3-venv for ensurepip.
            rm -rf "$venv"
            apt_install python3-venv
            "$py" -m venv "$venv" || die "python -m venv failed"
        fi
    fi
    log "installing Python packages into $venv (first run downloads ~450 MB, pyspark is the bulk)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2 \
        || die "pip upgrade failed"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2 \
        || die "pip install -r $req failed"
    "$venv/bin/python" -c 'import pyarrow.flight, adbc_driver_flightsql.dbapi, adbc_driver_manager, pyspark, pandas, pytest, requests' \
        || die "venv import check failed"
    echo "$stamp" > "$venv/.fletch-stamp"
    log "Python venv ok: $venv (pyarrow $("$venv/bin/python" -c 'import pyarrow; print(pyarrow.__version__)'), pyspark $("$venv/bin/python" -c 'import pyspark; print(pyspark.__version__)'))"
}

part_haproxy() {
    apt_install haproxy
    log "HAProxy ok: $(haproxy -v 2>/dev/null | head -n1)"
}

part_image() {
    # runc: crun refuses cgroups in hybrid mode, which some hosts (and VMs) still use.
    apt_install podman buildah debootstrap runc
    log "image tools ok: $(podman --version), $(buildah --version | cut -d' ' -f1-3)"
}

# helm lints and renders deploy/helm/fletch in scripts/test.sh. It is built from its Go
# module once (about 2 minutes and 1.7 GB of Go caches when they are cold) and kept with a
# stamp naming the version, since `helm version` of a `go install` build omits the patch.
part_helm() {
    local gobin="$FLETCH_CACHE/go/bin"
    local stamp="$gobin/.helm-$HELM_VERSION"
    if [[ -x "$gobin/helm" && -f "$stamp" ]]; then
        log "helm ok: $gobin/helm ($HELM_VERSION)"
        return 0
    fi
    command -v go >/dev/null || die "go not found: it builds helm"
    log "building helm $HELM_VERSION (go install helm.sh/helm/v4/cmd/helm; once)"
    local t0=$SECONDS
    mkdir -p "$gobin"
    rm -f "$gobin"/.helm-*
    GOBIN="$gobin" GOFLAGS=-mod=mod go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >&2 \
        || die "go install helm.sh/helm/v4/cmd/helm@$HELM_VERSION failed"
    touch "$stamp"
    log "helm ok: $gobin/helm ($HELM_VERSION, built in $((SECONDS - t0)) s)"
}

# ------------------------------------------------------------------ main
parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=(all)
for p in "${parts[@]}"; do
    case "$p" in
        pg|java|minidfs|jars|python|haproxy|helm|image|all) ;;
        -h|--help|help) usage ;;
        *) log "unknown part '$p'"; usage ;;
    esac
done
fletch_cache_dir
t0=$SECONDS
for p in "${parts[@]}"; do
    case "$p" in
        pg) part_pg ;;
        java) part_java ;;
        minidfs) part_minidfs ;;
        jars) part_jars ;;
        python) part_python ;;
        haproxy) part_haproxy ;;
        helm) part_helm ;;
        image) part_image ;;
        all) part_pg; part_java; part_minidfs; part_jars; part_python; part_haproxy; part_helm ;;
    esac
done
log "done in $((SECONDS - t0))s (FLETCH_CACHE=$FLETCH_CACHE)"
