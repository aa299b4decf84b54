#!/usr/bin/env bash
# MapReduce benchmark: WordCount over Zipf-distributed text and TeraSort on
# `basin local up` (3 core + 1 task worker), against baselines run in the same
# script on the same machine: GNU coreutils (tr | sort | uniq -c; LC_ALL=C
# sort of the keys) and, where the packages install, DuckDB and Spark local
# mode. Prints seconds, peak memory and ratios (baseline time / Basin time:
# above 1 means Basin is faster).
#
# Usage: bench/mapreduce.sh [TEXT_MB] [TERA_RECORDS]   (defaults 512 and 10000000 = 1 GB)
#        BENCH_DIR=/path (default /var/tmp), BENCH_SKIP_PIP=1 to skip duckdb/pyspark.
set -euo pipefail
cd "$(dirname "$0")/.."
TEXT_MB=${1:-512}
RECORDS=${2:-10000000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/basin-target}"
cargo build --release --bin basin >&2
BASIN="$CARGO_TARGET_DIR/release/basin"
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/basin-mrbench.XXXXXX")
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2-$1:.1f}')"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
# Peak RSS (MB) of a command and its children: prints "SECONDS PEAK_MB".
measure() { /usr/bin/time -f '%e %M' -o "$WORK/time.out" "$@" >/dev/null; awk '{printf "%.1f %.0f\n", $1, $2/1024}' "$WORK/time.out"; }

echo "== generating ${TEXT_MB} MB of Zipf text" >&2
python3 - "$WORK/text.txt" "$TEXT_MB" <<'PY'
import random, sys
path, mb = sys.argv[1], int(sys.argv[2])
random.seed(7)
vocab = ["w%d" % i for i in range(1, 200001)]
cum, total = [], 0.0
for r in range(1, len(vocab) + 1):
    total += 1.0 / r
    cum.append(total)
