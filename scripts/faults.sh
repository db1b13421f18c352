#!/usr/bin/env bash
# Runs the fault harness: `penguin faults --config config/faults.toml` with any
# further arguments (e.g. `--faults kill=20 --leads 5000`), against local
# Postgres and Redis started here (installed when missing) unless
# DATABASE_URL / REDIS_URL point at existing servers; stops them on exit.
# A later --config replaces config/faults.toml.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

run_penguin_with_services faults --config config/faults.toml "$@"
