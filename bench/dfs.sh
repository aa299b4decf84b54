#!/usr/bin/env bash
# DFS throughput and master metadata rate, each against a baseline measured
# in the same run on the same disk:
#   put/get of a file (default 1 GiB) at RF 1 and RF 3 on `basin local up`,
#   against dd of the same file (write with fsync; copy with fsync);
#   create+close of empty files with 1 and 3 masters, against the disk's
#   rate of small synced writes (each Raft commit needs one).
# Usage: bench/dfs.sh [SIZE_MIB]   (env BENCH_DIR to choose the disk; default /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/basin-target}"
cargo build --release --bin basin >&2
BASIN="$CARGO_TARGET_DIR/release/basin"
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/basin-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

secs() { python3 -c 'import sys,time; print(time.time())'; }
rate() { python3 -c "print(f'{$1/($3-$2):.1f}')"; }    # rate MIB START END
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }

echo "== generating ${SIZE_MIB} MiB of random data" >&2
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$WORK/src.bin"

t0=$(secs); dd if="$WORK/src.bin" of="$WORK/raw.bin" bs=4M conv=fsync status=none; t1=$(secs)
RAW_WRITE=$(rate "$SIZE_MIB" "$t0" "$t1")
# Copy with dd (user-space read + write + fsync: what get does minus the network).
sync; t0=$(secs); dd if="$WORK/raw.bin" of="$WORK/raw-copy.bin" bs=4M conv=fsync status=none; t1=$(secs)
RAW_CP=$(rate "$SIZE_MIB" "$t0" "$t1")
rm -f "$WORK/raw.bin" "$WORK/raw-copy.bin"

start_cluster() { # NAME MASTERS
  "$BASIN" local up --data-dir "$WORK/$1" --masters "$2" --workers 3 --task-workers 0 > "$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 600); do [ -f "$WORK/$1/cluster.env" ] && break; sleep 0.1; done
  [ -f "$WORK/$1/cluster.env" ] || { echo "cluster $1 did not start" >&2; cat "$WORK/$1.log" >&2; exit 1; }
  set -a; . "$WORK/$1/cluster.env"; set +a
}

start_cluster dfs 1
results=()
for rf in 1 3; do
  t0=$(secs); "$BASIN" dfs put --replication "$rf" "$WORK/src.bin" "/rf$rf.bin"; t1=$(secs)
  PUT=$(rate "$SIZE_MIB" "$t0" "$t1")
  t0=$(secs); "$BASIN" dfs get "/rf$rf.bin" "$WORK/get$rf.bin"; sync; t1=$(secs)
  GET=$(rate "$SIZE_MIB" "$t0" "$t1")
  cmp -s "$WORK/src.bin" "$WORK/get$rf.bin" || { echo "RF $rf: bytes differ" >&2; exit 1; }
  rm -f "$WORK/get$rf.bin"
  "$BASIN" dfs rm "/rf$rf.bin"
  results+=("RF$rf $PUT $GET")
done

# Small synced writes per second: the ceiling for durable Raft commits.
t0=$(secs); dd if=/dev/zero of="$WORK/sync.bin" bs=512 count=500 oflag=dsync status=none; t1=$(secs)
FSYNCS=$(python3 -c "print(f'{500/($t1-$t0):.0f}')")
META1=$("$BASIN" --json bench create-files --count 2000 --concurrency 16 | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["files_per_sec"])')
start_cluster meta3 3
META3=$("$BASIN" --json bench create-files --count 2000 --concurrency 16 | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["files_per_sec"])')

echo
echo "file: ${SIZE_MIB} MiB   disk: $(df -h "$WORK" | awk 'NR==2{print $1}')   cores: $(nproc)"
printf "%-28s %10s\n" "baseline" "MB/s"
printf "%-28s %10s\n" "dd write (fsync)" "$RAW_WRITE"
printf "%-28s %10s\n" "dd copy (read+write, fsync)" "$RAW_CP"
printf "%-8s %10s %10s %16s %16s\n" "" "put MB/s" "get MB/s" "put/dd" "get/ddcopy"
for r in "${results[@]}"; do
  set -- $r
  printf "%-8s %10s %10s %16s %16s\n" "$1" "$2" "$3" "$(ratio "$2" "$RAW_WRITE")" "$(ratio "$3" "$RAW_CP")"
done
echo "(aim: RF1 put and get >= 0.80 of raw; RF3 put >= 0.80 of raw/3, i.e. put/dd >= 0.27)"
echo
printf "%-34s %10s %10s\n" "metadata (create+close)" "files/s" "vs fsync/s"
printf "%-34s %10s %10s\n" "disk small synced writes" "$FSYNCS" "1.00"
printf "%-34s %10s %10s\n" "1 master" "$META1" "$(ratio "$META1" "$FSYNCS")"
printf "%-34s %10s %10s\n" "3 masters" "$META3" "$(ratio "$META3" "$FSYNCS")"
