#!/usr/bin/env bash
# Builds Telegraf (MIT) from its Go module into the cache, once per version, with only what the
# ingest bench compares against: the kafka_consumer input, the json_v2 parser and the influxdb_v2
# output (Telegraf's "custom" build tag leaves every other plugin out).
set -euo pipefail

TELEGRAF_VERSION="${TELEGRAF_VERSION:-v1.37.2}"
CACHE="${SENSOR_CACHE_DIR:-$HOME/.cache/sensor-analytics}"
OUT="$CACHE/telegraf-$TELEGRAF_VERSION"
BIN="$OUT/telegraf"

if [ -x "$BIN" ]; then
  echo "telegraf $TELEGRAF_VERSION already built: $BIN"
  exit 0
fi

command -v go >/dev/null || { echo "go is required to build telegraf" >&2; exit 1; }

WORK="$CACHE/build/telegraf-$TELEGRAF_VERSION"
mkdir -p "$WORK" "$OUT"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

echo "[telegraf] downloading github.com/influxdata/telegraf@$TELEGRAF_VERSION"
dir=$(go mod download -json "github.com/influxdata/telegraf@$TELEGRAF_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "go mod download did not say where telegraf is" >&2; exit 1; }
rm -rf "$WORK/src"
cp -r "$dir" "$WORK/src"
chmod -R u+w "$WORK/src"
cd "$WORK/src"
echo "[telegraf] building (kafka_consumer, json_v2, influxdb_v2 only)"
go build -tags "custom,inputs.kafka_consumer,parsers.json_v2,outputs.influxdb_v2" -o "$BIN.tmp" ./cmd/telegraf
mv "$BIN.tmp" "$BIN"
echo "telegraf $TELEGRAF_VERSION built: $BIN"
