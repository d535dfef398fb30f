# batchserve container image.
#
#   docker build -t batchserve:0.1.0 .
#   docker build --build-arg EXTRAS=onnx,sklearn -t batchserve:0.1.0 .
#   docker run --rm -p 127.0.0.1:8000:8000 --read-only --tmpfs /tmp \
#       -v "$PWD/models:/models:ro" -e BATCHSERVE_MODEL=/models/model.onnx batchserve:0.1.0
#
# EXTRAS picks the model runtimes, from the extras in pyproject.toml: onnx
# (onnxruntime), sklearn (scikit-learn, joblib), torch. The image has no pip and
# a read-only root, so a runtime it lacks means building it again. PyPI's torch
# for Linux is the CUDA build (several GB); with EXTRAS=torch pass the CPU index,
# --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu.
# EXTRA_PACKAGES adds requirement specifiers, e.g. "scikit-learn==1.5.2" to load
# a pickled estimator with the version that saved it. deploy/README.md has more.
#
# BASE_IMAGE only has to be a Debian-like image with python3 (>= 3.11) and its
# venv module; builder and runtime use the same base, so the virtualenv's
# interpreter link stays valid. scripts/build_base_image.sh makes a stand-in
# for hosts that cannot pull from a registry.
ARG BASE_IMAGE=python:3.12-slim

# ---- builder: build the wheel and install it with its dependencies into /opt/venv
FROM ${BASE_IMAGE} AS builder

# Package index settings for networks that need them; empty means PyPI. The
# proxy variables (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) are predefined build
# args and are not recorded in the image.
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_TRUSTED_HOST=""
# Comma-separated extras (onnx,sklearn,torch) and further requirement
# specifiers (space-separated), both installed with the wheel.
ARG EXTRAS=""
ARG EXTRA_PACKAGES=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
# pip only warns about an extra the package does not have, so a misspelt one
# would make an image without the runtime; stop here, before any download.
COPY pyproject.toml ./
RUN python3 -c 'import sys, tomllib; \
known = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]; \
bad = [e for e in sys.argv[1].replace(" ", "").split(",") if e and e not in known]; \
sys.exit(f"EXTRAS: no such extra {bad}; batchserve has {sorted(known)}" if bad else 0)' \
    "$EXTRAS"

# .dockerignore admits only what the package build needs.
COPY . .
# EXTRA_PACKAGES is split into words on purpose.
# hadolint ignore=SC2086
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/dist . \
    && set -- /tmp/dist/batchserve-*.whl \
    && /opt/venv/bin/pip install "$1${EXTRAS:+[$EXTRAS]}" $EXTRA_PACKAGES \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
    && /opt/venv/bin/python -c "import batchserve" \
    && rm -rf /tmp/dist

# ---- runtime: the base plus the virtualenv, run as an unprivileged user
FROM ${BASE_IMAGE} AS runtime

LABEL org.opencontainers.image.title="batchserve" \
      org.opencontainers.image.description="HTTP inference service with dynamic batching" \
      org.opencontainers.image.licenses="Apache-2.0"

# /models is where a model folder is mounted (read-only is enough); it is on
# BATCHSERVE_MODEL_PATH, so a Python model there is found as module:attr.
RUN groupadd --system --gid 10001 batchserve \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin batchserve \
    && mkdir -m 0755 /models

COPY --from=builder /opt/venv /opt/venv

# Every setting is an environment variable (BATCHSERVE_*); these are the
# container defaults, override them with `docker run -e` or a ConfigMap.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BATCHSERVE_HOST=0.0.0.0 \
    BATCHSERVE_PORT=8000 \
    BATCHSERVE_LOG_FORMAT=json \
    BATCHSERVE_MODEL_PATH=/models

USER 10001:10001
WORKDIR /
EXPOSE 8000

# The server handles SIGTERM itself: readiness turns 503, accepted requests
# drain within BATCHSERVE_DRAIN_TIMEOUT_S, then the process exits 0. Exec form
# keeps the server as PID 1 so the signal reaches it.
STOPSIGNAL SIGTERM

# Slim images have no curl; the proxy handler is emptied so a proxy set in the
# environment is never asked for loopback.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/health/live' % os.environ.get('BATCHSERVE_PORT', '8000'), timeout=2)"]

ENTRYPOINT ["batchserve"]
CMD ["serve"]
