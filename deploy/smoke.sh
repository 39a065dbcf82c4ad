#!/usr/bin/env bash
# The compose stack for real, on this machine, with no image pulled from anywhere:
#
#   1. a Docker engine: the running one, or `dockerd` started here (installed with apt-get from
#      Debian's docker.io, with debootstrap and docker-compose, when they are missing);
#   2. a Debian bookworm base image made offline: debootstrap into a folder, then `docker import`;
#   3. the app image built from deploy/wheels (deploy/wheelhouse.sh) with `--network none`;
#   4. the stack up (deploy/docker-compose.yml), every container healthy, the three nodes on one
#      tip, every explorer and wallet answering;
#   5. everything it started torn down: the stack, its volumes and network, the images it built,
#      and dockerd if it started it. The base image is kept for the next run unless
#      PYBTC_SMOKE_KEEP_BASE=0.
#
# Run as root:  bash deploy/smoke.sh        (about 2 minutes; 5-10 the first time: the base image)
#
# PYBTC_SMOKE_OPTIONAL=1 (CI sets it) turns a machine that cannot run it at all (not root, no
# Debian packages, no dockerd, no debootstrap) into "smoke: NOT RUN: <why>" and exit 0; anything
# that goes wrong with pyBTC's image or stack still fails.
#
# Older tools: Debian bookworm's engine is 20.10 and its compose is v1 (1.29), which know neither
# the top-level `name` nor `healthcheck.start_interval` (Engine 25 / Compose 2.20). With them the
# script runs a copy of the compose file and of the Dockerfile without those two keys; with
# newer tools it runs the files as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${PYBTC_SMOKE_DIR:-/tmp/pybtc-smoke}
BASE_IMAGE=pybtc-base:bookworm
APP_IMAGE=pybtc:smoke
PROJECT=pybtc-smoke
HEALTH_TIMEOUT=${PYBTC_SMOKE_HEALTH_TIMEOUT:-300}
CONVERGE_TIMEOUT=${PYBTC_SMOKE_CONVERGE_TIMEOUT:-300}
PY=${PYTHON:-$ROOT/.venv/bin/python}

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\nsmoke: FAILED: %s\n' "$*" >&2; exit 1; }
unavailable() {
    if [ "${PYBTC_SMOKE_OPTIONAL:-0}" = 1 ]; then
        printf '\nsmoke: NOT RUN: %s (this machine cannot run the compose stack)\n' "$*"
        exit 0
    fi
    fail "$*"
}

[ "$(id -u)" = 0 ] || unavailable "run as root (dockerd, debootstrap and docker import need it)"
[ -x "$PY" ] || PY=python3

started_dockerd=""
compose=()
built_app=""
made_base=""

