#!/usr/bin/env bash
# Builds the bench's plugin functions into their function directories:
#   bench/functions/hello-go@1.0.0/hello-go     runtime "process", Go, sdk/go
#   bench/functions/hello-c@1.0.0/libhello.so   runtime "native", C, sdk/c + libcurl
#
#   bench/build-plugins.sh          # both
#   bench/build-plugins.sh go       # only some languages: c, go
#
# bench/quick.ts runs it (once per run and language) before it starts fezz-process or
# fezz-native; if it fails, those rows say "failed to start: <reason>".
# Same flags and approach as scripts/build-plugins.sh: every artifact is built under
# target/bench-plugin-build/ and then renamed into place, and an unchanged one is left alone.
# Needs gcc + libcurl headers (c), Go >= 1.19 (go); never reaches the network.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FUNCTIONS="bench/functions"
STAGE="$ROOT/target/bench-plugin-build"

die() { echo "bench/build-plugins: $*" >&2; exit 1; }
log() { echo "bench/build-plugins: $*"; }

langs=("$@")
[ ${#langs[@]} -eq 0 ] && langs=(c go)
want() { local l; for l in "${langs[@]}"; do [ "$l" = "$1" ] && return 0; done; return 1; }
for l in "${langs[@]}"; do
  case "$l" in c|go) ;; *) die "unknown language '$l' (expected c or go)";; esac
done

# ---- toolchain checks (all up front, so a missing tool fails before anything is built) ----
missing=()
command -v gcc >/dev/null 2>&1 || missing+=("gcc (apt-get install -y gcc)")
if want c && command -v gcc >/dev/null 2>&1; then
  echo '#include <curl/curl.h>' | gcc -E -x c - >/dev/null 2>&1 \
    || missing+=("libcurl headers (apt-get install -y libcurl4-openssl-dev)")
fi
if want go; then
  command -v go >/dev/null 2>&1 || missing+=("go >= 1.19 (apt-get install -y golang-go)")
fi
if [ ${#missing[@]} -gt 0 ]; then
  # One line, so the bench can show it as the reason.
  die "missing toolchain: $(IFS=';'; echo "${missing[*]}" | sed 's/;/, /g')"
fi

mkdir -p "$STAGE"

# install_artifact SRC DEST [MODE]: atomic replace (rename within the same file system).
install_artifact() {
  local src="$1" dest="$2" mode="${3:-0755}"
  local tmp="$dest.$$.tmp"
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    chmod "$mode" "$dest"
    log "up to date $dest"
    return 0
  fi
  cp "$src" "$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$dest"
  log "built $dest"
}

# ---- C (native .so, sdk/c + libcurl) ----
build_c() { # build_c FUNCTION_DIR SOURCE OUTPUT
  local dir="$1" src="$2" out="$3"
  local stage="$STAGE/$(basename "$dir")"
  mkdir -p "$stage"
  gcc -std=gnu11 -O2 -g -Wall -Wextra -fPIC -shared -fvisibility=hidden \
    -I "$ROOT/sdk/c" -o "$stage/$out" "$dir/$src" "$ROOT/sdk/c/fezz.c" -lcurl -pthread
  install_artifact "$stage/$out" "$dir/$out"
}

# ---- Go (process executable, sdk/go, std only) ----
go_env() {
  # Never reach the network: the only module is sdk/go, through a local replace.
  env GOPROXY=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=1 "$@"
}
build_go() { # build_go FUNCTION_DIR OUTPUT
  local dir="$1" out="$2"
  local stage="$STAGE/$(basename "$dir")"
  mkdir -p "$stage"
  (cd "$dir" && go_env go build -o "$stage/$out" .)
  install_artifact "$stage/$out" "$dir/$out"
}

if want c; then
  build_c "$FUNCTIONS/hello-c@1.0.0" hello.c libhello.so
fi
if want go; then
  build_go "$FUNCTIONS/hello-go@1.0.0" hello-go
fi
log "done"
