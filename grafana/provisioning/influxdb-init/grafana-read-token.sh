#!/bin/bash
# Run by the influxdb container once, when it sets itself up (docker-compose.yml mounts this
# directory at /docker-entrypoint-initdb.d): a token that can read the org's buckets and nothing
# else, written where the grafana container reads its datasource token from. Grafana never gets
# the operator token.
set -euo pipefail
out=/run/influx-tokens/grafana-read-token
[ -s "$out" ] && exit 0
json=$(influx auth create --org "$DOCKER_INFLUXDB_INIT_ORG" --read-buckets --description "grafana read-only" --json)
token=$(printf '%s' "$json" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' | head -n 1)
if [ -z "$token" ]; then
  echo "grafana-read-token: no token in the answer of influx auth create" >&2
  exit 1
fi
# Grafana runs as another user and must be able to read it.
umask 022
printf '%s' "$token" >"$out"
