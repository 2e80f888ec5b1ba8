#!/usr/bin/env bash
# Build the pinned Helm (v4, from the Go module proxy) once per version into a cache
# outside the clone, then put it at .venv/bin/helm (what tests/integration/test_helm.py
# runs). `make helm` calls this; `make test` depends on it.
#
#   scripts/helm.sh          build (once) and link .venv/bin/helm; prints its version
#
# Environment:
#   HELM_VERSION     release to build (default v4.3.2)
#   HELM_CACHE_DIR   where built binaries live (default
#                    ${XDG_CACHE_HOME:-$HOME/.cache}/autopilot), one directory per
#                    version: $HELM_CACHE_DIR/helm-<version>/helm
#   GO               the go command (default: `go` on PATH, else /usr/local/go/bin/go)
#   VENV             the virtualenv whose bin/ gets the link (default <repo>/.venv)
#
# Needs Go (1.24 or newer for Helm 4) only when the binary is not cached yet.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.2}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE_ROOT="${HELM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/autopilot}"
DEST_DIR="$CACHE_ROOT/helm-$HELM_VERSION"
HELM_BIN="$DEST_DIR/helm"
VENV="${VENV:-$REPO/.venv}"

log() { echo "helm.sh: $*" >&2; }

if [ ! -x "$HELM_BIN" ]; then
  go_cmd="${GO:-}"
  if [ -z "$go_cmd" ]; then
    if command -v go >/dev/null 2>&1; then
      go_cmd="$(command -v go)"
    elif [ -x /usr/local/go/bin/go ]; then
      go_cmd=/usr/local/go/bin/go
    fi
  fi
  if [ -z "$go_cmd" ] || ! "$go_cmd" version >/dev/null 2>&1; then
    log "Go is needed to build helm $HELM_VERSION and was not found or does not run (looked at \$GO,"
    log "go on PATH, /usr/local/go/bin/go; set GO=/path/to/go). Install Go 1.24+ from https://go.dev/dl/"
    exit 1
  fi
  log "building helm $HELM_VERSION with $("$go_cmd" version) into $DEST_DIR (once per version) …"
  mkdir -p "$DEST_DIR"
  # GOBIN: the binary goes straight into the versioned cache directory. A temporary
  # name first, so an interrupted build never leaves a half-written cached binary.
  tmp_bin="$(mktemp -d "$DEST_DIR/.build.XXXXXX")"
  trap 'rm -rf "$tmp_bin"' EXIT
  # -X: `go install` leaves Helm's version at its minor ("v4.3"); Helm's own Makefile
  # sets the full one the same way.
  GOBIN="$tmp_bin" GOFLAGS="${GOFLAGS:-} -trimpath" CGO_ENABLED=0 \
    "$go_cmd" install -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  mv "$tmp_bin/helm" "$HELM_BIN"
fi

mkdir -p "$VENV/bin"
ln -sf "$HELM_BIN" "$VENV/bin/helm"
"$VENV/bin/helm" version --short
