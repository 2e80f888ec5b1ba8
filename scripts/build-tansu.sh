#!/usr/bin/env bash
# Build Tansu from crates.io with its SQLite storage engine (a MEASURED OPTION for
# the embedded broker, not used by the product: see docs/brokers.md; `make install`
# does not call it).
#
#   scripts/build-tansu.sh          build once (skipped when the cached binary exists),
#                                   then print the binary's path
#   scripts/build-tansu.sh path     print where the binary is (or would be); no build
#
# Nothing calls it: `autopilot broker`, the demo and the tests never build.
#
# Environment:
#   TANSU_VERSION         the crates.io release (default 0.6.0, the newest there)
#   AUTOPILOT_TANSU_HOME  install prefix (default
#                         ${XDG_CACHE_HOME:-$HOME/.cache}/autopilot/tansu-<version>),
#                         the binary is <prefix>/bin/tansu. Outside the clone, so one
#                         build serves every checkout and survives `make clean`.
#   CARGO_BUILD_JOBS      parallel rustc jobs (cargo's default: the number of cores)
#
# Needs cargo and rustc >= 1.85 (Tansu 0.6.0 is Rust edition 2024) and a C compiler
# (SQLite is compiled from source). The build takes a while once (23 min wall, 20 min
# CPU on the shared 2-core machine, see docs/brokers.md); its intermediate files go to <prefix>.build and are
# deleted after a successful build (kept after a failure, so a retry resumes).
set -euo pipefail

TANSU_VERSION=${TANSU_VERSION:-0.6.0}
PREFIX=${AUTOPILOT_TANSU_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/autopilot/tansu-$TANSU_VERSION}
BIN=$PREFIX/bin/tansu
STAMP=$PREFIX/.complete

say() { echo "build-tansu: $*" >&2; }

if [ "${1:-}" = path ]; then echo "$BIN"; exit 0; fi
if [ -n "${1:-}" ]; then echo "usage: $0 [path]" >&2; exit 2; fi

if [ -x "$BIN" ] && [ -f "$STAMP" ]; then
  echo "$BIN"
  exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is needed to build the embedded broker (Tansu $TANSU_VERSION) once:"
  say "install Rust >= 1.85 (https://rustup.rs, or Debian's cargo and rustc), then run"
  say "\`make install\` again. Or use Apache Kafka instead: docs/brokers.md."
  exit 1
fi

mkdir -p "$PREFIX"
exec 9>"$PREFIX.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9  # another `make install` building the same version: wait for it
  if [ -x "$BIN" ] && [ -f "$STAMP" ]; then echo "$BIN"; exit 0; fi
fi

say "building Tansu $TANSU_VERSION (crates.io, SQLite engine) into $PREFIX;"
say "this happens once per version and takes several minutes …"
start=$SECONDS
if ! cargo install tansu --version "$TANSU_VERSION" --locked --features libsql \
      --root "$PREFIX" --target-dir "$PREFIX.build" >&2; then
  say "FAILED to build Tansu $TANSU_VERSION with $(cargo --version 2>/dev/null || echo cargo)"
  say "and $(rustc --version 2>/dev/null || echo 'no rustc'). Tansu $TANSU_VERSION needs"
  say "rustc >= 1.85 and a C compiler (cc) for SQLite. Fix that and run \`make install\` again"
  say "(the build resumes from $PREFIX.build), or use Apache Kafka: docs/brokers.md."
  exit 1
fi
"$BIN" --version >/dev/null 2>&1 || "$BIN" --help >/dev/null || {
  say "the built binary $BIN does not run"; exit 1; }
touch "$STAMP"
rm -rf "$PREFIX.build"
say "built $BIN in $((SECONDS - start)) s"
echo "$BIN"
