# syntax=docker/dockerfile:1
#
# batchserve container image.
#
#   docker build -t batchserve:local .
#   docker run --rm -p 127.0.0.1:8000:8000 batchserve:local
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

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
# .dockerignore admits only what the package build needs.
COPY . .
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist . \
    && /opt/venv/bin/pip install --no-cache-dir /tmp/dist/*.whl \
    && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
    && /opt/venv/bin/python -c "import batchserve" \
    && rm -rf /tmp/dist

# ---- runtime: the base plus the virtualenv, run as an unprivileged user
FROM ${BASE_IMAGE} AS runtime

LABEL org.opencontainers.image.title="batchserve" \
      org.opencontainers.image.description="HTTP inference service with dynamic batching" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 batchserve \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin batchserve

COPY --from=builder /opt/venv /opt/venv

# Every setting is an environment variable (BATCHSERVE_*); these are the
# container defaults, override them with `docker run -e` or a ConfigMap.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BATCHSERVE_HOST=0.0.0.0 \
    BATCHSERVE_PORT=8000 \
    BATCHSERVE_LOG_FORMAT=json

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
