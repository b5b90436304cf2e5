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

# The SQL parser the warehouse tests read Redshift's and Oracle's SQL with
# (no server of either is reachable here).
if ! python3 -c 'import sqlglot' >/dev/null 2>&1; then
    echo "installing sqlglot (parses the Redshift and Oracle import SQL in the tests)" >&2
    python3 -m pip install --quiet 'sqlglot>=30.31,<31'
fi

# DuckDB: the pipeline bench's smoke run (part of the tests) checks the
# engine's rows against the analyst's DuckDB script.
if ! python3 -c 'import duckdb' >/dev/null 2>&1; then
    echo "installing duckdb (the bench smoke compares the engine's rows with DuckDB's)" >&2
    python3 -m pip install --quiet 'duckdb>=1.1,<3'
fi

# A PostgreSQL server for the warehouse tests (they start their own, on a Unix socket).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    echo "installing PostgreSQL (the warehouse tests load into a real server)" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
fi

# A headless browser for the web console's test (driven through chromedriver).
if ! command -v chromedriver >/dev/null 2>&1 || ! { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
    echo "installing chromium and chromium-driver (the console is tested in a real browser)" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# Node and npm: the console's build is checked against its sources, and its
# test reads axe-core (the accessibility check) from the console's packages.
if ! command -v npm >/dev/null 2>&1; then
    echo "installing nodejs and npm (the console's build check and accessibility test)" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
fi

# The console's built files (embedded in the binary, committed so that cargo
# needs no Node) must be what its sources build to: build them from the
# lockfile in a scratch copy and compare. Without Node (which the lines above
# install) this check is skipped, except under CI=true, where it is a failure.
console=src/console/web
in_ci=false
case "${CI:-}" in "" | false | 0) ;; *) in_ci=true ;; esac
if ! command -v npm >/dev/null 2>&1 && [ "$in_ci" = true ]; then
    echo "npm not found: CI=true requires the console's built files to be checked (install Node.js)" >&2
    exit 1
fi
if command -v npm >/dev/null 2>&1; then
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    cp -r "$console"/package.json "$console"/package-lock.json "$console"/build.mjs \
        "$console"/tsconfig.json "$console"/src "$scratch"/
    (cd "$scratch" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent check && npm run --silent build)
    if ! diff -r "$scratch/dist" "$console/dist"; then
        echo "$console/dist is not what its sources build to: run npm ci && npm run build in $console" >&2
        exit 1
    fi
else
    echo "npm not found: the console's built files are not checked against their sources" >&2
fi

# Formatting and lints first: they fail in seconds where the tests take minutes.
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# The product build must not carry the crash-test failpoints. The tree is
# read first (a failing cargo tree stops the script) and must be the
# product's (an empty or unrelated tree would pass the check unexamined).
tree=$(cargo tree --locked -p materializer -e features --edges normal)
if ! grep -q '^materializer v' <<<"$tree" || ! grep -q 'materializer-core' <<<"$tree"; then
    echo "cargo tree did not show the product's dependency tree:" >&2
    echo "$tree" | head -20 >&2
    exit 1
fi
if grep -q 'failpoints' <<<"$tree"; then
    echo "the product build enables the failpoints feature" >&2
    exit 1
fi
# The plain binaries too (the test build makes test harnesses of those of
# other packages): README's tests run nakadi-server as a user would.
cargo build --locked --workspace --all-targets
cargo test --locked --workspace --all-targets "$@"
