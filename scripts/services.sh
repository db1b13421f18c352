# shellcheck shell=bash
# Local PostgreSQL and Redis for the demo and the tests. Sourced, not run:
#
#   source scripts/services.sh
#   ensure_packages   # apt-get installs redis-server / postgresql when missing
#                     # (`ensure_packages aiosmtpd`: python3-aiosmtpd too, for the tests)
#   start_postgres    # exports DATABASE_URL (fresh database `penguin`)
#   start_redis       # exports REDIS_URL (empty, nothing persisted); with
#                     # REDIS_CLUSTER=1 a 3-master Redis Cluster instead, and
#                     # REDIS_CLUSTER_URLS (its masters, comma-separated: the
#                     # engine's `[redis] cluster`)
#
# When DATABASE_URL / REDIS_URL are already set they are used as they are and
# nothing is started for them. Servers started here listen on a free loopback
# port and are stopped by PID when the sourcing shell exits (an EXIT trap).
# Postgres data lives in .local/pg/<major>/ under the repository (gitignored).
# Postgres runs with durability off (fsync, synchronous_commit and
# full_page_writes off) unless SERVICES_PG_FSYNC=on: then all three are on, as
# on a production server (for benchmarks whose figures must hold there). Not
# a PENGUIN_* name: the configuration owns that prefix and rejects unknown keys.

set -euo pipefail

PENGUIN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PENGUIN_PG_PID=""
PENGUIN_REDIS_PID=""
PENGUIN_REDIS_CLUSTER_PIDS=()
PENGUIN_TRAP_SET=0

