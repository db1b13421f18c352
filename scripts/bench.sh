#!/usr/bin/env bash
# Runs the end-to-end throughput benchmark (penguin bench) against the built-in
# loopback sink, with the raw-SMTP ceiling in the same run.
# Starts local Postgres and Redis (installing them when missing) unless
# DATABASE_URL / REDIS_URL point at existing servers; stops them on exit.
# Arguments pass through to `penguin bench` (e.g. --messages 20000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

run_penguin_with_services bench "$@"
