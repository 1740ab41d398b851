#!/usr/bin/env bash
# Resolves Apache Kafka (broker + tools) and its dependencies from Maven Central into the cache,
# once per version. The broker then runs as `java -cp 'libs/*' kafka.Kafka server.properties`.
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-3.9.1}"
SCALA_VERSION="${SCALA_VERSION:-2.13}"
CACHE="${SENSOR_CACHE_DIR:-$HOME/.cache/sensor-analytics}"
OUT="$CACHE/kafka-$SCALA_VERSION-$KAFKA_VERSION"

if [ -f "$OUT/.complete" ]; then
  echo "kafka $KAFKA_VERSION already resolved: $OUT"
  exit 0
fi
command -v mvn >/dev/null || { echo "mvn (Maven) is required to fetch Kafka" >&2; exit 1; }
command -v java >/dev/null || { echo "java (JDK 17) is required to run Kafka" >&2; exit 1; }

WORK="$CACHE/build/kafka-$KAFKA_VERSION"
mkdir -p "$WORK" "$OUT/libs"
cat > "$WORK/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sensor-analytics</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_$SCALA_VERSION</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
POM

echo "[kafka] resolving org.apache.kafka:kafka_$SCALA_VERSION:$KAFKA_VERSION and dependencies from Maven Central"
mvn -B -f "$WORK/pom.xml" -Dorg.slf4j.simpleLogger.log.org.apache.maven.cli.transfer.Slf4jMavenTransferListener=warn \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$OUT/libs" 2>&1 \
  | grep -E 'Downloaded from .*kafka|BUILD|ERROR' | sed 's/^/[kafka]   /'
ls "$OUT/libs"/kafka_"$SCALA_VERSION"-"$KAFKA_VERSION".jar >/dev/null
touch "$OUT/.complete"
echo "[kafka] ready: $(ls "$OUT/libs" | wc -l) jars in $OUT/libs"
