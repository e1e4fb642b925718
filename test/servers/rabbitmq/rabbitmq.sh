#!/usr/bin/env bash
# A throwaway RabbitMQ 3.10 node with the AMQP 1.0 plugin, everything under one folder, on
# loopback ports picked at run time. Used by the AMQP integration tests (test/integration/amqp),
# usable by hand too:
#
#   rabbitmq.sh start DIR     start a node under DIR (must be empty or missing); prints
#                             AMQP_PORT=, AMQPS_PORT=, NODE=, CA_FILE= lines once it accepts AMQP
#   rabbitmq.sh ctl DIR ARGS  rabbitmqctl against that node (e.g. list_queues, stop_app, start_app)
#   rabbitmq.sh stop DIR      stop the node and its epmd; the folder is left for the logs
#
# With QRT_RABBITMQ_OWNER_PID set at start, the node is also stopped when that process exits.
#
# The node runs in the foreground of its own process group (no systemd, no root-only paths):
# HOME, mnesia, logs, config, the enabled-plugins file and the Erlang cookie all live in DIR, and
# epmd listens on its own port so parallel runs and other engineers' nodes never meet.
set -euo pipefail

cmd=${1:?usage: rabbitmq.sh start|ctl|stop DIR}
dir=${2:?usage: rabbitmq.sh start|ctl|stop DIR}
shift 2
RABBITMQ_BIN=${RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}

# A TCP port nobody listens on right now (a connect that fails means it's free), other than the
# ports given as arguments (the ones this attempt already chose but nobody binds yet). Picked
# below the kernel's ephemeral range (32768 and up by default): a port in that range can be the
# source port of the readiness probe's own connect, which then connects to itself and looks like
# a listener.
free_port() {
  local p taken=" $* "
  for _ in $(seq 1 200); do
    p=$((10000 + RANDOM % 22000))
    [[ $taken == *" $p "* ]] && continue
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
  echo "rabbitmq.sh: no free port found" >&2
  exit 1
}

# True when what listens on the AMQP port is an AMQP broker: it answers a protocol header with a
# protocol header of its own. A bare connect is not enough: epmd or another process could hold
# the port for a moment.
amqp_answers() (
  reply=""
  exec 3<> "/dev/tcp/127.0.0.1/$AMQP_PORT" || exit 1
  printf 'AMQP\x03\x01\x00\x00' >&3
  IFS= read -r -t 5 -N 4 reply <&3 || true
  [[ $reply == AMQP ]]
)

load_env() {
  [[ -f "$dir/env" ]] || { echo "rabbitmq.sh: $dir has no running node (no env file)" >&2; exit 1; }
  # shellcheck disable=SC1091
  source "$dir/env"
}

ctl() { "$RABBITMQ_BIN/rabbitmqctl" -n "$RABBITMQ_NODENAME" "$@"; }

# One attempt to boot the node on fresh ports: 0 when its AMQP port answers as a broker, 1 when
# it exited early (a port taken between choosing and binding it, say), 2 at the deadline.
start_attempt() {
  amqp_port=$(free_port)
  amqps_port=$(free_port "$amqp_port")
  epmd_port=$(free_port "$amqp_port" "$amqps_port")
  dist_port=$(free_port "$amqp_port" "$amqps_port" "$epmd_port")
  node="qrt$$-$1@localhost"
  cat > "$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$amqp_port
listeners.ssl.default = 127.0.0.1:$amqps_port
ssl_options.cacertfile = $tls/ca.pem
ssl_options.certfile = $tls/server.pem
ssl_options.keyfile = $tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
# SASL ANONYMOUS over AMQP 1.0 acts as this user.
amqp1_0.default_user = guest
loopback_users = none
log.console = false
log.file.level = warning
CONF
  echo '[rabbitmq_amqp1_0].' > "$dir/enabled_plugins"

  cat > "$dir/env" <<ENV
export HOME="$dir"
export RABBITMQ_NODENAME="$node"
export RABBITMQ_USE_LONGNAME=false
export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
export RABBITMQ_MNESIA_BASE="$dir/mnesia"
export RABBITMQ_LOG_BASE="$dir/log"
export RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
export ERL_EPMD_PORT=$epmd_port
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_DIST_PORT=$dist_port
AMQP_PORT=$amqp_port
AMQPS_PORT=$amqps_port
ENV
  load_env
  # epmd first, on its own port, and answering before the node asks it to register: a node
  # that finds no epmd yet fails at once with "nodistribution".
  epmd -port "$ERL_EPMD_PORT" -address 127.0.0.1 -daemon
  for _ in $(seq 1 100); do
    epmd -port "$ERL_EPMD_PORT" -names > /dev/null 2>&1 && break
    sleep 0.1
  done
  # Its own session and process group, so a stop can reach every Erlang process it spawned.
  setsid "$RABBITMQ_BIN/rabbitmq-server" > "$dir/server.out" 2>&1 < /dev/null &
  echo $! > "$dir/server.pid"

  # Ready means the AMQP port answers as a broker: the listener opens last in the boot.
  pid=$(cat "$dir/server.pid")
  ready=0
  while ((SECONDS < deadline)); do
    if amqp_answers 2>/dev/null; then ready=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  ((ready)) && return 0
  local outcome=1
  kill -0 "$pid" 2>/dev/null && outcome=2  # still booting at the deadline
  "$0" stop "$dir" || true
  return $outcome
}

