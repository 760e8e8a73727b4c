# shellcheck shell=bash disable=SC2034 # variables are used by the scripts that source this
# Shared by deploy/local/{up,down,status,test}. Sourced, never run.
#
# Layout of the state folder ($VIGIL_LOCAL_DIR, default <repo>/.local):
#   .vigil-local                 marker: `down --purge` deletes only a folder that has it
#   .lock                        flock(1) lock held while up/down run
#   kafka/libs/                  the broker and tool jars (mvn dependency:copy-dependencies)
#   kafka/config/                server.properties, log4j2 configs (rendered on every start)
#   kafka/data/                  KRaft metadata log and topic data (formatted once)
#   kafka/logs/server.log        broker log; kafka/logs/stdout.log: JVM stdout/stderr
#   kafka/kafka.pid
#   clickhouse/config.xml, users.xml
#   clickhouse/data/ tmp/ user_files/ format_schemas/
#   clickhouse/log/clickhouse-server.log, clickhouse-server.err.log, stdout.log
#   clickhouse/clickhouse.pid

VIGIL_LOCAL_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VIGIL_REPO_ROOT="$(cd "$VIGIL_LOCAL_SCRIPTS/../.." && pwd)"

VIGIL_LOCAL_DIR="${VIGIL_LOCAL_DIR:-$VIGIL_REPO_ROOT/.local}"
case "$VIGIL_LOCAL_DIR" in
  /*) ;;
  *) VIGIL_LOCAL_DIR="$PWD/$VIGIL_LOCAL_DIR" ;;
esac
VIGIL_LOCAL_DIR="${VIGIL_LOCAL_DIR%/}"
export VIGIL_LOCAL_DIR

LOCAL_HOST=127.0.0.1
KAFKA_PORT="${VIGIL_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${VIGIL_KAFKA_CONTROLLER_PORT:-9093}"
CH_HTTP_PORT="${VIGIL_CLICKHOUSE_HTTP_PORT:-8123}"
CH_TCP_PORT="${VIGIL_CLICKHOUSE_TCP_PORT:-9000}"
START_TIMEOUT="${VIGIL_LOCAL_START_TIMEOUT:-120}"
STOP_TIMEOUT="${VIGIL_LOCAL_STOP_TIMEOUT:-30}"

KAFKA_DIR="$VIGIL_LOCAL_DIR/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_PID="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$KAFKA_DIR/logs/server.log"
KAFKA_STDOUT="$KAFKA_DIR/logs/stdout.log"
CH_DIR="$VIGIL_LOCAL_DIR/clickhouse"
CH_PID="$CH_DIR/clickhouse.pid"
CH_LOG="$CH_DIR/log/clickhouse-server.log"
CH_ERRLOG="$CH_DIR/log/clickhouse-server.err.log"
CH_STDOUT="$CH_DIR/log/stdout.log"

log() { printf '[vigil-local] %s\n' "$*"; }
warn() { printf '[vigil-local] WARNING: %s\n' "$*" >&2; }
die() {
  printf '[vigil-local] ERROR: %s\n' "$*" >&2
  exit 1
}

# Seconds since the epoch with decimals, and a duration since a start taken with it.
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# Serialise up/down runs on one state folder (fd 9 stays open until the script exits).
take_lock() {
  mkdir -p "$VIGIL_LOCAL_DIR"
  exec 9>"$VIGIL_LOCAL_DIR/.lock"
  if ! flock -n 9; then
    log "another deploy/local script holds $VIGIL_LOCAL_DIR/.lock; waiting (up to ${START_TIMEOUT}s)"
    flock -w "$START_TIMEOUT" 9 || die "timed out waiting for $VIGIL_LOCAL_DIR/.lock"
  fi
}

# pid_of <pidfile> <marker>: prints the pid if the file names a live process whose command line
# contains <marker> (so a recycled pid is not mistaken for ours); otherwise prints nothing.
pid_of() {
  local file="$1" marker="$2" pid
  [[ -f "$file" ]] || return 0
  pid="$(tr -dc '0-9' <"$file")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 0
  if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker"; then
    echo "$pid"
  fi
}

# Markers that identify our processes: each one's command line names its config in this folder.
kafka_marker() { echo "$KAFKA_DIR/config/server.properties"; }
ch_marker() { echo "$CH_DIR/config.xml"; }
kafka_pid() { pid_of "$KAFKA_PID" "$(kafka_marker)"; }
ch_pid() { pid_of "$CH_PID" "$(ch_marker)"; }

# port_open <port>: true if something accepts TCP connections on 127.0.0.1:<port>.
port_open() {
  (exec 3<>"/dev/tcp/$LOCAL_HOST/$1") 2>/dev/null
}

# port_holder <port>: describes the listener(s) on <port> ("name (pid N): cmdline"), or nothing.
port_holder() {
  local port="$1" line pids pid name cmd out=""
  command -v ss >/dev/null 2>&1 || { port_open "$port" && echo "an unknown process (ss not installed)"; return 0; }
  line="$(ss -Hltnp "sport = :$port" 2>/dev/null || true)"
  [[ -n "$line" ]] || return 0
  pids="$(grep -o 'pid=[0-9]*' <<<"$line" | cut -d= -f2 | sort -u)"
  if [[ -z "$pids" ]]; then
    echo "a process ss cannot name (run as root to see it): $(head -n1 <<<"$line")"
    return 0
  fi
  for pid in $pids; do
    name="$(cat "/proc/$pid/comm" 2>/dev/null || echo '?')"
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-200)"
    out+="${out:+; }$name (pid $pid): $cmd"
  done
  echo "$out"
}

# port_pids <port>: pids listening on <port>, one a line.
port_pids() {
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true
}

# require_port_free <port> <what>: dies naming the holder if <port> is taken.
require_port_free() {
  local port="$1" what="$2" holder
  holder="$(port_holder "$port")"
  if [[ -n "$holder" ]]; then
    die "port $port ($what) is already in use by $holder
    This is not a process started by deploy/local (no matching pid file in $VIGIL_LOCAL_DIR).
    Stop it, or move vigil's local stack to other ports (see deploy/local/README.md, env VIGIL_*_PORT)."
  fi
}

# tail_log <file> [lines]: prints the end of a log, indented, for error messages.
tail_log() {
  local file="$1" n="${2:-40}"
  if [[ -s "$file" ]]; then
    printf -- '---- last %s lines of %s ----\n' "$n" "$file" >&2
    tail -n "$n" "$file" | sed 's/^/    /' >&2
    printf -- '----\n' >&2
  fi
}

# stop_pid <pid> <name>: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL the process group.
stop_pid() {
  local pid="$1" name="$2" waited=0 how=stopped
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= STOP_TIMEOUT * 5)); then
      warn "$name (pid $pid) still running ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      how=killed
      local _
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      break
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
  log "$name $how (pid $pid, after $(awk -v w="$waited" 'BEGIN { printf "%.1f", w / 5 }')s)"
}
