#!/usr/bin/env bash
# Runs the demo: a whole campaign against the built-in loopback SMTP sink.
# Starts local Postgres and Redis (installing them when missing) unless
# DATABASE_URL / REDIS_URL point at existing servers; stops them on exit.
# Arguments pass through to `penguin demo`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

if ! command -v cargo >/dev/null 2>&1 && [[ -f "${HOME:-/nonexistent}/.cargo/env" ]]; then
    # shellcheck source=/dev/null
    source "${HOME:-/nonexistent}/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (https://rustup.rs)"

ensure_packages
start_postgres
start_redis
log "cargo run --release --locked -- demo $*"
cargo run --release --locked -- demo "$@"
