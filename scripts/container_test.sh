#!/usr/bin/env bash
# End-to-end test of the container image on a private Docker engine.
#
#  1. starts dockerd with its data, exec root, pidfile and socket in a fresh
#     temporary folder (never touching a system daemon), DOCKER_HOST pointing at it;
#  2. writes three small models on the host (scripts/example_models.py: an ONNX
#     linear layer, a joblib scikit-learn LogisticRegression, a Python module)
#     with the answers onnxruntime, scikit-learn and the module give here;
#  3. builds the base image (scripts/build_base_image.sh, cached debootstrap) and
#     the service image on top of it with EXTRAS=onnx,sklearn, scikit-learn and
#     joblib pinned to this host's versions (a pickle is read by the version
#     that wrote it);
#  4. runs the image as Kubernetes would (read-only root, /tmp tmpfs, all
#     capabilities dropped, no-new-privileges), published on 127.0.0.1 only;
#  5. checks readiness, liveness, the Docker HEALTHCHECK, /metrics and a real
#     prediction of the embedded model;
#  6. sends SIGTERM (docker stop) during a burst of concurrent requests and checks
#     that readiness turned 503 while requests were still served, that every
#     request the server read was answered (200, or a clean 503), that only
#     connections the server never read failed, and that the container exited 0
#     within the drain deadline;
#  7. serves each model from the host folder mounted read-only at /models
#     (BATCHSERVE_MODEL=/models/model.onnx, /models/model.joblib, scaler:Scaler
#     found through the image's BATCHSERVE_MODEL_PATH=/models) and compares the
#     answers of POST /predict with the host's; checks that a .pt model, whose
#     runtime the image lacks, stops the container with a message naming
#     --build-arg EXTRAS=torch;
#  8. removes the containers, stops dockerd and deletes the folder (also on failure).
#
# Needs root, dockerd (Debian docker.io) and debootstrap; installs both with
# apt-get when missing unless BATCHSERVE_NO_INSTALL=1. PYTHON must have onnx,
# onnxruntime and scikit-learn (the dev extra).
#
# Environment:
#   PYTHON                        host interpreter for the models (default: .venv/bin/python)
#   BATCHSERVE_CACHE_DIR          base root file system cache (see build_base_image.sh)
#   BATCHSERVE_TEST_DRAIN_S       drain deadline given to the server (default 20)
#   BATCHSERVE_TEST_GRACE_S       readiness-propagation window (default 2)
#   HTTP_PROXY, HTTPS_PROXY, NO_PROXY, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL,
#   PIP_TRUSTED_HOST              passed to `docker build` when set
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRAIN_S="${BATCHSERVE_TEST_DRAIN_S:-20}"
GRACE_S="${BATCHSERVE_TEST_GRACE_S:-2}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
EXTRAS="onnx,sklearn"
BASE_TAG="batchserve-base:local"
IMAGE_TAG="batchserve:container-test"
CONTAINER="batchserve-container-test-$$"
CONTAINERS=() # every container started, the one in play last
START=$SECONDS

