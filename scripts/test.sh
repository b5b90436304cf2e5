#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# when it is missing, then runs every test. The tests start their own servers.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
fi

# An S3-protocol server for the object store tests.
if ! python3 -c 'import moto.server, flask' >/dev/null 2>&1; then
    echo "installing moto[server] (S3-protocol server for the tests)" >&2
    python3 -m pip install --quiet 'moto[server]>=5,<6'
fi

# The validator the API tests check the OpenAPI document with.
if ! python3 -c 'import openapi_spec_validator' >/dev/null 2>&1; then
    echo "installing openapi-spec-validator" >&2
    python3 -m pip install --quiet 'openapi-spec-validator>=0.7,<1'
fi

# The OpenAPI conformance test generates requests with schemathesis.
if ! command -v schemathesis >/dev/null 2>&1; then
    echo "installing schemathesis (checks the API against its OpenAPI document)" >&2
    python3 -m pip install --quiet 'schemathesis>=4.3,<5'
fi

# A PostgreSQL server for the warehouse tests (they start their own on a free port).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    echo "installing PostgreSQL (the warehouse tests load into a real server)" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
fi

# Formatting and lints first: they fail in seconds where the tests take minutes.
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# The product build must not carry the crash-test failpoints.
if cargo tree --locked -p materializer -e features --edges normal 2>/dev/null | grep -q 'failpoints'; then
    echo "the product build enables the failpoints feature" >&2
    exit 1
fi
cargo test --locked --workspace --all-targets "$@"
