#!/usr/bin/env bash
# Builds the container image from Dockerfile and checks it the way an operator
# uses it: a one-off run writing to a mounted volume, a run without a volume
# (it warns), `serve` refusing to start without a token, `serve` with a token
# file (health, 401 without the token, a run triggered over HTTP), SIGTERM, and
# the two roles of a cluster (a scheduler, an executor registering with it).
#
# Uses Docker when a Docker engine answers, otherwise buildah and podman
# (installed from Debian when missing). Base images that cannot be pulled (no
# access to the registries) are built from Debian packages and tagged under
# the names the Dockerfile uses; the Rust one, under its own name, gets the
# host's Rust toolchain (rustc and cargo on the PATH, same CPU architecture).
#
# Not part of scripts/test.sh: a cold build compiles the release binary and
# its dependencies (about 30 minutes on 2 cores); after a change to
# src/, a few minutes.
#
#   scripts/container-test.sh                   # build, then test
#   BUILD=0 scripts/container-test.sh           # test the image already built
#   ENGINE=podman IMAGE=localhost/m:dev PORT=18000 WORK=/tmp/ct scripts/container-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/materializer:test}
BUILD=${BUILD:-1}
WORK=${WORK:-${TMPDIR:-/tmp}/materializer-container-test}
PORT=${PORT:-18000}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RUST_IMAGE=$(sed -n 's/^ARG RUST_IMAGE=//p' Dockerfile)
RUNTIME_IMAGE=$(sed -n 's/^ARG RUNTIME_IMAGE=//p' Dockerfile)
DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
RUST_STANDIN=localhost/materializer-build
TOPIC=article-stock-changed
TOKEN=container-test-token
NAME=materializer-container-test-$$
BUILD_ARGS=()
passed=0
failed=0

say() { printf '== %s\n' "$*" >&2; }
seconds_since() { echo $(($(date +%s) - $1)); }

# --- the engine ------------------------------------------------------------

choose_engine() {
    if [ -z "${ENGINE:-}" ] && command -v docker >/dev/null &&
        timeout 20 docker info >/dev/null 2>&1; then
        ENGINE=docker
    fi
    ENGINE=${ENGINE:-podman}
    if [ "$ENGINE" = podman ]; then
        install_podman
        configure_podman
    fi
    say "engine: $ENGINE"
}

install_podman() {
    local tool missing=()
    for tool in buildah podman runc; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "installing buildah, podman and runc from Debian"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        buildah podman runc uidmap slirp4netns fuse-overlayfs >/dev/null
}