log() { printf '[container_test %3ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

ensure_tools() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v docker >/dev/null || missing+=(docker.io)
    ((${#missing[@]})) || return 0
    [[ "${BATCHSERVE_NO_INSTALL:-0}" != 1 ]] || die "missing: ${missing[*]}"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

WORK=""
OWN_BRIDGE=0
# With --userland-proxy=false dockerd DNATs loopback itself: it replaces the nat
# OUTPUT jump to DOCKER with one for every local address and sets route_localnet
# on docker0, and leaves both behind when it exits. Another daemon's ports
# published on loopback would then lead nowhere, so cleanup puts back the jumps
# and the setting found at the start.
NAT_OUTPUT_SAVED=0
NAT_OUTPUT_JUMPS=()
DOCKER0_LOCALNET=""
cleanup() {
    local status=$?
    set +e
    if [[ -n "$WORK" && -S "$WORK/docker.sock" ]] && ((${#CONTAINERS[@]})); then
        local last="${CONTAINERS[-1]}"
        if ((status != 0)) && docker inspect "$last" >/dev/null 2>&1; then
            log "logs of $last (last 40 lines):"
            docker logs --tail 40 "$last" 2>&1 | sed 's/^/    /' >&2
        fi
        docker rm -f "${CONTAINERS[@]}" >/dev/null 2>&1
    fi
    if [[ -n "$WORK" && -f "$WORK/dockerd.pid" ]]; then
        local pid
        pid="$(cat "$WORK/dockerd.pid")"
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null
    fi
    if [[ -n "$WORK" ]]; then
        # Anything dockerd left mounted below the folder, deepest first.
        awk -v w="$WORK" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r m; do umount -l "$m"; done
        rm -rf "$WORK"
    fi
    # shellcheck disable=SC2086  # each rule is a line of iptables -S: plain words
    if ((NAT_OUTPUT_SAVED)); then
        local rule
        iptables -t nat -S OUTPUT | grep -e '-j DOCKER$' | while read -r rule; do
            iptables -t nat ${rule/#-A/-D}
        done
        for rule in "${NAT_OUTPUT_JUMPS[@]}"; do iptables -t nat $rule; done
    fi
    if [[ -n "$DOCKER0_LOCALNET" && -e /proc/sys/net/ipv4/conf/docker0/route_localnet ]]; then
        echo "$DOCKER0_LOCALNET" >/proc/sys/net/ipv4/conf/docker0/route_localnet
    fi
    ((OWN_BRIDGE)) && ip link delete docker0 2>/dev/null
    log "$( ((status == 0)) && echo PASSED || echo "FAILED (exit $status)") in $((SECONDS - START))s"
    exit "$status"
}

start_dockerd() {
    WORK="$(mktemp -d /tmp/batchserve-docker.XXXXXX)"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    mkdir -p "$WORK/data" "$WORK/exec"
    # dockerd leaves its default bridge behind; remove it afterwards only if it is ours.
    if command -v ip >/dev/null && ! ip link show docker0 >/dev/null 2>&1; then OWN_BRIDGE=1; fi
    if command -v iptables >/dev/null && iptables -t nat -S OUTPUT >/dev/null 2>&1; then
        mapfile -t NAT_OUTPUT_JUMPS < <(iptables -t nat -S OUTPUT | grep -e '-j DOCKER$')
        NAT_OUTPUT_SAVED=1
    fi
    if [[ -e /proc/sys/net/ipv4/conf/docker0/route_localnet ]]; then
        DOCKER0_LOCALNET="$(cat /proc/sys/net/ipv4/conf/docker0/route_localnet)"
    fi
    # The published port is DNATed straight to the container (no userland
    # proxy), so connection refusals and resets reach the client unaltered.
    dockerd --data-root "$WORK/data" --exec-root "$WORK/exec" --pidfile "$WORK/dockerd.pid" \
        --host "unix://$WORK/docker.sock" --userland-proxy=false \
        >"$WORK/dockerd.log" 2>&1 &
    export DOCKER_HOST="unix://$WORK/docker.sock"
    for _ in $(seq 1 150); do
        docker info >/dev/null 2>&1 && { log "dockerd up ($DOCKER_HOST)"; return 0; }
        kill -0 $! 2>/dev/null || break
        sleep 0.2
    done
    tail -n 20 "$WORK/dockerd.log" >&2
    die "dockerd did not start"
}

# The models and the host's answers for them: $WORK/cases.json maps each
# BATCHSERVE_MODEL reference to a /predict body and the expected predictions.
make_models() {
    MODELS="$WORK/models"
    "$PYTHON" -c 'import joblib, onnx, onnxruntime, sklearn' 2>/dev/null ||
        die "$PYTHON lacks onnx, onnxruntime or scikit-learn (pip install -e '.[dev]', or set PYTHON)"
    "$PYTHON" "$ROOT/scripts/example_models.py" "$MODELS" >"$WORK/cases.json" 2>"$WORK/models.log" ||
        { cat "$WORK/models.log" >&2; die "scripts/example_models.py failed"; }
    log "$(cat "$WORK/models.log")"
    # Its runtime, torch, is not in the image: loading stops before the file is read.
    : >"$MODELS/no-runtime.pt"
    chmod -R a+rX "$MODELS"
}

build_images() {
    "$ROOT/scripts/build_base_image.sh" "$BASE_TAG"
    local pins
    pins="$("$PYTHON" -c 'import joblib, sklearn; print(f"scikit-learn=={sklearn.__version__} joblib=={joblib.__version__}")')"
    local args=(--build-arg "BASE_IMAGE=$BASE_TAG" --build-arg "EXTRAS=$EXTRAS"
        --build-arg "EXTRA_PACKAGES=$pins") var
    for var in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy \
        PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST; do
        # Only settings that mean something inside the build: file:// indexes
        # of this host do not exist there.
        if [[ -n "${!var:-}" && "${!var}" != *file:* ]]; then
            args+=(--build-arg "$var=${!var}")
        fi
    done
    log "docker build $IMAGE_TAG (EXTRAS=$EXTRAS, EXTRA_PACKAGES=$pins)"
    docker build -q "${args[@]}" -t "$IMAGE_TAG" "$ROOT" >"$WORK/build.log" 2>&1 ||
        { tail -n 40 "$WORK/build.log" >&2; die "docker build failed"; }
    log "image built: $(docker image inspect -f '{{.Size}}' "$IMAGE_TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# HTTP on loopback with the standard library only, never through a proxy.
http() { # METHOD PATH [JSON_BODY] -> prints "STATUS BODY"
    python3 - "$PORT" "$@" <<'PY'
import sys, urllib.request as u, urllib.error
port, method, path = sys.argv[1:4]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = u.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                headers={"Content-Type": "application/json"})
try:
    with u.build_opener(u.ProxyHandler({})).open(req, timeout=10) as r:
        status, data = r.status, r.read()
except urllib.error.HTTPError as e:
    status, data = e.code, e.read()
except OSError as e:
    status, data = 0, str(e).encode()
print(status, data.decode(errors="replace"))
PY
}

# The restrictions of the Kubernetes pod: read-only root, /tmp tmpfs, no
# capabilities, no privilege escalation.
RESTRICTED=(--read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges)

start_container() { # NAME [DOCKER_RUN_OPTION]...: runs the image as NAME on a new PORT, until ready
    local name="$1" reply
    shift
    PORT="$(free_port)"
    log "docker run $name on 127.0.0.1:$PORT"
    CONTAINERS+=("$name")
    docker run -d --name "$name" -p "127.0.0.1:$PORT:8000" "${RESTRICTED[@]}" "$@" \
        "$IMAGE_TAG" >/dev/null
    for _ in $(seq 1 300); do
        [[ "$(docker inspect -f '{{.State.Running}}' "$name")" == true ]] ||
            die "container exited during start-up"
        reply="$(http GET /health/ready)"
        [[ "$reply" == 200* ]] && { log "ready: $reply"; return 0; }
        sleep 0.3
    done
    die "not ready after 90 s: $reply"
}

run_container() {
    start_container "$CONTAINER" --health-interval 2s --health-start-period 60s \
        -e BATCHSERVE_DRAIN_TIMEOUT_S="$DRAIN_S" -e BATCHSERVE_SHUTDOWN_GRACE_S="$GRACE_S" \
        -e BATCHSERVE_LOG_FORMAT=json -e BATCHSERVE_ADMIN_TOKEN=container-test-admin-token
    local user
    user="$(docker inspect -f '{{.Config.User}}' "$CONTAINER")"
    [[ "$user" == 10001* ]] || die "image user is '$user', expected 10001"
}

check_serving() {
    local reply health
    reply="$(http GET /health/live)"
    [[ "$reply" == 200* ]] || die "/health/live: $reply"
    reply="$(http GET /metrics)"
    [[ "$reply" == 200* ]] || die "/metrics: ${reply:0:200}"
    for name in batchserve_requests_total batchserve_inflight_requests batchserve_queue_depth; do
        grep -q "$name" <<<"$reply" || die "/metrics lacks $name"
    done
    reply="$(http POST /predict "$(python3 -c 'import json; print(json.dumps({"instances": [[(i * 7) % 17 for i in range(64)], [0.0] * 64]}))')")"
    python3 - "$reply" <<'PY' || die "/predict: ${reply:0:300}"
import json, math, sys
status, _, body = sys.argv[1].partition(" ")
assert status == "200", status
preds = json.loads(body)["predictions"]
assert len(preds) == 2, preds
for p in preds:
    assert isinstance(p["label"], int) and 0 <= p["label"] <= 9, p
    assert math.isclose(sum(p["probabilities"]), 1.0, abs_tol=1e-3), p
    assert p["label"] == max(range(len(p["probabilities"])), key=p["probabilities"].__getitem__), p
PY
    log "prediction ok: ${reply:0:120}"
    for _ in $(seq 1 60); do
        health="$(docker inspect -f '{{.State.Health.Status}}' "$CONTAINER")"
        [[ "$health" == healthy ]] && { log "docker HEALTHCHECK: healthy"; return 0; }
        [[ "$health" == unhealthy ]] && break
        sleep 0.5
    done
    die "docker HEALTHCHECK status: $health"
}

# Concurrent /predict traffic across `docker stop`. Every request uses its own
# connection. A request the server read and then left unanswered shows as an
# end of stream with no response (the kernel sends FIN once the request was
# read); a connection the server never read is refused or reset (Linux answers
# a close with unread data, or a closed listener's backlog, with RST).
drain_test() {
    local verdict=0
    python3 - "$PORT" "$CONTAINER" "$DRAIN_S" "$GRACE_S" <<'PY' || verdict=$?
import errno, json, socket, subprocess, sys, threading, time

port, container = int(sys.argv[1]), sys.argv[2]
drain_s, grace_s = float(sys.argv[3]), float(sys.argv[4])
THREADS, MAX_SECONDS = 12, 30 + drain_s + grace_s
body = json.dumps({"instances": [[float((i * 5 + k) % 17) for i in range(64)] for k in range(4)]}).encode()
request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
ready_req = b"GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
NOT_READ = {errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ENETUNREACH}
stop_sent = threading.Event()
lock = threading.Lock()
results = []          # (outcome, after_stop)
ready_503_at = []     # seconds after SIGTERM at which readiness answered 503


def exchange(payload):
    """One request on a fresh connection -> ('status', code) | ('not-read', errno) | ('dropped', why)."""
    s = socket.socket()
    s.settimeout(drain_s + 10)
    try:
        try:
            s.connect(("127.0.0.1", port))
        except OSError as e:
            return "not-read", errno.errorcode.get(e.errno, str(e))
        data = b""
        try:
            s.sendall(payload)
            while chunk := s.recv(65536):
                data += chunk
        except OSError as e:
            if not data and e.errno in NOT_READ:
                return "not-read", errno.errorcode.get(e.errno, str(e))
            return "dropped", f"{e!r} after {len(data)} bytes"
        if not data:
            return "dropped", "end of stream without a response"
        head, _, content = data.partition(b"\r\n\r\n")
        try:
            code = int(head.split(b" ", 2)[1])
            if code == 200 and payload is request:
                assert len(json.loads(content)["predictions"]) == 4
        except (ValueError, IndexError, KeyError, AssertionError):
            return "dropped", f"malformed response {data[:80]!r}"
        return "status", code
    finally:
        s.close()


def client():
    t_end = time.monotonic() + MAX_SECONDS
    while time.monotonic() < t_end:
        after = stop_sent.is_set()
        kind, detail = exchange(request)
        with lock:
            results.append(((kind, detail), after))
        if after and kind == "not-read":
            return  # the listener is gone; every later connection would be too


def readiness_poller(t_stop):
    """Records when /health/ready first answers 503 after SIGTERM."""
    t_end = time.monotonic() + grace_s + 5
    while time.monotonic() < t_end:
        kind, detail = exchange(ready_req)
        if kind == "status" and detail == 503:
            ready_503_at.append(time.monotonic() - t_stop)
            return
        if kind != "status":
            return
        time.sleep(0.05)


threads = [threading.Thread(target=client, daemon=True) for _ in range(THREADS)]
for t in threads:
    t.start()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    with lock:
        ok = sum(1 for (k, d), _ in results if (k, d) == ("status", 200))
    if ok >= 50:
        break
    time.sleep(0.05)
t_stop = time.monotonic()
stop_sent.set()
poller = threading.Thread(target=readiness_poller, args=(t_stop,), daemon=True)
poller.start()
stop = subprocess.run(["docker", "stop", "-t", "40", container], capture_output=True, text=True)
stop_seconds = time.monotonic() - t_stop
for t in threads + [poller]:
    t.join(MAX_SECONDS)

def count(pred):
    return sum(1 for r in results if pred(*r))

summary = {
    "requests": len(results),
    "200 before SIGTERM": count(lambda o, a: o == ("status", 200) and not a),
    "200 after SIGTERM": count(lambda o, a: o == ("status", 200) and a),
    "503": count(lambda o, a: o == ("status", 503)),
    "never read (refused/reset)": count(lambda o, a: o[0] == "not-read"),
    "dropped": count(lambda o, a: o[0] == "dropped"),
    "other status": count(lambda o, a: o[0] == "status" and o[1] not in (200, 503)),
    "readiness 503 after": f"{ready_503_at[0]:.2f}s" if ready_503_at else "never seen",
    "docker stop took": f"{stop_seconds:.2f}s",
}
print(json.dumps(summary, indent=2), file=sys.stderr)
problems = []
if stop.returncode != 0:
    problems.append(f"docker stop failed: {stop.stderr.strip()}")
if summary["dropped"] or summary["other status"]:
    bad = sorted({str(o) for o, _ in results if o[0] == "dropped" or (o[0] == "status" and o[1] not in (200, 503))})
    problems.append(f"requests without a clean answer: {bad[:5]}")
if summary["200 before SIGTERM"] < 50:
    problems.append("too little traffic before SIGTERM to mean anything")
if not ready_503_at:
    problems.append("/health/ready never answered 503 after SIGTERM")
if grace_s > 0 and summary["200 after SIGTERM"] == 0:
    problems.append("nothing was served after SIGTERM: no propagation window")
if stop_seconds > drain_s + grace_s + 5:
    problems.append(f"shutdown took {stop_seconds:.1f}s, drain deadline is {drain_s + grace_s:.0f}s")
for p in problems:
    print("problem:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
    local code oom
    code="$(docker inspect -f '{{.State.ExitCode}}' "$CONTAINER")"
    oom="$(docker inspect -f '{{.State.OOMKilled}}' "$CONTAINER")"
    [[ "$code" == 0 && "$oom" == false ]] || die "container exit code $code (OOMKilled=$oom)"
    ((verdict == 0)) || die "shutdown under load (see problems above)"
    log "container exited 0 after draining"
}

# Each model of cases.json served from the read-only /models mount, its
# predictions compared with the host's.
serve_models() {
    local refs ref name reply i=0
    refs="$(python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))))' "$WORK/cases.json")"
    while IFS= read -r ref; do
        i=$((i + 1))
        name="$CONTAINER-model$i"
        start_container "$name" -v "$MODELS:/models:ro" -e BATCHSERVE_MODEL="$ref"
        [[ "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}{{range .Mounts}} {{.Destination}}:{{.RW}}{{end}}' "$name")" == "true /models:false" ]] ||
            die "$name: expected a read-only root and a read-only /models mount"
        reply="$(http POST /predict "$(python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))[sys.argv[2]]["request"]))' "$WORK/cases.json" "$ref")")"
        python3 - "$reply" "$WORK/cases.json" "$ref" <<'PY' || die "$ref: /predict: ${reply:0:300}"
import json, math, sys
reply, cases, ref = sys.argv[1:4]
status, _, body = reply.partition(" ")
assert status == "200", status
served = json.loads(body)["predictions"]
expected = json.load(open(cases))[ref]["predictions"]


def same(got, want):
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(same, got, want))
    if isinstance(want, float):  # float32 on the wire: its shortest repr, not float64's
        return isinstance(got, int | float) and math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6)
    return got == want


assert same(served, expected), f"served {served}, the host computed {expected}"
PY
        log "$ref: predictions match the host's: ${reply:0:100}"
        docker rm -f "$name" >/dev/null
    done <<<"$refs"
}

# A model whose runtime the image lacks stops the container, and the message
# says how to build an image that has it (no pip inside, read-only root).
check_missing_runtime() {
    local name="$CONTAINER-no-runtime" code
    CONTAINERS+=("$name")
    code=0
    timeout 60 docker run --name "$name" "${RESTRICTED[@]}" -v "$MODELS:/models:ro" \
        -e BATCHSERVE_MODEL=/models/no-runtime.pt "$IMAGE_TAG" >"$WORK/no-runtime.log" 2>&1 || code=$?
    ((code != 0 && code != 124)) || die "a .pt model without torch: docker run exited $code"
    grep -q -- "--build-arg EXTRAS=torch" "$WORK/no-runtime.log" ||
        { tail -n 5 "$WORK/no-runtime.log" >&2; die "the missing-runtime message does not name EXTRAS=torch"; }
    log "a .pt model without torch: exit $code, the message names --build-arg EXTRAS=torch"
}

main() {
    [[ "$(id -u)" == 0 ]] || die "needs root (dockerd, debootstrap)"
    ensure_tools
    start_dockerd
    make_models
    build_images
    run_container
    check_serving
    log "SIGTERM during a burst (drain ${DRAIN_S}s, grace ${GRACE_S}s)"
    drain_test
    serve_models
    check_missing_runtime
}

main "$@"