log() {
    printf '==> %s\n' "$*" >&2
}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Prints the directory holding initdb and postgres (PATH first, then Debian's
# /usr/lib/postgresql/<version>/bin, newest version first); fails when none.
find_pg_bindir() {
    local initdb dir
    if initdb="$(command -v initdb 2>/dev/null)"; then
        dir="$(dirname "$(readlink -f "$initdb")")"
        if [[ -x "$dir/postgres" ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    fi
    while IFS= read -r dir; do
        if [[ -x "$dir/initdb" && -x "$dir/postgres" ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done < <(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -rV)
    return 1
}

# Installs what is missing: redis-server (unless REDIS_URL is set),
# postgresql (unless DATABASE_URL is set or initdb is found) and gcc when no
# `cc` is found. With the argument
# `aiosmtpd` also python3-aiosmtpd (and python3) when Debian's /usr/bin/python3
# cannot import aiosmtpd: the SMTP server we did not write, which the
# foreign_smtp end-to-end scenarios talk to.
ensure_packages() {
    local missing=() want
    if [[ -z "${REDIS_URL:-}" ]] && ! command -v redis-server >/dev/null 2>&1; then
        missing+=(redis-server)
    fi
    if [[ -z "${DATABASE_URL:-}" ]] && ! find_pg_bindir >/dev/null; then
        missing+=(postgresql)
    fi
    # ring (TLS, DKIM) compiles C: cargo needs a C compiler as `cc`.
    if ! command -v cc >/dev/null 2>&1; then
        missing+=(gcc libc6-dev)
    fi
    for want in "$@"; do
        case "$want" in
            aiosmtpd)
                if ! /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
                    [[ -x /usr/bin/python3 ]] || missing+=(python3)
                    missing+=(python3-aiosmtpd)
                fi
                ;;
            *) die "ensure_packages: unknown extra package set $want" ;;
        esac
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 ||
            die "missing ${missing[*]}: install them (or set DATABASE_URL / REDIS_URL for the servers)"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "missing ${missing[*]} and no apt-get: install them (or set DATABASE_URL / REDIS_URL for the servers)"
    log "installing ${missing[*]} (apt-get)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Prints a loopback TCP port that nothing listens on right now.
free_port() {
    local port attempt
    for attempt in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
        : "$attempt"
    done
    die "no free loopback port found"
}

# Runs a command as the `postgres` user when we are root (initdb and postgres
# refuse to run as root), as ourselves otherwise. Keeps the PID (exec).
as_pg_user() {
    if ((EUID == 0)); then
        exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
    fi
    exec "$@"
}

# Waits up to $2 seconds for the command $3... to succeed while PID $1 lives.
wait_until() {
    local pid="$1" seconds="$2" tries
    shift 2
    for ((tries = 0; tries < seconds * 10; tries++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

install_trap() {
    if ((PENGUIN_TRAP_SET == 0)); then
        trap stop_services EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        PENGUIN_TRAP_SET=1
    fi
}

# Stops the servers this shell started, by PID: politely, then by force.
stop_services() {
    stop_pid "$PENGUIN_REDIS_PID" TERM redis-server
    local pid
    for pid in "${PENGUIN_REDIS_CLUSTER_PIDS[@]}"; do
        stop_pid "$pid" TERM "redis-server (cluster)"
    done
    PENGUIN_REDIS_CLUSTER_PIDS=()
    stop_pid "$PENGUIN_PG_PID" INT postgres
    PENGUIN_REDIS_PID=""
    PENGUIN_PG_PID=""
}

stop_pid() {
    local pid="$1" signal="$2" name="$3" tries
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    log "stopping $name (pid $pid)"
    kill "-$signal" "$pid" 2>/dev/null || true
    for ((tries = 0; tries < 100; tries++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "$name (pid $pid) did not stop in 10 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

# Starts Postgres from .local/pg/<major> (initdb on first use) on a free
# loopback port with durability off (on with SERVICES_PG_FSYNC=on), recreates
# database `penguin`, and exports
# DATABASE_URL. Does nothing when DATABASE_URL is already set.
start_postgres() {
    if [[ -n "${DATABASE_URL:-}" ]]; then
        log "using DATABASE_URL as given"
        return 0
    fi
    local bindir major base data port logfile
    bindir="$(find_pg_bindir)" || die "PostgreSQL not found: run ensure_packages or set DATABASE_URL"
    major="$("$bindir/postgres" --version | sed -nE 's/^[^0-9]*([0-9]+).*/\1/p')"
    base="$PENGUIN_ROOT/.local/pg/$major"
    mkdir -p "$base"
    if ((EUID == 0)); then
        # The postgres user must reach the data directory; a clone under /root cannot.
        if ! setpriv --reuid=postgres --regid=postgres --init-groups -- test -x "$base"; then
            base="${TMPDIR:-/tmp}/penguin-pg-$major-$(printf '%s' "$PENGUIN_ROOT" | cksum | cut -d' ' -f1)"
            log "postgres user cannot reach $PENGUIN_ROOT; using $base"
            mkdir -p "$base"
        fi
        chown postgres:postgres "$base"
    fi
    data="$base/data"
    logfile="$base/postgres.log"
    if [[ ! -f "$data/PG_VERSION" ]]; then
        log "initdb $data"
        rm -rf "$data"
        (as_pg_user "$bindir/initdb" --no-sync -A trust -U postgres -E UTF8 \
            --locale=C -D "$data") >"$base/initdb.log" 2>&1 ||
            die "initdb failed: see $base/initdb.log"
    fi
    clear_stale_pidfile "$data"
    port="$(free_port)"
    log "starting postgres $major on 127.0.0.1:$port (log: $logfile)"
    install_trap
    local durability=off
    case "${SERVICES_PG_FSYNC:-off}" in
        on) durability=on ;;
        off) ;;
        *) die "SERVICES_PG_FSYNC must be on or off, got ${SERVICES_PG_FSYNC}" ;;
    esac
    log "postgres durability: fsync, synchronous_commit, full_page_writes $durability"
    (as_pg_user "$bindir/postgres" -D "$data" -p "$port" \
        -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
        -c fsync="$durability" -c synchronous_commit="$durability" \
        -c full_page_writes="$durability" \
        -c max_connections=200) >"$logfile" 2>&1 &
    PENGUIN_PG_PID=$!
    if ! wait_until "$PENGUIN_PG_PID" 60 "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
        tail -n 20 "$logfile" >&2 || true
        die "postgres did not become ready"
    fi
    PGOPTIONS="-c client_min_messages=warning" "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c 'DROP DATABASE IF EXISTS penguin WITH (FORCE)' \
        -c 'CREATE DATABASE penguin' >/dev/null
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/penguin"
    log "DATABASE_URL=$DATABASE_URL"
}

# A postmaster.pid left by a killed run blocks the start when its PID now
# belongs to another process; remove it unless a postgres really holds it.
clear_stale_pidfile() {
    local pidfile="$1/postmaster.pid" pid
    [[ -f "$pidfile" ]] || return 0
    pid="$(head -n 1 "$pidfile")"
    if [[ -n "$pid" && -r "/proc/$pid/comm" ]] && grep -qx 'postgres' "/proc/$pid/comm"; then
        die "a postgres (pid $pid) already runs on $1: stop it or set DATABASE_URL"
    fi
    rm -f "$pidfile"
}

redis_ping() {
    local port="$1" reply
    if command -v redis-cli >/dev/null 2>&1; then
        [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == "PONG" ]]
        return
    fi
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'PING\r\n' >&3
    read -r -t 2 reply <&3 || true
    exec 3>&-
    [[ "$reply" == "+PONG"* ]]
}

# Starts an empty, non-persistent redis-server on a free loopback port and
# exports REDIS_URL. Does nothing when REDIS_URL is already set. With
# REDIS_CLUSTER=1: a Redis Cluster instead (start_redis_cluster).
start_redis() {
    if [[ "${REDIS_CLUSTER:-}" == 1 ]]; then
        start_redis_cluster
        return 0
    fi
    if [[ -n "${REDIS_URL:-}" ]]; then
        log "using REDIS_URL as given"
        return 0
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis-server not found: run ensure_packages or set REDIS_URL"
    local port logdir
    port="$(free_port)"
    logdir="$PENGUIN_ROOT/.local/redis"
    mkdir -p "$logdir"
    log "starting redis-server on 127.0.0.1:$port (log: $logdir/redis.log)"
    install_trap
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$logdir" >"$logdir/redis.log" 2>&1 &
    PENGUIN_REDIS_PID=$!
    if ! wait_until "$PENGUIN_REDIS_PID" 30 redis_ping "$port"; then
        tail -n 20 "$logdir/redis.log" >&2 || true
        die "redis-server did not become ready"
    fi
    export REDIS_URL="redis://127.0.0.1:$port"
    log "REDIS_URL=$REDIS_URL"
}

# Starts three empty, non-persistent cluster-enabled redis-servers on free
# loopback ports (each with its bus port, +10000), joins them with
# `redis-cli --cluster create`, and exports REDIS_CLUSTER_URLS (the masters,
# comma-separated; the engine reads it as `[redis] cluster`) and REDIS_URL
# (the first master). Does nothing when REDIS_CLUSTER_URLS is already set.
start_redis_cluster() {
    if [[ -n "${REDIS_CLUSTER_URLS:-}" ]]; then
        log "using REDIS_CLUSTER_URLS as given"
        return 0
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis-server not found: run ensure_packages"
    command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found: install redis-tools"
    local i port dir ports=() seeds=() addresses=()
    install_trap
    for i in 0 1 2; do
        port="$(free_port)"
        while ((port >= 55000)) || [[ " ${ports[*]} " == *" $port "* ]] ||
            (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null; do
            port="$(free_port)"
        done
        dir="$PENGUIN_ROOT/.local/redis-cluster/m$i"
        rm -rf "$dir"
        mkdir -p "$dir"
        log "starting redis-server (cluster) on 127.0.0.1:$port (log: $dir/redis.log)"
        redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
            --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
            --save '' --appendonly no --daemonize no --dir "$dir" >"$dir/redis.log" 2>&1 &
        PENGUIN_REDIS_CLUSTER_PIDS+=($!)
        if ! wait_until "$!" 30 redis_ping "$port"; then
            tail -n 20 "$dir/redis.log" >&2 || true
            die "redis-server (cluster) did not become ready"
        fi
        ports+=("$port")
        seeds+=("redis://127.0.0.1:$port")
        addresses+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${addresses[@]}" --cluster-replicas 0 --cluster-yes >/dev/null ||
        die "redis-cli --cluster create failed"
    for i in $(seq 1 300); do
        if redis-cli -p "${ports[0]}" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
            break
        fi
        ((i < 300)) || die "the redis cluster did not become ok"
        sleep 0.1
    done
    REDIS_CLUSTER_URLS="$(IFS=,; printf '%s' "${seeds[*]}")"
    export REDIS_CLUSTER_URLS
    export REDIS_URL="${seeds[0]}"
    log "REDIS_CLUSTER_URLS=$REDIS_CLUSTER_URLS"
}

# Puts cargo on PATH (rustup's ~/.cargo/bin when the shell lacks it) or dies.
ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -f "${HOME:-/nonexistent}/.cargo/env" ]]; then
        # shellcheck source=/dev/null
        source "${HOME:-/nonexistent}/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (https://rustup.rs)"
}

# Starts (or reuses) Postgres and Redis, then runs `penguin <command> <args>`
# built in release mode; the servers stop when the calling script exits.
run_penguin_with_services() {
    ensure_cargo
    ensure_packages
    start_postgres
    start_redis
    log "cargo run --release --locked -- $*"
    cargo run --release --locked -- "$@"
}