# crun 1.8 (Debian 12) refuses hosts with hybrid cgroups v1/v2, and podman's
# default limits (nofile 1048576) can exceed the host's hard limits: runc and
# the host's own limits work on both kinds of host.
configure_podman() {
    local nofile nproc
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [ "$nofile" = unlimited ] && nofile=1048576
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
    cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
EOF
    export CONTAINERS_CONF=$WORK/containers.conf
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

have_image() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

pull() {
    say "pulling $1"
    timeout 900 "$ENGINE" pull -q "$1" >/dev/null 2>&1
}

# --- base images -------------------------------------------------------------

ensure_base_images() {
    if ! have_image "$RUNTIME_IMAGE" && ! pull "$RUNTIME_IMAGE"; then
        standin_runtime
    fi
    if ! have_image "$RUST_IMAGE" && ! pull "$RUST_IMAGE"; then
        # Tagged with the toolchain's version: a new host toolchain, a new image.
        RUST_STANDIN=$RUST_STANDIN:rust-$(host_rust_version)-bookworm
        have_image "$RUST_STANDIN" || standin_rust
        BUILD_ARGS+=(--build-arg "RUST_IMAGE=$RUST_STANDIN")
    fi
}

ensure_debian() {
    have_image "$DEBIAN_IMAGE" || pull "$DEBIAN_IMAGE" || standin_debian
}

# debian:bookworm-slim from debootstrap, with the security updates enabled.
standin_debian() {
    local started root=$WORK/debian-rootfs
    started=$(date +%s)
    say "building $DEBIAN_IMAGE with debootstrap (no registry access)"
    command -v debootstrap >/dev/null || {
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    as_root rm -rf "$root"
    as_root debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log"
    as_root rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/var/cache/apt/archives/*.deb
    as_root tee "$root/etc/apt/sources.list" >/dev/null <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security bookworm-security main
EOF
    as_root tar --numeric-owner -C "$root" -cf "$WORK/debian.tar" .
    "$ENGINE" import -q \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' "$WORK/debian.tar" "$DEBIAN_IMAGE" >/dev/null
    as_root rm -rf "$root" "$WORK/debian.tar"
    say "$DEBIAN_IMAGE built in $(seconds_since "$started") s"
}

host_rust_version() {
    command -v rustc >/dev/null || {
        say "no access to $RUST_IMAGE and no rustc on this host to build a stand-in"
        exit 1
    }
    rustc --version | cut -d' ' -f2
}

# A build image with the host's Rust toolchain on Debian, under its own name.
# Debian's own Rust (rustc-web and cargo-web from bookworm-security) is 1.85:
# too old for the workspace (edition 2024, its rust-version, Cargo.lock). The
# host's toolchain is the one the workspace is built with: its sysroot (from
# `rustc --print sysroot`, which also honours a rust-toolchain file) goes to
# /usr/local as the rust image has it, without the HTML documentation
# (share/doc, half its size). rustc finds its libraries and the standard
# library relative to its own path. gcc and libc6-dev link, ca-certificates
# lets cargo fetch crates.
standin_rust() {
    local sysroot context=$WORK/rust-image status=0
    sysroot=$(rustc --print sysroot)
    ensure_debian
    say "building $RUST_STANDIN from Debian and $sysroot (no access to $RUST_IMAGE)"
    rm -rf "$context"
    mkdir -p "$context/toolchain"
    tar -C "$sysroot" --exclude=./share/doc -cf - . | tar -C "$context/toolchain" -xf - ||
        return
    cat >"$context/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update \\
    && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \\
    && rm -rf /var/lib/apt/lists/*
COPY toolchain/ /usr/local/
ENV CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN rustc --version && cargo --version
EOF
    build_quietly "$RUST_STANDIN" "$context" || status=$?
    rm -rf "$context/toolchain"
    return "$status"
}

# Like gcr.io/distroless/cc-debian12: glibc, libgcc, CA certificates, tzdata,
# /etc/passwd with root, nobody and nonroot (65532), /tmp; no shell.
standin_runtime() {
    ensure_debian
    say "building $RUNTIME_IMAGE from Debian packages (no registry access)"
    mkdir -p "$WORK/runtime-image"
    cat >"$WORK/runtime-image/Dockerfile" <<'EOF'
FROM docker.io/library/debian:bookworm-slim AS packages
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && mkdir /debs /rootfs && cd /debs \
    && apt-get download libc6 libgcc-s1 gcc-12-base base-files netbase tzdata \
    && for deb in *.deb; do dpkg-deb -x "$deb" /rootfs; done \
    && rm -rf /rootfs/usr/lib/x86_64-linux-gnu/gconv /rootfs/usr/share/doc \
        /rootfs/usr/share/man /rootfs/usr/share/lintian /rootfs/usr/share/common-licenses \
    && mkdir -p /rootfs/etc/ssl/certs /rootfs/home/nonroot /rootfs/tmp \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
    && chmod 1777 /rootfs/tmp && chown 65532:65532 /rootfs/home/nonroot \
    && printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
        'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
        'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >/rootfs/etc/passwd \
    && printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >/rootfs/etc/group
FROM scratch
COPY --from=packages /rootfs/ /
USER 65532:65532
EOF
    build_quietly "$RUNTIME_IMAGE" "$WORK/runtime-image"
}

build_quietly() {
    local log
    log=$WORK/build-$(basename "$2").log
    if ! build -t "$1" "$2" >"$log" 2>&1; then
        tail -30 "$log" >&2
        return 1
    fi
}

build() {
    if [ "$ENGINE" = docker ]; then
        DOCKER_BUILDKIT=1 docker build "$@"
    else
        buildah bud --format docker --layers --pull=never "$@"
    fi
}

# --- the image ---------------------------------------------------------------

build_image() {
    local started secret=()
    [ -r "$CA_BUNDLE" ] && secret=(--secret "id=cacert,src=$CA_BUNDLE")
    ensure_base_images
    say "building $IMAGE from Dockerfile (log: $WORK/build.log)"
    started=$(date +%s)
    if ! build "${secret[@]}" "${BUILD_ARGS[@]}" -t "$IMAGE" . >"$WORK/build.log" 2>&1; then
        tail -40 "$WORK/build.log" >&2
        exit 1
    fi
    say "image built in $(seconds_since "$started") s"
}

# --- checks ------------------------------------------------------------------

check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok   $what"
        passed=$((passed + 1))
    else
        echo "FAIL $what"
        failed=$((failed + 1))
    fi
}

image_is_small() {
    local bytes
    bytes=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
    say "image size: $((bytes / 1000000)) MB"
    [ "$bytes" -lt 200000000 ]
}

image_settings() {
    local user config
    user=$("$ENGINE" image inspect --format '{{.Config.User}}' "$IMAGE")
    config=$("$ENGINE" image inspect "$IMAGE")
    [ "$user" = 10001:0 ] && grep -q '8000/tcp' <<<"$config" &&
        grep -q '"healthcheck"' <<<"$config" &&
        grep -q 'MATERIALIZER_LISTEN=0.0.0.0:8000' <<<"$config"
}

# A host folder owned by another uid, shared with group 0 (as an operator
# would prepare a volume for the image's 10001:0 or any uid in group 0).
volume_folder() {
    local dir=$WORK/$1
    as_root rm -rf "$dir"
    mkdir -p "$dir"
    as_root chown "$2" "$dir"
    chmod "$3" "$dir"
    echo "$dir"
}

committed_files_exist() {
    local base=$1/$TOPIC
    [ -f "$base/_manifests/0000000001.json" ] &&
        [ -f "$base/main/run=0000000001/_SUCCESS" ] &&
        [ -f "$base/main/run=0000000001/main-0000000001-p0.csv" ]
}

# A one-off run as README shows it: no health check (it asks a `serve`).
run_once() {
    "$ENGINE" run --rm --no-healthcheck "$@"
}

# The log of a failed check, for the reader.
show() {
    cat "$1" >&2
    return 1
}

run_writes_to_a_volume() {
    local dir log=$WORK/run-volume.log
    dir=$(volume_folder volume-group0 4242:0 2770)
    if run_once -v "$dir:/data" "$IMAGE" run --topic "$TOPIC" >"$log" 2>&1 &&
        committed_files_exist "$dir" && ! grep -q 'not a mounted volume' "$log"; then
        return 0
    fi
    show "$log"
}

run_writes_to_a_named_volume() {
    local volume=materializer-container-test-$$ dir log=$WORK/run-named-volume.log status=0
    "$ENGINE" volume create "$volume" >/dev/null
    run_once -v "$volume:/data" "$IMAGE" run --topic "$TOPIC" >"$log" 2>&1 || status=$?
    dir=$("$ENGINE" volume inspect --format '{{.Mountpoint}}' "$volume")
    if [ "$status" = 0 ] && ! committed_files_exist "$dir"; then status=1; fi
    "$ENGINE" volume rm -f "$volume" >/dev/null
    [ "$status" = 0 ] || show "$log"
}

run_as_another_uid() {
    local dir log=$WORK/run-uid.log
    dir=$(volume_folder volume-uid 4242:4242 0700)
    if run_once --user 4242:4242 -v "$dir:/data" "$IMAGE" \
        run --topic "$TOPIC" >"$log" 2>&1 && committed_files_exist "$dir"; then
        return 0
    fi
    show "$log"
}

# An arbitrary uid in group 0 (OpenShift) may write the image's /data; with no
# volume there, the run says that its files go with the container.
run_without_a_volume_warns() {
    local log=$WORK/run-novolume.log
    if run_once --user 4242:0 "$IMAGE" run --topic "$TOPIC" >"$log" 2>&1 &&
        grep -q 'output folder /data is not a mounted volume' "$log"; then
        return 0
    fi
    show "$log"
}

# readOnlyRootFilesystem, as in README's Kubernetes examples: the output on a
# volume, /tmp (spilled data) on a tmpfs.
run_with_a_read_only_root_and_a_volume() {
    local dir log=$WORK/run-read-only-volume.log
    dir=$(volume_folder volume-read-only-root 10001:0 0770)
    if run_once --read-only --tmpfs /tmp -v "$dir:/data" "$IMAGE" run --topic "$TOPIC" \
        >"$log" 2>&1 && committed_files_exist "$dir"; then
        return 0
    fi
    show "$log"
}

# readOnlyRootFilesystem without a volume: refused before the run starts.
run_on_a_read_only_root_fails_clearly() {
    local log=$WORK/run-read-only.log status=0
    run_once --read-only "$IMAGE" run --topic "$TOPIC" >"$log" 2>&1 || status=$?
    if [ "$status" = 2 ] &&
        grep -q 'the output folder /data is not writable by uid 10001, gid 0' "$log"; then
        return 0
    fi
    show "$log"
}

serve_refuses_without_a_token() {
    local log=$WORK/serve-no-token.log status=0
    run_once "$IMAGE" serve >"$log" 2>&1 || status=$?
    if [ "$status" = 2 ] &&
        grep -q 'refusing to serve on 0.0.0.0:8000 without API tokens' "$log"; then
        return 0
    fi
    show "$log"
}

start_serve() {
    SERVE_DATA=$(volume_folder volume-serve 10001:0 0770)
    mkdir -p "$WORK/secrets"
    echo "$TOKEN" >"$WORK/secrets/api-tokens"
    chmod 0644 "$WORK/secrets/api-tokens"
    # No --init: the binary is PID 1 and handles SIGTERM itself.
    # Podman schedules health checks with systemd timers: without systemd it
    # says so on stderr and runs the container all the same.
    "$ENGINE" run -d --name "$NAME" -p "127.0.0.1:$PORT:8000" \
        -v "$SERVE_DATA:/data" -v "$WORK/secrets/api-tokens:/run/secrets/api-tokens:ro" \
        -e MATERIALIZER_API_TOKEN_FILE=/run/secrets/api-tokens "$IMAGE" serve \
        >/dev/null 2>"$WORK/serve-start.log"
}

api() { curl -sS -m 5 "$@"; }

healthz_answers() {
    for _ in $(seq 60); do
        api -f "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    "$ENGINE" logs "$NAME" >&2
    return 1
}

# The image's own HEALTHCHECK: run on demand by podman, awaited with Docker
# (its first check comes after the 30 s interval).
image_healthcheck_passes() {
    if [ "$ENGINE" = podman ]; then
        podman healthcheck run "$NAME"
        return
    fi
    for _ in $(seq 45); do
        [ "$(docker inspect --format '{{.State.Health.Status}}' "$NAME")" = healthy ] && return 0
        sleep 1
    done
    return 1
}

no_token_is_401() {
    [ "$(api -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/topics")" = 401 ]
}

run_over_http_succeeds() {
    local answer id state
    answer=$(api -X POST -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$PORT/topics/$TOPIC/runs")
    id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' <<<"$answer")
    [ -n "$id" ] || { echo "trigger answered: $answer" >&2; return 1; }
    for _ in $(seq 120); do
        state=$(api -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/runs/$id" |
            sed -n 's/.*"state": *"\([^"]*\)".*/\1/p')
        case $state in
        succeeded) committed_files_exist "$SERVE_DATA"; return ;;
        failed | stopped) echo "run $id: $state" >&2; return 1 ;;
        esac
        sleep 0.5
    done
    echo "run $id still $state" >&2
    return 1
}