case "$cmd" in
start)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)

  # A CA and a server certificate for 127.0.0.1/localhost, so amqps can be tested with
  # verification on (the client trusts only this CA).
  tls="$dir/tls"; mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=qrt test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$tls/san.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/san.ext" -out "$tls/server.pem" 2>/dev/null

  # Erlang boots slowly on a loaded 2-core machine (seen: over 60 s while two builds ran), so
  # the deadline is generous; a node that exits early is noticed at once and tried again.
  deadline=$((SECONDS + ${QRT_RABBITMQ_START_TIMEOUT:-240}))
  outcome=1
  for attempt in 1 2 3; do
    outcome=0
    start_attempt "$attempt" || outcome=$?
    ((outcome == 1)) || break
    echo "rabbitmq.sh: the node exited while starting (attempt $attempt of 3); its last words:" >&2
    tail -3 "$dir/server.out" >&2 || true
  done
  if ((outcome != 0)); then
    if ((outcome == 2)); then
      echo "rabbitmq.sh: node did not start within ${QRT_RABBITMQ_START_TIMEOUT:-240} s; see $dir/server.out and $dir/log" >&2
    else
      echo "rabbitmq.sh: node exited while starting, three times; see $dir/server.out and $dir/log" >&2
    fi
    tail -20 "$dir/server.out" >&2 || true
    exit 1
  fi
  # If QRT_RABBITMQ_OWNER_PID names the process that owns this node (the test binary), stop
  # the node when that process is gone, even if it crashed before its own clean-up.
  if [[ -n "${QRT_RABBITMQ_OWNER_PID:-}" ]]; then
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; "$2" stop "$3"' \
      watchdog "$QRT_RABBITMQ_OWNER_PID" "$0" "$dir" > /dev/null 2>&1 < /dev/null &
  fi
  echo "AMQP_PORT=$AMQP_PORT"
  echo "AMQPS_PORT=$AMQPS_PORT"
  echo "NODE=$RABBITMQ_NODENAME"
  echo "CA_FILE=$dir/tls/ca.pem"
  ;;
ctl)
  load_env
  ctl "$@"
  ;;
stop)
  load_env
  ctl stop > /dev/null 2>&1 || true
  pid=$(cat "$dir/server.pid" 2>/dev/null || true)
  if [[ -n "$pid" ]]; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -- -"$pid" 2>/dev/null || true
  fi
  # epmd refuses to stop while the node is still registered, which it may be for a moment
  # after the node's process is gone.
  for _ in $(seq 1 50); do
    epmd -port "$ERL_EPMD_PORT" -kill > /dev/null 2>&1 || true
    epmd -port "$ERL_EPMD_PORT" -names > /dev/null 2>&1 || break
    sleep 0.1
  done
  ;;
*)
  echo "rabbitmq.sh: unknown command '$cmd'" >&2
  exit 2
  ;;
esac
