#!/usr/bin/env bash
# Builds influxd (InfluxDB 2 OSS) from its Go module into the cache, once per version.
# libflux (the Flux engine, Rust) is built by influxdata/pkg-config through cargo.
set -euo pipefail

INFLUXDB_VERSION="${INFLUXDB_VERSION:-v2.7.12}"
PKG_CONFIG_VERSION="${PKG_CONFIG_VERSION:-v0.2.14}"
CACHE="${SENSOR_CACHE_DIR:-$HOME/.cache/sensor-analytics}"
OUT="$CACHE/influxdb-$INFLUXDB_VERSION"
BIN="$OUT/influxd"

if [ -x "$BIN" ]; then
  echo "influxd $INFLUXDB_VERSION already built: $BIN"
  exit 0
fi

command -v go >/dev/null || { echo "go is required to build influxd" >&2; exit 1; }
command -v cargo >/dev/null || { echo "cargo (Rust) is required to build libflux" >&2; exit 1; }

WORK="$CACHE/build/influxdb-$INFLUXDB_VERSION"
mkdir -p "$WORK" "$OUT"
cd "$WORK"

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=1
# libflux pins an old Rust toolchain that cannot be downloaded here, and denies warnings that
# newer compilers emit. RUSTFLAGS does not reach host artifacts (flux's build script links
# flux-core) when cargo is given --target, so a rustc wrapper caps lints for every crate.
export RUSTUP_TOOLCHAIN=stable
cat > "$WORK/rustc-cap-lints" <<'WRAP'
#!/bin/sh
case " $* " in
  *" --crate-name "*) case " $* " in *" --cap-lints"*) ;; *) set -- "$@" --cap-lints warn ;; esac ;;
esac
exec "$@"
WRAP
chmod +x "$WORK/rustc-cap-lints"
export RUSTC_WRAPPER="$WORK/rustc-cap-lints"

echo "[influxd] building pkg-config wrapper $PKG_CONFIG_VERSION"
GOBIN="$WORK/bin" go install "github.com/influxdata/pkg-config@$PKG_CONFIG_VERSION"
export PKG_CONFIG="$WORK/bin/pkg-config"

# A wrapper module: influxd's go.mod replace lines only apply in its own main module.
replaces=$(curl -fsS "${GOPROXY_MOD_URL:-https://proxy.golang.org}/github.com/influxdata/influxdb/v2/@v/$INFLUXDB_VERSION.mod" 2>/dev/null | grep '^replace ' || true)
if [ -z "$replaces" ]; then
  go mod download -json "github.com/influxdata/influxdb/v2@$INFLUXDB_VERSION" >/dev/null
  modfile="$(go env GOMODCACHE)/cache/download/github.com/influxdata/influxdb/v2/@v/$INFLUXDB_VERSION.mod"
  replaces=$(grep '^replace ' "$modfile" || true)
fi
cat > go.mod <<MOD
module sensor-analytics/influxd-build

go 1.23

require github.com/influxdata/influxdb/v2 $INFLUXDB_VERSION

$replaces
MOD

echo "[influxd] resolving modules (first run downloads a few hundred MB)"
go mod download -x github.com/influxdata/influxdb/v2 2>&1 | grep -E '^# get .*200' | sed -E 's/^# get ([^ ]+).*/[influxd]   \1/' | tail -n +1 || true
go get "github.com/influxdata/influxdb/v2/cmd/influxd@$INFLUXDB_VERSION"

echo "[influxd] compiling influxd and libflux (cargo); this takes several minutes on 2 cores"
# The full compiler output goes to a log; progress is a line every 100 packages.
buildlog="$WORK/build.log"
set +e
go build -v -tags sqlite_foreign_keys,sqlite_json -ldflags "-s -w -X main.version=${INFLUXDB_VERSION#v}" \
  -o "$BIN.tmp" github.com/influxdata/influxdb/v2/cmd/influxd > "$buildlog" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 15
  echo "[influxd]   still compiling: $(grep -c '^[a-z]' "$buildlog") packages so far"
done
wait "$pid"
status=$?
set -e
if [ "$status" -ne 0 ] || [ ! -x "$BIN.tmp" ]; then
  echo "influxd build failed (exit $status); the last lines of $buildlog:" >&2
  tail -n 40 "$buildlog" >&2
  exit 1
fi
mv "$BIN.tmp" "$BIN"
echo "[influxd] built $BIN"
"$BIN" version
