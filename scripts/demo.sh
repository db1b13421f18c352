#!/usr/bin/env bash
# Runs the demo: a whole campaign against the built-in loopback SMTP sink.
# Starts local Postgres and Redis (installing them when missing) unless
# DATABASE_URL / REDIS_URL point at existing servers; stops them on exit.
# Arguments pass through to `penguin demo`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

run_penguin_with_services demo "$@"