cleanup() {
    status=$?
    set +e
    if [ ${#compose[@]} -gt 0 ]; then
        say "tearing down the stack"
        "${compose[@]}" logs --no-color --tail=20 > "$WORK/last-logs.txt" 2>&1
        "${compose[@]}" down --volumes --remove-orphans
    fi
    [ -n "$built_app" ] && docker rmi "$APP_IMAGE" > /dev/null
    if [ -n "$made_base" ] && [ "${PYBTC_SMOKE_KEEP_BASE:-1}" = 0 ]; then
        docker rmi "$BASE_IMAGE" > /dev/null
    fi
    if [ -n "$started_dockerd" ]; then
        say "stopping the dockerd this script started (pid $started_dockerd)"
        kill "$started_dockerd"
        for _ in $(seq 30); do kill -0 "$started_dockerd" 2> /dev/null || break; sleep 1; done
    fi
    [ $status = 0 ] && printf '\nsmoke: PASSED\n' || printf '\nsmoke: see %s\n' "$WORK" >&2
}
trap cleanup EXIT
mkdir -p "$WORK"

say "tools"
missing=()
command -v dockerd > /dev/null || missing+=(docker.io)
command -v debootstrap > /dev/null || missing+=(debootstrap)
if ! docker compose version > /dev/null 2>&1 && ! command -v docker-compose > /dev/null; then
    missing+=(docker-compose)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing from Debian: ${missing[*]}"
    apt-get update -qq > "$WORK/apt.log" 2>&1 || unavailable "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >> "$WORK/apt.log" 2>&1 \
        || unavailable "apt-get install ${missing[*]} failed (see $WORK/apt.log)"
fi
if ! docker info > /dev/null 2>&1; then
    dockerd > "$WORK/dockerd.log" 2>&1 &
    started_dockerd=$!
    for _ in $(seq 60); do docker info > /dev/null 2>&1 && break; sleep 1; done
    docker info > /dev/null 2>&1 || unavailable "dockerd did not start (see $WORK/dockerd.log)"
fi
engine=$(docker version --format '{{.Server.Version}}')
if docker compose version > /dev/null 2>&1; then
    compose_cmd=(docker compose)
else
    compose_cmd=(docker-compose)
fi
compose_version=$("${compose_cmd[@]}" version --short 2>/dev/null || echo "?")
echo "engine $engine, compose $compose_version (${compose_cmd[*]})"
modern=0
if [ "${engine%%.*}" -ge 25 ] 2>/dev/null && [ "${compose_cmd[0]}" = docker ]; then modern=1; fi

say "base image $BASE_IMAGE (debootstrap, no registry)"
if docker image inspect "$BASE_IMAGE" > /dev/null 2>&1; then
    echo "already here"
else
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$WORK/rootfs" \
        http://deb.debian.org/debian > "$WORK/debootstrap.log" 2>&1 \
        || unavailable "debootstrap failed (see $WORK/debootstrap.log)"
    tar -C "$WORK/rootfs" -c . | docker import - "$BASE_IMAGE" > /dev/null
    rm -rf "$WORK/rootfs"
    made_base=1
fi

say "app image $APP_IMAGE (from deploy/wheels, --network none)"
if ! ls deploy/wheels/*.whl > /dev/null 2>&1; then
    sh deploy/wheelhouse.sh || unavailable "deploy/wheelhouse.sh could not download the wheels"
fi
dockerfile=deploy/Dockerfile
if [ $modern = 0 ]; then
    dockerfile="$WORK/Dockerfile"
    sed 's/ --start-interval=[0-9a-z]*//' deploy/Dockerfile > "$dockerfile"
fi
docker build --network none --build-arg BASE="$BASE_IMAGE" -t "$APP_IMAGE" \
    -f "$dockerfile" . > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; fail "build"; }
built_app=1
docker image ls "$APP_IMAGE" --format '{{.Repository}}:{{.Tag}} {{.Size}}'

say "the stack up"
compose_file=deploy/docker-compose.yml
if [ $modern = 0 ]; then
    compose_file="$WORK/docker-compose.yml"
    "$PY" - "$compose_file" << 'EOF'
import sys
import yaml
doc = yaml.safe_load(open("deploy/docker-compose.yml"))
doc.pop("name", None)  # compose v1: the project name is given with -p
for key in [k for k in doc if k.startswith("x-")]:
    doc.pop(key)  # anchors are already merged in by the YAML loader
for service in doc["services"].values():
    service.get("healthcheck", {}).pop("start_interval", None)
open(sys.argv[1], "w").write(yaml.safe_dump(doc, sort_keys=False))
EOF
fi
export PYBTC_IMAGE=$APP_IMAGE
# The bus's password (deploy/README.md): the operator's if set, else one made for this run.
REDIS_PASSWORD=${REDIS_PASSWORD:-$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')}
export REDIS_PASSWORD
compose=("${compose_cmd[@]}" -p "$PROJECT" -f "$compose_file")
"${compose[@]}" up -d 2>&1 | tail -20

say "waiting for every container to be healthy (at most ${HEALTH_TIMEOUT}s)"
deadline=$((SECONDS + HEALTH_TIMEOUT))
while :; do
    ids=$("${compose[@]}" ps -q)
    total=$(echo "$ids" | grep -c . || true)
    healthy=$(docker inspect --format '{{.State.Health.Status}}' $ids 2> /dev/null | grep -c '^healthy$' || true)
    echo "  $healthy of $total healthy"
    [ "$total" -ge 13 ] && [ "$healthy" = "$total" ] && break
    [ $SECONDS -lt $deadline ] || { "${compose[@]}" ps; fail "not every container became healthy"; }
    sleep 5
done
"${compose[@]}" ps

say "the bus refuses a client without the password"
answer=$("${compose[@]}" exec -T redis env -u REDISCLI_AUTH redis-cli -p 6379 ping 2>&1 || true)
echo "  redis-cli ping without the password -> $answer"
case "$answer" in *NOAUTH*) ;; *) fail "the bus answered without the password: $answer" ;; esac

say "GET /mine on node1: its own miner, asked over HTTP"
mined=$(curl -fsS --max-time 150 http://127.0.0.1:5000/mine) || fail "GET /mine on node1"
"$PY" -c 'import json,sys; d=json.load(sys.stdin); print("  ", d["message"], "height", d["index"], d["hash"][:16])' <<< "$mined"

say "the three nodes on one tip (at most ${CONVERGE_TIMEOUT}s)"
deadline=$((SECONDS + CONVERGE_TIMEOUT))
while :; do
    line=""
    tips=()
    for port in 5000 5001 5002; do
        status=$(curl -fsS "http://127.0.0.1:$port/status" || echo '{}')
        read -r height tip < <("$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d.get("height", 0), d.get("tip", "-"))' <<< "$status")
        line="$line  node$((port - 4999)) height $height tip ${tip:0:16}"
        tips+=("$height:$tip")
    done
    echo "$line"
    if [ "${tips[0]}" = "${tips[1]}" ] && [ "${tips[1]}" = "${tips[2]}" ] && [ "${tips[0]%%:*}" -ge 3 ]; then
        break
    fi
    [ $SECONDS -lt $deadline ] || fail "the nodes did not converge"
    sleep 3
done
for port in 5000 5001 5002; do
    curl -fsS "http://127.0.0.1:$port/nodes" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print("  ", d["self"], "peers:", ", ".join(p["url"] for p in d["peers"]))'
done

say "every explorer and wallet answers"
for port in 8080 8180 8280 8081 8181 8281; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")
    echo "  http://127.0.0.1:$port/ -> $code"
    [ "$code" = 200 ] || fail "port $port answered $code"
done
curl -fsS http://127.0.0.1:8081/api/params | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print("   wallet of node1:", d["network"], "faucet", d["faucet"])'
