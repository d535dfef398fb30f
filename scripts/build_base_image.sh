#!/usr/bin/env bash
# Build a local stand-in for the python base image, for hosts that cannot pull
# from a container registry.
#
# The image is a minimal Debian (debootstrap --variant=minbase) with python3,
# python3-venv, python3-pip and ca-certificates, plus this host's CA bundle and
# pip configuration so that `pip install` inside `docker build` trusts the same
# TLS roots as the host. The Dockerfile builds on it exactly as on
# python:3.12-slim:
#
#   scripts/build_base_image.sh batchserve-base:local
#   docker build --build-arg BASE_IMAGE=batchserve-base:local -t batchserve:local .
#
# The debootstrapped root file system is cached as a tarball, so only the first
# run downloads packages.
#
# Environment:
#   DOCKER_HOST              daemon to import into (default: docker's default)
#   BATCHSERVE_CACHE_DIR     cache folder (default: ${XDG_CACHE_HOME:-~/.cache}/batchserve)
#   BATCHSERVE_BASE_SUITE    Debian suite (default: bookworm)
#   BATCHSERVE_DEBIAN_MIRROR Debian mirror (default: the one apt on this host uses)
#   BATCHSERVE_CA_BUNDLE     CA bundle copied into the image
#                            (default: /etc/ssl/certs/ca-certificates.crt)
# Options:
#   --rootfs-only            only make sure the cached tarball exists; print its path
set -euo pipefail

readonly PACKAGES="python3,python3-venv,python3-pip,ca-certificates"
SUITE="${BATCHSERVE_BASE_SUITE:-bookworm}"
CACHE_DIR="${BATCHSERVE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/batchserve}"
CA_BUNDLE="${BATCHSERVE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

log() { printf '[build_base_image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The first mirror apt is configured with for SUITE itself (not -security/-updates),
# read from both the one-line and the deb822 source formats.
detect_mirror() {
    local files=() f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] && files+=("$f")
    done
    ((${#files[@]})) || return 0
    awk -v suite="$SUITE" '
        /^[[:space:]]*deb[[:space:]]/ {
            i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == suite) { print $i; exit }
        }
        /^URIs:/ { uri = $2 }
        /^Suites:/ { for (j = 2; j <= NF; j++) if ($j == suite && uri != "") { print uri; exit } }
        /^[[:space:]]*$/ { uri = "" }
    ' "${files[@]}"
}

# Cache key: anything that changes the debootstrapped tree.
rootfs_tarball() {
    local key
    key="$(printf '%s|%s|%s|%s' "$SUITE" minbase "$PACKAGES" "$(uname -m)" | sha256sum | cut -c1-16)"
    printf '%s/rootfs-%s-%s.tar' "$CACHE_DIR" "$SUITE" "$key"
}

make_rootfs() {
    local tarball="$1" mirror root
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install -y debootstrap)"
    [[ "$(id -u)" == 0 ]] || die "debootstrap needs root"
    mirror="${BATCHSERVE_DEBIAN_MIRROR:-$(detect_mirror)}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    mkdir -p "$CACHE_DIR"
    root="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the variable is local
    trap "rm -rf '$root' '$tarball.part'" EXIT
    log "debootstrap $SUITE from $mirror (first run only, takes a minute or two)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" \
        >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; die "debootstrap failed"; }
    rm -f "$root.log"
    # Trim what an image never needs: package caches, lists, docs.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
    tar -C "$root" --numeric-owner -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$root"
    trap - EXIT
}

main() {
    local tag="batchserve-base:local" rootfs_only=0 arg
    for arg in "$@"; do
        case "$arg" in
            --rootfs-only) rootfs_only=1 ;;
            -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
            -*) die "unknown option $arg" ;;
            *) tag="$arg" ;;
        esac
    done

    local tarball
    tarball="$(rootfs_tarball)"
    if [[ -f "$tarball" ]]; then
        log "using cached root file system $tarball"
    else
        make_rootfs "$tarball"
    fi
    if ((rootfs_only)); then
        printf '%s\n' "$tarball"
        return 0
    fi

    [[ -r "$CA_BUNDLE" ]] || die "CA bundle $CA_BUNDLE not readable"
    command -v docker >/dev/null || die "docker client not found"
    local rootfs_tag="batchserve-rootfs:${SUITE}" ctx
    log "importing root file system as $rootfs_tag"
    docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'CMD ["/bin/bash"]' \
        "$tarball" "$rootfs_tag" >/dev/null

    # The host's trust roots go in a layer of their own, so a changed bundle
    # never invalidates the cached tarball.
    ctx="$(mktemp -d)"
    # shellcheck disable=SC2064
    trap "rm -rf '$ctx'" EXIT
    cp "$CA_BUNDLE" "$ctx/ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$ctx/pip.conf"
    cat >"$ctx/Dockerfile" <<EOF
FROM $rootfs_tag
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY pip.conf /etc/pip.conf
EOF
    log "adding host CA bundle, tagging $tag"
    docker build -q -t "$tag" "$ctx" >"$ctx/build.log" 2>&1 || { cat "$ctx/build.log" >&2; die "docker build failed"; }
    log "base image ready: $tag"
}

main "$@"