sigterm_stops_serve() {
    local started elapsed code
    started=$(date +%s%N)
    "$ENGINE" stop -t 10 "$NAME" >/dev/null
    elapsed=$((($(date +%s%N) - started) / 1000000))
    code=$("$ENGINE" inspect --format '{{.State.ExitCode}}' "$NAME")
    say "stop took $elapsed ms, exit code $code"
    [ "$code" = 0 ] && [ "$elapsed" -lt 5000 ] &&
        "$ENGINE" logs "$NAME" 2>&1 | grep -q 'shutting down'
}

# --- README's commands, as written -----------------------------------------

# The README line that starts with "$1", made to run here: `docker` is the
# engine, the image `materializer` this image, the published port $PORT + 1,
# the container's name this script's.
readme_command() {
    local line
    line=$(grep -m1 -F -- "$1" README.md) || { echo "README has no line starting $1" >&2; return 1; }
    [ "${line#"$1"}" != "$line" ] || { echo "README: $1 is not at a line's start" >&2; return 1; }
    line=${line//docker /$ENGINE }
    line=${line// materializer run / $IMAGE run }
    line=${line// materializer serve/ $IMAGE serve}
    line=${line//-p 8000:8000/-p 127.0.0.1:$((PORT + 1)):8000}
    line=${line//--name materializer /--name $NAME-readme }
    printf '%s\n' "$line"
}

readme_one_off_run() {
    local dir=$WORK/readme-run command log=$WORK/readme-run.log
    command=$(readme_command 'mkdir -p out && docker run') || return 1
    rm -rf "$dir" && mkdir -p "$dir"
    if (cd "$dir" && bash -euo pipefail -c "$command") >"$log" 2>&1 &&
        committed_files_exist "$dir/out"; then
        return 0
    fi
    echo "ran: $command" >&2
    show "$log"
}

readme_serve() {
    local dir=$WORK/readme-serve command log=$WORK/readme-serve.log url status
    command=$(readme_command 'docker run -d --name materializer') || return 1
    rm -rf "$dir" && mkdir -p "$dir/out"
    echo "$TOKEN" >"$dir/api-tokens"
    chmod 0644 "$dir/api-tokens"
    url=http://127.0.0.1:$((PORT + 1))
    (cd "$dir" && bash -euo pipefail -c "$command") >"$log" 2>&1 || { echo "ran: $command" >&2; show "$log"; return 1; }
    for _ in $(seq 60); do
        api -f "$url/healthz" >/dev/null 2>&1 && break
        sleep 0.5
    done
    status=$(api -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$url/topics")
    "$ENGINE" rm -f "$NAME-readme" >/dev/null 2>&1
    [ "$status" = 200 ] || { echo "GET /topics with the token: $status" >&2; return 1; }
}

# The image runs both roles of a cluster: a scheduler, and an executor that
# registers with it (both on the host's network, as README's commands run
# them on machines of their own).
cluster_roles_run() {
    local log=$WORK/cluster-scheduler.log port work
    "$ENGINE" run -d --name "$NAME-scheduler" --network host "$IMAGE" cluster scheduler \
        --bind-host 127.0.0.1 --bind-port 0 --external-host 127.0.0.1 >/dev/null
    for _ in $(seq 60); do
        port=$("$ENGINE" logs "$NAME-scheduler" 2>&1 |
            sed -n 's/.*scheduler listening on 127.0.0.1:\([0-9]*\).*/\1/p' | head -1)
        [ -n "$port" ] && break
        sleep 0.5
    done
    [ -n "$port" ] || { "$ENGINE" logs "$NAME-scheduler" >&2; return 1; }
    work=$(volume_folder volume-executor 10001:0 0770)
    "$ENGINE" run -d --name "$NAME-executor" --network host -v "$work:/data" "$IMAGE" \
        cluster executor --scheduler-host 127.0.0.1 --scheduler-port "$port" \
        --bind-host 127.0.0.1 --external-host 127.0.0.1 --bind-port 0 --bind-grpc-port 0 \
        --work-dir /data/executor >/dev/null
    for _ in $(seq 60); do
        if "$ENGINE" logs "$NAME-scheduler" 2>&1 | grep -q 'Received register executor request'; then
            return 0
        fi
        sleep 0.5
    done
    "$ENGINE" logs "$NAME-scheduler" >"$log" 2>&1
    "$ENGINE" logs "$NAME-executor" >>"$log" 2>&1
    show "$log"
}

cleanup() {
    "$ENGINE" rm -f "$NAME" "$NAME-readme" "$NAME-scheduler" "$NAME-executor" >/dev/null 2>&1 || true
}

main() {
    mkdir -p "$WORK"
    choose_engine
    [ "$BUILD" = 0 ] || build_image
    trap cleanup EXIT
    check "image under 200 MB" image_is_small
    check "image runs as 10001:0, exposes 8000, has a health check" image_settings
    check "run writes to a mounted folder of another uid, through group 0" run_writes_to_a_volume
    check "run writes to a fresh named volume" run_writes_to_a_named_volume
    check "run as another uid and group (--user 4242:4242) writes to its volume" run_as_another_uid
    check "run as --user 4242:0 without a volume warns that the output is lost" run_without_a_volume_warns
    check "run with a read-only root file system writes to its volume" run_with_a_read_only_root_and_a_volume
    check "run on a read-only root file system without a volume fails clearly" run_on_a_read_only_root_fails_clearly
    check "serve refuses 0.0.0.0 without a token" serve_refuses_without_a_token
    start_serve
    check "serve answers /healthz on the published port" healthz_answers
    check "the image's HEALTHCHECK passes" image_healthcheck_passes
    check "a request without a token gets 401" no_token_is_401
    check "a run triggered over HTTP succeeds" run_over_http_succeeds
    check "SIGTERM (stop) ends serve quickly and cleanly" sigterm_stops_serve
    check "README's one-off run, as written" readme_one_off_run
    check "README's serve with a token file, as written" readme_serve
    check "the image runs a cluster's scheduler and an executor that registers with it" cluster_roles_run
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
}

main
