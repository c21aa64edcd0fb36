#!/usr/bin/env bash
# Builds the example plugins (examples/functions/*) and the misbehaving test plugins
# (test/fixtures/plugins/*) into their function directories.
#
#   scripts/build-plugins.sh            # everything
#   scripts/build-plugins.sh c rust     # only some languages: c, go, rust, python
#
# Needs: gcc + libcurl headers (apt-get install -y gcc libcurl4-openssl-dev), Go >= 1.19
# (apt-get install -y golang-go), cargo/rustc (no crates are downloaded), python3.
# Idempotent. Every artifact is built under target/plugin-build/ and then renamed into
# place, so a host that has the old .so loaded never sees a half-written file.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

EXAMPLES="examples/functions"
FIXTURES="test/fixtures/plugins"
STAGE="$ROOT/target/plugin-build"

die() { echo "build-plugins: $*" >&2; exit 1; }
log() { echo "build-plugins: $*"; }

langs=("$@")
[ ${#langs[@]} -eq 0 ] && langs=(c go rust python)
want() { local l; for l in "${langs[@]}"; do [ "$l" = "$1" ] && return 0; done; return 1; }
for l in "${langs[@]}"; do
  case "$l" in c|go|rust|python) ;; *) die "unknown language '$l' (expected c, go, rust or python)";; esac
done

# ---- toolchain checks (all up front, so a missing tool fails before anything is built) ----
missing=()
if want c || want go; then
  command -v gcc >/dev/null 2>&1 || missing+=("gcc (apt-get install -y gcc)")
fi
if want c && command -v gcc >/dev/null 2>&1; then
  echo '#include <curl/curl.h>' | gcc -E -x c - >/dev/null 2>&1 \
    || missing+=("libcurl headers (apt-get install -y libcurl4-openssl-dev)")
fi
if want go; then
  command -v go >/dev/null 2>&1 || missing+=("go >= 1.19 (apt-get install -y golang-go)")
fi
if want rust; then
  command -v cargo >/dev/null 2>&1 || missing+=("cargo (a Rust toolchain, e.g. rustup or apt-get install -y cargo)")
fi
if want python; then
  command -v python3 >/dev/null 2>&1 || missing+=("python3 (apt-get install -y python3)")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-plugins: missing toolchain:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

mkdir -p "$STAGE"

# install SRC DEST [MODE]: atomic replace (rename within the same file system); an
# unchanged artifact is left alone, so a watching host does not reload it for nothing.
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

# ---- Go (process executable or c-shared .so, sdk/go, std only) ----
go_env() {
  # Never reach the network: the only module is sdk/go, through a local replace.
  env GOPROXY=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=1 "$@"
}
build_go() { # build_go FUNCTION_DIR OUTPUT [c-shared]
  local dir="$1" out="$2" mode="${3:-exe}"
  local stage="$STAGE/$(basename "$dir")"
  mkdir -p "$stage"
  if [ "$mode" = "c-shared" ]; then
    (cd "$dir" && go_env go build -buildmode=c-shared -o "$stage/$out" .)
  else
    (cd "$dir" && go_env go build -o "$stage/$out" .)
  fi
  install_artifact "$stage/$out" "$dir/$out"
}

# ---- Rust (cdylib, sdk/rust, std only) ----
build_rust() { # build_rust FUNCTION_DIR LIB_FILE OUTPUT
  local dir="$1" lib="$2" out="$3"
  CARGO_TARGET_DIR="$ROOT/target" cargo build --release --offline --quiet --manifest-path "$dir/Cargo.toml"
  install_artifact "$ROOT/target/release/$lib" "$dir/$out"
}

if want c; then
  build_c "$EXAMPLES/echo-c@1.0.0" echo.c libecho.so
  build_c "$FIXTURES/misbehave-c@1.0.0" misbehave.c libmisbehave.so
fi
if want go; then
  build_go "$EXAMPLES/echo-go@1.0.0" echo-go
  build_go "$EXAMPLES/echo-go-native@1.0.0" libecho.so c-shared
  build_go "$EXAMPLES/sse-go@1.0.0" sse-go
fi
if want rust; then
  build_rust "$EXAMPLES/echo-rust@1.0.0" libecho.so libecho.so
fi
if want python; then
  for f in "$EXAMPLES/echo-python@1.0.0/main.py" "$FIXTURES/misbehave-py@1.0.0/main.py" \
    "$FIXTURES/stream-py@1.0.0/main.py" "$FIXTURES/stream-probe-py@1.0.0/main.py" "sdk/python/fezz.py"; do
    # A syntax check that writes no __pycache__ into the function directories.
    python3 -c 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")' "$f"
    case "$f" in */main.py) chmod 0755 "$f";; esac
    log "checked $f"
  done
  # A deployed Python plugin ships the SDK beside main.py: a sandboxed one sees nothing else.
  cp sdk/python/fezz.py "$EXAMPLES/echo-python@1.0.0/fezz.py.tmp"
  mv "$EXAMPLES/echo-python@1.0.0/fezz.py.tmp" "$EXAMPLES/echo-python@1.0.0/fezz.py"
  log "copied sdk/python/fezz.py into $EXAMPLES/echo-python@1.0.0"
fi
log "done"
