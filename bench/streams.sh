#!/usr/bin/env bash
# Streams benchmark: acknowledged PutRecords throughput (100 B and 1 KiB
# records, replication 1 and 3, per-shard limits switched off) and put→get
# latency p50/p99 at a fixed rate, on a local cluster (1 master + 3 core
# workers on loopback), against NATS JetStream (Debian's nats-server, file
# storage, same payloads, acknowledged publishes) run in the same script on the
# same disk: R1 on one server, R3 on a 3-node JetStream cluster on loopback.
# JetStream's load generator is bench/nats-load (async-nats; built here with
# its own target dir). Prints records/s, MB/s and Basin/JetStream ratios
# (above 1 means Basin is faster).
#
# Usage: bench/streams.sh [RECORDS_100B] [RECORDS_1KIB] [LATENCY_RECORDS]
#        (defaults 200000, 50000, 2000)
# Env:   BENCH_DIR (default /var/tmp), BASIN_BIN (use this binary, skip the
#        release build), NATS_SERVER (default nats-server; a 2.10+ server gets
#        sync_interval: always), LAT_RATE (records/s, default 200), SHARDS
#        (default 4; JetStream gets as many streams), CONCURRENCY (default 8),
#        BENCH_SKIP_NATS=1 to run Basin alone, BENCH_BY_HAND=1 to start the
#        master and workers as separate processes instead of `basin local up`.
set -euo pipefail
cd "$(dirname "$0")/.."
REC_SMALL=${1:-200000}
REC_LARGE=${2:-50000}
LAT_RECORDS=${3:-2000}
LAT_RATE=${LAT_RATE:-200}
SHARDS=${SHARDS:-4}
CONC=${CONCURRENCY:-8}
BATCH=500
if [ -n "${BASIN_BIN:-}" ]; then
  BASIN="$BASIN_BIN"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/basin-target}"
  cargo build --release --bin basin >&2
  BASIN="$CARGO_TARGET_DIR/release/basin"
fi
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/basin-streams.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
# get FILE KEY [FORMAT]: one field of a load generator's JSON output.
get() { python3 -c "import json; print(format(json.load(open('$1'))['$2'], '${3:-.0f}'))"; }
# ports N: N free loopback ports.
ports() {
  python3 -c "
import socket
ss = [socket.socket() for _ in range($1)]
for s in ss: s.bind(('127.0.0.1', 0))
print(' '.join(str(s.getsockname()[1]) for s in ss))"
}
# stop PID...: ends these (our own) processes and drops them from PIDS.
stop() {
  local p q keep=()
  for p in "$@"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for q in "${PIDS[@]}"; do case " $* " in *" $q "*) ;; *) keep+=("$q") ;; esac; done
  PIDS=("${keep[@]}")
}

# ---------------------------------------------------------------- JetStream setup
NATS_SERVER=${NATS_SERVER:-nats-server}
NATS_LOAD=""
NATS_NOTE=""
if [ "${BENCH_SKIP_NATS:-0}" != 1 ]; then
  if ! command -v "$NATS_SERVER" >/dev/null; then
    echo "== installing Debian's nats-server" >&2
    (apt-get install -y -qq nats-server || { apt-get update -qq && apt-get install -y -qq nats-server; }) >&2 || true
  fi
  if ! command -v "$NATS_SERVER" >/dev/null; then
    NATS_NOTE="JetStream skipped: no nats-server (apt-get install nats-server failed; set NATS_SERVER=/path)"
  elif ! (cd bench/nats-load && CARGO_TARGET_DIR="${NATS_LOAD_TARGET:-/var/tmp/nats-load-target}" \
          cargo build --release --quiet) >&2; then
    NATS_NOTE="JetStream skipped: bench/nats-load did not build"
  else
    NATS_LOAD="${NATS_LOAD_TARGET:-/var/tmp/nats-load-target}/release/nats-load"
  fi
fi
NATS_VERSION=""
NATS_SYNC=""
if [ -n "$NATS_LOAD" ]; then
  NATS_VERSION=$("$NATS_SERVER" --version 2>&1 | awk '{print $NF}')
  # sync_interval (2.10+): fsync before every ack, as Basin does per append batch.
  printf 'jetstream { store_dir: "%s", sync_interval: always }\n' "$WORK/probe" > "$WORK/probe.conf"
  if "$NATS_SERVER" -c "$WORK/probe.conf" -t >/dev/null 2>&1; then NATS_SYNC="sync_interval: always"; fi
fi