target = mb * 1024 * 1024
with open(path, "w") as f:
    written = 0
    while written < target:
        words = random.choices(vocab, cum_weights=cum, k=200000)
        lines = [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
        chunk = "\n".join(lines) + "\n"
        f.write(chunk)
        written += len(chunk)
PY

"$BASIN" local up --data-dir "$WORK/cluster" --workers 3 --task-workers 1 > "$WORK/cluster.log" 2>&1 &
PID=$!
for _ in $(seq 1 600); do [ -f "$WORK/cluster/cluster.env" ] && break; sleep 0.1; done
set -a; . "$WORK/cluster/cluster.env"; set +a
"$BASIN" dfs put "$WORK/text.txt" /text.txt

t0=$(now)
"$BASIN" job submit --input /text.txt --output /wc --builtin wordcount --reducers 4 --wait > /dev/null
t1=$(now)
WC_BASIN=$(secs "$t0" "$t1")
"$BASIN" --json job counters 1 > "$WORK/wc-counters.json"

read -r WC_CORE WC_CORE_MB < <(measure bash -c "tr -s ' ' '\n' < '$WORK/text.txt' | LC_ALL=C sort | uniq -c")
WC_DUCK="n/a"; WC_DUCK_MB="n/a"; WC_SPARK="n/a"; WC_SPARK_MB="n/a"
if [ "${BENCH_SKIP_PIP:-0}" != 1 ]; then
  python3 -m pip install --quiet --disable-pip-version-check duckdb pyspark >/dev/null 2>&1 || true
fi
if python3 -c 'import duckdb' 2>/dev/null; then
  read -r WC_DUCK WC_DUCK_MB < <(measure python3 -c "
import duckdb
duckdb.sql(\"select w, count(*) from (select unnest(string_split(line, ' ')) as w from read_csv('$WORK/text.txt', columns={'line':'VARCHAR'}, delim='\\x01', header=false, quote='')) where w <> '' group by w\").fetchall()")
fi
if python3 -c 'import pyspark' 2>/dev/null && command -v java >/dev/null; then
  read -r WC_SPARK WC_SPARK_MB < <(measure python3 -c "
from pyspark.sql import SparkSession
s = SparkSession.builder.master('local[2]').config('spark.ui.enabled','false').getOrCreate()
s.sparkContext.setLogLevel('ERROR')
s.sparkContext.textFile('$WORK/text.txt').flatMap(lambda l: l.split()).map(lambda w: (w, 1)).reduceByKey(lambda a, b: a + b).count()
s.stop()")
fi

t0=$(now)
"$BASIN" job submit --builtin teragen --records "$RECORDS" --maps 4 --output /tera/in --wait > /dev/null
t1=$(now)
GEN_BASIN=$(secs "$t0" "$t1")
t0=$(now)
"$BASIN" job submit --builtin terasort --input /tera/in --output /tera/out --reducers 4 --wait > /dev/null
t1=$(now)
SORT_BASIN=$(secs "$t0" "$t1")
"$BASIN" --json job counters 3 > "$WORK/sort-counters.json"
"$BASIN" job submit --builtin teravalidate --input /tera/out --output /tera/check --wait > /dev/null
VALID=$("$BASIN" dfs cat /tera/check/part-00000 | tr '\n' ' ')
PEAK_CLUSTER_MB=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$PID/status")

# Baseline: LC_ALL=C sort of the same records' keys (hex, one per line).
"$BASIN" dfs cat /tera/in/part-00000 /tera/in/part-00001 /tera/in/part-00002 /tera/in/part-00003 \
  | python3 -c "
import sys
d = sys.stdin.buffer.read()
out = sys.stdout
for i in range(0, len(d), 100):
    out.write(d[i:i+10].hex() + '\n')" > "$WORK/keys.txt"
read -r SORT_CORE SORT_CORE_MB < <(measure env LC_ALL=C sort -o "$WORK/keys.sorted" "$WORK/keys.txt")
SORT_DUCK="n/a"; SORT_DUCK_MB="n/a"
if python3 -c 'import duckdb' 2>/dev/null; then
  read -r SORT_DUCK SORT_DUCK_MB < <(measure python3 -c "
import duckdb
duckdb.sql(\"copy (select * from read_csv('$WORK/keys.txt', columns={'k':'VARCHAR'}, header=false) order by k) to '$WORK/keys.duck' (header false)\")")
fi

echo
echo "machine: $(nproc) cores; text ${TEXT_MB} MB; terasort ${RECORDS} records"
printf "%-34s %9s %9s %12s\n" "wordcount" "seconds" "peak MB" "them/basin"
printf "%-34s %9s %9s %12s\n" "basin (cluster, 4 reducers)" "$WC_BASIN" "$PEAK_CLUSTER_MB*" "1.00"
printf "%-34s %9s %9s %12s\n" "coreutils tr|sort|uniq -c" "$WC_CORE" "$WC_CORE_MB" "$(ratio "$WC_CORE" "$WC_BASIN")"
[ "$WC_DUCK" != n/a ] && printf "%-34s %9s %9s %12s\n" "duckdb" "$WC_DUCK" "$WC_DUCK_MB" "$(ratio "$WC_DUCK" "$WC_BASIN")"
[ "$WC_SPARK" != n/a ] && printf "%-34s %9s %9s %12s\n" "spark local[2]" "$WC_SPARK" "$WC_SPARK_MB" "$(ratio "$WC_SPARK" "$WC_BASIN")"
printf "%-34s %9s %9s %12s\n" "terasort" "seconds" "peak MB" "them/basin"
printf "%-34s %9s %9s %12s\n" "basin teragen" "$GEN_BASIN" "" ""
printf "%-34s %9s %9s %12s\n" "basin terasort (4 reducers)" "$SORT_BASIN" "$PEAK_CLUSTER_MB*" "1.00"
printf "%-34s %9s %9s %12s\n" "LC_ALL=C sort of the keys" "$SORT_CORE" "$SORT_CORE_MB" "$(ratio "$SORT_CORE" "$SORT_BASIN")"
[ "$SORT_DUCK" != n/a ] && printf "%-34s %9s %9s %12s\n" "duckdb order by of the keys" "$SORT_DUCK" "$SORT_DUCK_MB" "$(ratio "$SORT_DUCK" "$SORT_BASIN")"
echo "* peak RSS of the whole one-process cluster (masters, workers, tasks) over the run"
echo "teravalidate: $VALID"
echo "wordcount counters: $(tr -d ' \n' < "$WORK/wc-counters.json")"
echo "terasort counters: $(tr -d ' \n' < "$WORK/sort-counters.json")"
