#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, broker + controller in one process) for tests and
# local runs, built from the official org.apache.kafka artifacts on Maven Central.
#
#   scripts/apache-kafka.sh start    fetch (once), format storage (once), start, wait
#                                    until it accepts clients, print the bootstrap address
#   scripts/apache-kafka.sh run      the same in the foreground: exec's the broker, which
#                                    logs to the run directory; SIGTERM stops it cleanly
#                                    (what `autopilot broker` runs)
#   scripts/apache-kafka.sh fetch    fetch the jars only (`make install` does this)
#   scripts/apache-kafka.sh stop     clean shutdown (SIGTERM; SIGKILL after 60 s)
#   scripts/apache-kafka.sh status   "running at 127.0.0.1:PORT (pid N)" or "stopped"
#                                    (exit 0 when running, 3 when stopped)
#   scripts/apache-kafka.sh clean    stop and delete the broker's data (the jar cache stays)
#
# Environment:
#   KAFKA_PORT             client port on 127.0.0.1 (default 9092), PLAINTEXT
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default KAFKA_PORT + 10000, or
#                          KAFKA_PORT - 10000 when that would pass 65535)
#   KAFKA_SECURE           1: also listen with TLS and SASL (see "Secure listeners")
#   KAFKA_SSL_PORT         mutual-TLS listener (default KAFKA_PORT + 1; KAFKA_SECURE=1)
#   KAFKA_SASL_SSL_PORT    SASL_SSL listener, SCRAM-SHA-512 (default KAFKA_PORT + 2)
#   KAFKA_SCRAM_USERS      "user:password ..." created at format time
#                          (default "autopilot:autopilot-secret")
#   KAFKA_VERSION          Kafka release (default 3.9.1, see docs/brokers.md)
#   KAFKA_HEAP_OPTS        JVM heap (default -Xms256m -Xmx768m)
#   KAFKA_HOME_DIR         where the data of each port lives (default <repo>/.cache/kafka,
#                          git-ignored): $KAFKA_HOME_DIR/run-<port>/
#   KAFKA_RUN_DIR          the data, pid file and log of this broker (default
#                          $KAFKA_HOME_DIR/run-<port>)
#   KAFKA_LIBS_DIR         the jars (default ${XDG_CACHE_HOME:-~/.cache}/autopilot/
#                          kafka-<version>/libs, outside the clone, shared by clones)
#
# Needs a JDK (17) and Maven (`make install` installs both when missing). The broker
# jar and its runtime dependencies are fetched with `mvn dependency:copy-dependencies`
# into $KAFKA_LIBS_DIR once and reused afterwards. Data, pid file and the broker's log
# are in $KAFKA_RUN_DIR (data survives stop/start; `clean` removes it).
#
# Secure listeners (KAFKA_SECURE=1; docs/security-transport.md): every start generates a
# new CA and broker certificate with openssl (keystore and truststore in PKCS12 with
# keytool) in $KAFKA_HOME_DIR/run-<port>/tls/, plus a client certificate for mutual TLS.
# Two listeners join PLAINTEXT (which stays, on 127.0.0.1 only, for the controller link
# and admin tools): SSL (client certificate required) and SASL_SSL (SCRAM-SHA-512, users
# from KAFKA_SCRAM_USERS, stored when the storage is formatted: change them with
# `clean`). The worker settings for each are written to tls/mtls.env and tls/sasl.env.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=daemon.sh
. "$ROOT/scripts/daemon.sh"
KAFKA_VERSION=${KAFKA_VERSION:-3.9.1}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_SECURE=${KAFKA_SECURE:-0}
KAFKA_SCRAM_USERS=${KAFKA_SCRAM_USERS:-autopilot:autopilot-secret}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
HOME_DIR=${KAFKA_HOME_DIR:-$ROOT/.cache/kafka}
LIBS=${KAFKA_LIBS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/autopilot/kafka-$KAFKA_VERSION/libs}
RUN=${KAFKA_RUN_DIR:-$HOME_DIR/run-$KAFKA_PORT}
PIDFILE=$RUN/kafka.pid
LOG=$RUN/server.log
BOOTSTRAP=127.0.0.1:$KAFKA_PORT
START_TIMEOUT_S=${KAFKA_START_TIMEOUT_S:-120}

say() { echo "apache-kafka: $*" >&2; }

# check_port NAME VALUE: a TCP port number (1..65535), else a clear error.
check_port() {
  if ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt 1 ] || [ "$2" -gt 65535 ]; then
    say "$1=$2 is not a TCP port (1..65535)"
    exit 2
  fi
}
check_port KAFKA_PORT "$KAFKA_PORT"
# The controller listens 10000 above the client port, or 10000 below when that would
# pass 65535 (Kafka dies with a Java stack trace on a port out of range).
if [ -z "${KAFKA_CONTROLLER_PORT:-}" ]; then
  if [ $((KAFKA_PORT + 10000)) -le 65535 ]; then
    KAFKA_CONTROLLER_PORT=$((KAFKA_PORT + 10000))
  else
    KAFKA_CONTROLLER_PORT=$((KAFKA_PORT - 10000))
  fi