# nats_conf NAME CLIENT_PORT [CLUSTER_PORT ROUTE_PORTS...]: writes $WORK/NAME.conf.
nats_conf() {
  local name=$1 port=$2; shift 2
  {
    echo "server_name: $name"
    echo "listen: 127.0.0.1:$port"
    echo "jetstream { store_dir: \"$WORK/nats-$name\"${NATS_SYNC:+, $NATS_SYNC} }"
    if [ $# -gt 0 ]; then
      local cport=$1; shift
      local routes=""
      for r in "$@"; do routes="$routes${routes:+, }nats-route://127.0.0.1:$r"; done
      echo "cluster { name: bench, listen: 127.0.0.1:$cport, routes: [$routes] }"
    fi
  } > "$WORK/$name.conf"
}
# nats_start NAME: starts a server from $WORK/NAME.conf; its pid is in NPIDS.
NPIDS=()
nats_start() {
  "$NATS_SERVER" -c "$WORK/$1.conf" > "$WORK/nats-$1.log" 2>&1 &
  PIDS+=($!); NPIDS+=($!)
}
nats_wait() { # PORT...
  for p in "$@"; do
    for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
  done
}

# ---------------------------------------------------------------- Basin
# `basin local up` once it passes the stream flags; until then the same
# cluster by hand: 1 master + 3 core workers, each with --stream-no-limits.
export BASIN_TOKEN="bench-$RANDOM$RANDOM"
if [ "${BENCH_BY_HAND:-0}" != 1 ] && "$BASIN" local up --help | grep -q -- '--stream-no-limits'; then
  CLUSTER_MODE="basin local up --stream-no-limits (1 master, 3 core workers, one process)"
  "$BASIN" local up --data-dir "$WORK/basin" --workers 3 --task-workers 0 --stream-no-limits \
    > "$WORK/basin.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 600); do [ -f "$WORK/basin/cluster.env" ] && break; sleep 0.1; done
  [ -f "$WORK/basin/cluster.env" ] || { echo "cluster did not start" >&2; cat "$WORK/basin.log" >&2; exit 1; }
  set -a; . "$WORK/basin/cluster.env"; set +a
  BPIDS=("${PIDS[@]}")
else
  CLUSTER_MODE="by hand: basin master + 3 basin worker --role core --stream-no-limits, one process each"
  read -r PM PH PW1 PW2 PW3 < <(ports 5)
  export BASIN_MASTER="127.0.0.1:$PM"
  "$BASIN" master --id 1 --listen "$BASIN_MASTER" --data-dir "$WORK/basin/master-1" \
    --http-listen "127.0.0.1:$PH" > "$WORK/master.log" 2>&1 &
  PIDS+=($!)
  i=0
  for pw in "$PW1" "$PW2" "$PW3"; do
    i=$((i + 1))
    "$BASIN" worker --role core --listen "127.0.0.1:$pw" --data-dir "$WORK/basin/core-$i" \
      --master "$BASIN_MASTER" --heartbeat-interval 300ms --stream-no-limits > "$WORK/core-$i.log" 2>&1 &
    PIDS+=($!)
  done
  BPIDS=("${PIDS[@]}")
fi
live=0
for _ in $(seq 1 300); do
  live=$("$BASIN" --json cluster status 2>/dev/null | python3 -c '
import json, sys
try: print(sum(1 for n in json.load(sys.stdin)["nodes"] if n["role"] == "core" and n["state"] == "live"))
except Exception: print(0)') || true
  [ "${live:-0}" -ge 3 ] && break
  sleep 0.2
done
[ "${live:-0}" -ge 3 ] || { echo "only ${live:-0} of 3 core workers came up" >&2; tail -n 20 "$WORK"/*.log >&2; exit 1; }

cases=("1 100 $REC_SMALL" "1 1024 $REC_LARGE" "3 100 $REC_SMALL" "3 1024 $REC_LARGE")
for c in "${cases[@]}"; do
  set -- $c
  echo "== basin: R$1, $2 B records x $3" >&2
  "$BASIN" stream create "tp-r$1-s$2" --shards "$SHARDS" --replication "$1" > /dev/null
  "$BASIN" bench stream-put --stream "tp-r$1-s$2" --records "$3" --size "$2" --batch "$BATCH" \
    --concurrency "$CONC" > "$WORK/basin-r$1-s$2.json"
done
for rf in 1 3; do
  echo "== basin: latency R$rf, $LAT_RECORDS records at $LAT_RATE/s" >&2
  "$BASIN" stream create "lat-r$rf" --shards "$SHARDS" --replication "$rf" > /dev/null
  "$BASIN" bench stream-latency --stream "lat-r$rf" --rate "$LAT_RATE" --records "$LAT_RECORDS" \
    --size 100 > "$WORK/basin-lat-r$rf.json"
done
stop "${BPIDS[@]}"

# ---------------------------------------------------------------- JetStream
if [ -n "$NATS_LOAD" ]; then
  for rf in 1 3; do
    NPIDS=()
    if [ "$rf" = 1 ]; then
      read -r P1 < <(ports 1)
      nats_conf "r1" "$P1"
      nats_start "r1"
      nats_wait "$P1"
      URLS="nats://127.0.0.1:$P1"
    else
      read -r P1 P2 P3 C1 C2 C3 < <(ports 6)
      URLS=""
      for n in 1 2 3; do
        eval "p=\$P$n; c=\$C$n"
        nats_conf "r3-n$n" "$p" "$c" "$C1" "$C2" "$C3"
        nats_start "r3-n$n"
        URLS="$URLS${URLS:+,}nats://127.0.0.1:$p"
      done
      nats_wait "$P1" "$P2" "$P3"
    fi
    for c in "${cases[@]}"; do
      set -- $c
      [ "$1" = "$rf" ] || continue
      echo "== jetstream: R$1, $2 B records x $3" >&2
      "$NATS_LOAD" put --server "$URLS" --stream "TP$2_" --streams "$SHARDS" --replicas "$rf" \
        --records "$3" --size "$2" --batch "$BATCH" --concurrency "$CONC" > "$WORK/js-r$1-s$2.json"
    done
    echo "== jetstream: latency R$rf, $LAT_RECORDS records at $LAT_RATE/s" >&2
    "$NATS_LOAD" latency --server "$URLS" --stream "LAT_" --streams "$SHARDS" --replicas "$rf" \
      --rate "$LAT_RATE" --records "$LAT_RECORDS" --size 100 > "$WORK/js-lat-r$rf.json"
    stop "${NPIDS[@]}"
  done
fi

# ---------------------------------------------------------------- report
echo
echo "machine: $(nproc) cores   disk: $(df -h "$WORK" | awk 'NR==2{print $1}')   basin: $BASIN"
echo "basin cluster: $CLUSTER_MODE; $SHARDS shards, batch $BATCH, $CONC calls in flight"
if [ -n "$NATS_LOAD" ]; then
  echo "jetstream: nats-server $NATS_VERSION, file storage, $SHARDS streams (one per Basin shard), $CONC connections x $BATCH acked publishes in flight; R1 one server, R3 a 3-node cluster"
else
  echo "${NATS_NOTE:-JetStream skipped (BENCH_SKIP_NATS=1)}"
fi
printf "%-12s %14s %9s %16s %9s %10s\n" "throughput" "Basin rec/s" "MB/s" "JetStream rec/s" "MB/s" "Basin/JS"
for c in "${cases[@]}"; do
  set -- $c
  label="R$1 $([ "$2" = 1024 ] && echo "1 KiB" || echo "$2 B")"
  b="$WORK/basin-r$1-s$2.json"; j="$WORK/js-r$1-s$2.json"
  brec=$(get "$b" records_per_sec); bmb=$(get "$b" mb_per_sec .1f)
  if [ -f "$j" ]; then
    jrec=$(get "$j" records_per_sec); jmb=$(get "$j" mb_per_sec .1f); r=$(ratio "$brec" "$jrec")
  else
    jrec=n/a; jmb=n/a; r=n/a
  fi
  printf "%-12s %14s %9s %16s %9s %10s\n" "$label" "$brec" "$bmb" "$jrec" "$jmb" "$r"
  for f in "$b" "$j"; do
    if [ -f "$f" ] && [ "$(get "$f" failed)" != 0 ]; then
      echo "   ! $(basename "$f" .json): $(get "$f" failed) records failed"
    fi
  done
done
echo
printf "%-12s %12s %12s %12s %12s\n" "put→get ms" "Basin p50" "Basin p99" "JS p50" "JS p99"
for rf in 1 3; do
  b="$WORK/basin-lat-r$rf.json"; j="$WORK/js-lat-r$rf.json"
  if [ -f "$j" ]; then jp50=$(get "$j" p50_ms .2f); jp99=$(get "$j" p99_ms .2f); else jp50=n/a; jp99=n/a; fi
  printf "%-12s %12s %12s %12s %12s\n" "R$rf @${LAT_RATE}/s" "$(get "$b" p50_ms .2f)" "$(get "$b" p99_ms .2f)" "$jp50" "$jp99"
  for f in "$b" "$j"; do
    if [ -f "$f" ] && [ "$(get "$f" records)" != "$LAT_RECORDS" ]; then
      echo "   ! $(basename "$f" .json): read back $(get "$f" records) of $LAT_RECORDS"
    fi
  done
done
echo "(aim: Basin/JS >= 1.00 in every throughput row; Basin p99 put→get <= 20 ms)"
if [ -n "$NATS_LOAD" ]; then
  if [ -z "$NATS_SYNC" ]; then
    echo "note: nats-server $NATS_VERSION has no sync_interval (2.10+): JetStream acknowledges before fsync (it syncs on a"
    echo "      2-minute timer) while Basin fsyncs every append batch before acknowledging, so the comparison favours"
    echo "      JetStream. NATS_SERVER=/path/to/nats-server-2.10+ runs it with sync_interval: always."
  else
    echo "note: JetStream ran with sync_interval: always (fsync before every ack), as Basin fsyncs each append batch."
  fi
  echo "note: JetStream R3 acknowledges once a quorum (2 of 3) has the message; Basin once every in-sync replica has it."
fi
