#!/usr/bin/env bash
# Runs the whole test suite: `cargo test --workspace --locked`, extra arguments
# passed through (e.g. `bash scripts/test.sh --test e2e harness_smoke`).
# Only makes sure redis-server, PostgreSQL and python3-aiosmtpd are installed:
# the end-to-end tests start their own throwaway instances (tests/e2e/support;
# aiosmtpd is the independent SMTP server of the foreign_smtp scenarios). With
# DATABASE_URL set they create their databases on that server instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

ensure_cargo

log "checking for redis-server, PostgreSQL and python3-aiosmtpd"
ensure_packages aiosmtpd
log "cargo test --workspace --locked $*"
cargo test --workspace --locked "$@"
