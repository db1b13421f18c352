#!/usr/bin/env bash
# Runs the end-to-end benchmark (penguin bench) against the built-in loopback
# sink, with the raw-SMTP ceiling in the same run (see BENCHMARKS.md).
# Starts local Postgres and Redis (installing them when missing) unless
# DATABASE_URL / REDIS_URL point at existing servers; stops them on exit.
# `--fsync` (anywhere among the arguments) starts Postgres with fsync, synchronous_commit and
# full_page_writes on (SERVICES_PG_FSYNC=on) instead of the fast throwaway setup.
# Other arguments pass through to `penguin bench` (e.g. --messages 20000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
args=()
for arg in "$@"; do
    if [[ "$arg" == "--fsync" ]]; then
        export SERVICES_PG_FSYNC=on
    else
        args+=("$arg")
    fi
done
# shellcheck source=scripts/services.sh
source scripts/services.sh

run_penguin_with_services bench "${args[@]}"