fi
check_port KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
KAFKA_SSL_PORT=${KAFKA_SSL_PORT:-$((KAFKA_PORT + 1))}
KAFKA_SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:-$((KAFKA_PORT + 2))}
if [ "$KAFKA_SECURE" = 1 ]; then
  check_port KAFKA_SSL_PORT "$KAFKA_SSL_PORT"
  check_port KAFKA_SASL_SSL_PORT "$KAFKA_SASL_SSL_PORT"
fi

fetch() {
  if [ -f "$LIBS/.complete" ]; then return; fi
  command -v mvn >/dev/null || { say "Maven (mvn) is needed to fetch Kafka $KAFKA_VERSION"; exit 1; }
  say "fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies with Maven …"
  local work
  work=$(dirname "$LIBS")
  mkdir -p "$work"
  cat > "$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.autopilot</groupId>
  <artifactId>apache-kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- the broker (kafka.Kafka, kafka.tools.StorageTool) and its runtime deps -->
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- the logging binding the Kafka 3.x distribution ships (slf4j -> reload4j) -->
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$LIBS"
  mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIBS" >&2
  touch "$LIBS/.complete"
  say "$(ls "$LIBS" | wc -l) jars in $LIBS"
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null
}

TLS=$RUN/tls

# gen_tls: a new CA, a broker certificate (127.0.0.1, localhost) in a PKCS12 keystore,
# a PKCS12 truststore holding the CA, a client certificate for mutual TLS, and the
# worker settings for each listener (tls/mtls.env, tls/sasl.env).
gen_tls() {
  command -v openssl >/dev/null || { say "KAFKA_SECURE=1 needs openssl"; exit 1; }
  command -v keytool >/dev/null || { say "KAFKA_SECURE=1 needs keytool (a JDK)"; exit 1; }
  rm -rf "$TLS"
  mkdir -p "$TLS"
  chmod 700 "$TLS"
  (
    cd "$TLS"
    openssl rand -hex 24 > store.password
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=autopilot test CA $(date +%s)" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.pem 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > broker.ext
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout broker.key -out broker.csr 2>/dev/null
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 \
      -extfile broker.ext -out broker.pem 2>/dev/null
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
      -passout file:store.password -out broker.p12
    keytool -importcert -noprompt -alias ca -file ca.pem -storetype PKCS12 \
      -keystore truststore.p12 -storepass:file store.password >/dev/null 2>&1
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    openssl req -newkey rsa:2048 -nodes -subj "/CN=autopilot-client" -keyout client.key \
      -out client.csr 2>/dev/null
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 \
      -extfile client.ext -out client.pem 2>/dev/null
    rm -f ./*.csr ./*.ext ./*.srl
    local first=${KAFKA_SCRAM_USERS%% *}
    printf '%s' "${first#*:}" > sasl.password
    chmod 600 ./*.key store.password sasl.password
    cat > sasl.env <<ENV
AUTOPILOT_BROKER=kafka://127.0.0.1:$KAFKA_SASL_SSL_PORT
AUTOPILOT_KAFKA_SECURITY_PROTOCOL=SASL_SSL
AUTOPILOT_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
AUTOPILOT_KAFKA_SASL_USERNAME=${first%%:*}
AUTOPILOT_KAFKA_SASL_PASSWORD_FILE=$TLS/sasl.password
AUTOPILOT_KAFKA_SSL_CAFILE=$TLS/ca.pem
ENV
    cat > mtls.env <<ENV
AUTOPILOT_BROKER=kafka://127.0.0.1:$KAFKA_SSL_PORT
AUTOPILOT_KAFKA_SECURITY_PROTOCOL=SSL
AUTOPILOT_KAFKA_SSL_CAFILE=$TLS/ca.pem
AUTOPILOT_KAFKA_SSL_CERTFILE=$TLS/client.pem
AUTOPILOT_KAFKA_SSL_KEYFILE=$TLS/client.key
ENV
  )
}

# scram_args: StorageTool --add-scram arguments for KAFKA_SCRAM_USERS, one a line.
scram_args() {
  local pair
  for pair in $KAFKA_SCRAM_USERS; do
    case $pair in
      ?*:?*) ;;
      *) say "KAFKA_SCRAM_USERS: '${pair%%:*}' is not user:password"; exit 2 ;;
    esac
    printf '%s\n' "--add-scram" "SCRAM-SHA-512=[name=${pair%%:*},password=${pair#*:}]"
  done
}

write_config() {
  mkdir -p "$RUN/data"
  local listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT"
  local advertised="PLAINTEXT://127.0.0.1:$KAFKA_PORT"
  local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [ "$KAFKA_SECURE" = 1 ]; then
    listeners="$listeners,SSL://127.0.0.1:$KAFKA_SSL_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"
    advertised="$advertised,SSL://127.0.0.1:$KAFKA_SSL_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"
    protocols="$protocols,SSL:SSL,SASL_SSL:SASL_SSL"
  fi
  cat > "$RUN/server.properties" <<EOF
# generated by scripts/apache-kafka.sh: single-node KRaft (broker + controller)
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$RUN/data
num.partitions=8
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=24
log.segment.bytes=16777216
EOF
  if [ "$KAFKA_SECURE" = 1 ]; then
    local pass
    pass=$(cat "$TLS/store.password")
    cat >> "$RUN/server.properties" <<EOF
# KAFKA_SECURE=1: TLS (keys in tls/, generated for this run) and SASL/SCRAM-SHA-512
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$pass
ssl.key.password=$pass
ssl.truststore.type=PKCS12
ssl.truststore.location=$TLS/truststore.p12
ssl.truststore.password=$pass
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
    chmod 600 "$RUN/server.properties"
  fi
  cat > "$RUN/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$LOG
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
EOF
}

java_run() {
  # shellcheck disable=SC2086
  java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$RUN/log4j.properties" \
    -cp "$LIBS/*" "$@"
}

# prepare: everything before the broker process: the jars, certificates, the
# configuration, the storage format (once per run directory).
prepare() {
  command -v java >/dev/null || { say "a JDK (java) is needed: run \`make install\`"; exit 1; }
  if port_open; then
    say "port $KAFKA_PORT is already taken by another process; set KAFKA_PORT"
    exit 1
  fi
  fetch
  if [ "$KAFKA_SECURE" = 1 ]; then
    gen_tls
  fi
  write_config
  if [ ! -f "$RUN/data/meta.properties" ]; then
    local cluster_id
    local -a scram=()
    cluster_id=$(java_run kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    if [ "$KAFKA_SECURE" = 1 ]; then
      mapfile -t scram < <(scram_args)
      [ ${#scram[@]} -gt 0 ] || { say "KAFKA_SCRAM_USERS holds no user:password"; exit 2; }
    fi
    java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$RUN/server.properties" \
      "${scram[@]}" >&2
    printf '%s' "$KAFKA_SCRAM_USERS" > "$RUN/scram-users"
    [ "$KAFKA_SECURE" = 1 ] || : > "$RUN/scram-users"
  elif [ "$KAFKA_SECURE" = 1 ] && [ "$(cat "$RUN/scram-users" 2>/dev/null)" != "$KAFKA_SCRAM_USERS" ]; then
    say "SCRAM users are stored when the storage is formatted, and this storage holds"
    say "other users (or none): run \`KAFKA_PORT=$KAFKA_PORT $0 clean\` first"
    exit 2
  fi
  : > "$LOG"
}

start() {
  if pid_alive; then
    say "already running (pid $(cat "$PIDFILE"))"
    echo "$BOOTSTRAP"
    return
  fi
  prepare
  nohup bash -c 'exec "$@"' _ java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$RUN/log4j.properties" \
    -cp "$LIBS/*" kafka.Kafka "$RUN/server.properties" \
    > "$RUN/stdout.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until grep -q "Kafka Server started" "$LOG" 2>/dev/null && port_open; do
    if ! pid_alive; then
      say "the broker exited during start-up; last lines of $LOG:"
      tail -n 30 "$LOG" "$RUN/stdout.log" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      say "not ready after $START_TIMEOUT_S s; see $LOG"
      exit 1
    fi
    sleep 0.5
  done
  say "Apache Kafka $KAFKA_VERSION (KRaft) is up (pid $(cat "$PIDFILE"), log $LOG)"
  if [ "$KAFKA_SECURE" = 1 ]; then
    say "mutual TLS on 127.0.0.1:$KAFKA_SSL_PORT (worker settings: $TLS/mtls.env)"
    say "SASL_SSL, SCRAM-SHA-512 on 127.0.0.1:$KAFKA_SASL_SSL_PORT (settings: $TLS/sasl.env)"
  fi
  echo "$BOOTSTRAP"
}

# run: prepare, then replace this shell by the broker (same pid, so a signal sent to
# this process reaches Kafka, which shuts down cleanly on SIGTERM).
run() {
  if pid_alive; then
    say "a broker already runs on this run directory (pid $(cat "$PIDFILE"))"
    exit 1
  fi
  prepare
  echo $$ > "$PIDFILE"
  say "starting Apache Kafka $KAFKA_VERSION (KRaft) on $BOOTSTRAP, data and log in $RUN"
  # shellcheck disable=SC2086
  exec java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$RUN/log4j.properties" \
    -cp "$LIBS/*" kafka.Kafka "$RUN/server.properties"
}

stop() {
  stop_daemon 60
}

status() {
  if pid_alive; then
    echo "running at $BOOTSTRAP (pid $(cat "$PIDFILE"))"
  else
    echo "stopped"
    exit 3
  fi
}

case "${1:-}" in
  start) start ;;
  run) run ;;
  stop) stop ;;
  status) status ;;
  clean) stop; rm -rf "$RUN"; say "removed $RUN" ;;
  fetch) fetch ;;
  *) echo "usage: $0 start|run|stop|status|clean|fetch" >&2; exit 2 ;;
esac
