#!/usr/bin/env bash
# Compares this tree with a baseline commit on the cluster benchmarks, in one
# command: fan-out deliveries/s (BenchmarkFanout), idle bytes per connection
# (BenchmarkIdleStreamMemoryTLS, plain HTTP/1.1), storm time to current
# (BenchmarkStorm: kill -> current p50 and p99; BenchmarkNewClientStorm: all
# ready), RUNS runs each, baseline and this tree alternately; then prints each
# figure's median and the baseline's spread (min..max), and whether this
# tree's median is within or better than that spread. Last, one run of
# BenchmarkNeighbourPartition (its own medians over -neighbour-runs).
#
#   benchmarks/compare.sh 802ed5c   # RUNS=5; the benchmarks' default sizes, 4,000 idle streams
#
# Sizes pass through to the benchmarks, e.g. a quick check of the script:
#
#   RUNS=1 FANOUT_ARGS='-fanout-clients 50 -fanout-events 200' \
#     IDLE_ARGS='-tls-streams 100 -tls-settle 1s' \
#     STORM_ARGS='-storm-clients 200 -storm-own 50 -storm-new-clients 200 -storm-keys 1000' \
#     NEIGHBOUR_ARGS='-neighbour-runs 3' benchmarks/compare.sh 802ed5c
#
# The fan-out and idle benchmarks run each tree's own benchmark code (the
# baseline's from a temporary git worktree: fan-out links the edge library);
# the storm and neighbour benchmarks run this tree's code on both builds
# (-storm-baseline, -neighbour-baseline). Raw output is kept in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
. benchmarks/lib.sh

base=${1:?usage: benchmarks/compare.sh BASELINE_REF}
runs=${RUNS:-5}
out=${OUT:-$(mktemp -d /tmp/ssekafka-compare.XXXXXX)}
mkdir -p "$out"
echo "baseline $base ($(git rev-parse --short "$base")), this tree $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' + changes'); $runs runs each; output in $out"

wt="$out/baseline-src"
git worktree add --quiet --detach --force "$wt" "$base"
trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || true' EXIT
(cd "$wt" && go test -c -o "$out/baseline.test" ./benchmarks/)
go test -c -o "$out/tree.test" ./benchmarks/

# bench NAME SRC BIN ARGS...: one run of a test binary in SRC/benchmarks.
bench() {
  local name=$1 src=$2 bin=$3
  shift 3
  (cd "$src/benchmarks" && "$bin" -test.run '^$' -test.timeout 60m "$@") >>"$out/$name.log" 2>&1 ||
    { echo "failed: $name (see $out/$name.log)"; tail -n 20 "$out/$name.log"; exit 1; }
}

for i in $(seq 1 "$runs"); do
  echo "== run $i of $runs"
  for side in baseline tree; do
    src=.
    [ "$side" = baseline ] && src=$wt
    bench "fanout-$side" "$src" "$out/$side.test" -test.bench '^BenchmarkFanout$' -test.benchtime 5x ${FANOUT_ARGS:-}
    bench "idle-$side" "$src" "$out/$side.test" -test.bench '^BenchmarkIdleStreamMemoryTLS$' -test.benchtime 1x ${IDLE_ARGS:--tls-streams 4000}
  done
  bench storm . "$out/tree.test" -test.bench 'BenchmarkStorm$|BenchmarkNewClientStorm$' -test.benchtime 1x \
    -storm-baseline "$base" ${STORM_ARGS:-}
done

# Figures, one file per figure and side, a number a line.
grep -o '[0-9.]* deliveries/s' "$out/fanout-baseline.log" | cut -d' ' -f1 >"$out/fanout.baseline"
grep -o '[0-9.]* deliveries/s' "$out/fanout-tree.log" | cut -d' ' -f1 >"$out/fanout.tree"
grep '^plain HTTP/1.1:' "$out/idle-baseline.log" | grep -o '[0-9]* B per stream' | cut -d' ' -f1 >"$out/idle.baseline"
grep '^plain HTTP/1.1:' "$out/idle-tree.log" | grep -o '[0-9]* B per stream' | cut -d' ' -f1 >"$out/idle.tree"
for side in baseline tree; do
  who="this tree"
  [ "$side" = baseline ] && who="baseline $base"
  grep "^storm, $who:" "$out/storm.log" | sed -E 's/.*current p50 ([0-9]+) ms.*/\1/' >"$out/storm-p50.$side"
  grep "^storm, $who:" "$out/storm.log" | sed -E 's/.*, p99 ([0-9]+),.*/\1/' >"$out/storm-p99.$side"
  grep "^new-client storm, $who:" "$out/storm.log" | sed -E 's/.*all ready in ([0-9]+) ms.*/\1/' >"$out/newclients.$side"
done

echo
printf '%-44s %-30s %-30s %s\n' figure "baseline median (min..max)" "this tree median (min..max)" "this tree vs the baseline's spread"
for row in "fanout|fan-out deliveries/s|up" "idle|idle bytes per connection|down" \
  "storm-p50|storm: kill -> current p50 ms|down" "storm-p99|storm: kill -> current p99 ms|down" \
  "newclients|new-client storm: all ready ms|down"; do
  IFS='|' read -r key label better <<<"$row"
  read -r bm bmin bmax <<<"$(stats "$out/$key.baseline")"
  read -r tm tmin tmax <<<"$(stats "$out/$key.tree")"
  verdict=$(awk -v t="$tm" -v lo="$bmin" -v hi="$bmax" -v b="$better" 'BEGIN {
    if (t == "-" || lo == "-") print "?"; else if (b == "up") print (t >= lo ? "ok" : "WORSE"); else print (t <= hi ? "ok" : "WORSE") }')
  printf '%-44s %-30s %-30s %s\n' "$label" "$bm ($bmin..$bmax)" "$tm ($tmin..$tmax)" "$verdict"
done

if [ "$runs" -lt 3 ]; then
  echo "(a spread of $runs run(s) says little: the verdicts need RUNS of 3 or more)"
fi

echo
echo "== BenchmarkNeighbourPartition (baseline $base, then this tree)"
bench neighbour . "$out/tree.test" -test.bench 'BenchmarkNeighbourPartition$' -test.benchtime 1x \
  -neighbour-baseline "$base" ${NEIGHBOUR_ARGS:-}
grep '^neighbour partition' "$out/neighbour.log"
