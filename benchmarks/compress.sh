#!/usr/bin/env bash
# Compression off and on (issue 24), in one command, on this tree:
#
#   bytes  STORM_CLIENTS (9,000) new clients at once on a topic of KEYS
#          (10,000) JSON values of about 200 B (sseload.PayloadJSON: an item
#          with id, name, price, status, updatedAt, tags): the bytes each
#          client read off its socket until its event:ready, on average
#          (BenchmarkNewClientStorm: kafka+nats, the cache and the edge each
#          a process of its own)
#   storm  the same storm: the edge's CPU seconds (utime+stime from
#          /proc/PID/stat) from the first connect until the last ready
#   live   CLIENTS_LIVE (2,000) clients x RATE (100) JSON records/s for
#          DURATION (10s) (sseload, as hot.sh's figure a): the edge's CPU
#          microseconds per delivery while producing and settling
#   idle   IDLE (9,000) idle streams: the edge's RSS per connection after
#          SETTLE (10s) (as hot.sh's idle)
#
# Sides: `off`, the edge with `sse.compression: off` while the clients
# still send `Accept-Encoding: gzip, zstd` (as browsers do) and get
# identity; and one side per coding of CODINGS ("gzip zstd"): the edge as
# configured by default (compression on) and clients that accept only that
# coding. Clients decode what they get (compress/gzip; klauspost's zstd),
# so every event is still checked: each storm client's state part must be
# exactly the topic's, live records are checked for gaps. RUNS (5) runs,
# the sides alternating within each run, fresh processes for every figure;
# then each figure's median and spread (min..max) per side, and each
# coding's median over off's. Raw output stays in $OUT.
#
#   benchmarks/compress.sh
#
# A quick check of the script (a couple of minutes):
#
#   RUNS=1 STORM_CLIENTS=200 KEYS=2000 CLIENTS_LIVE=100 IDLE=300 DURATION=2s SETTLE=1s \
#     benchmarks/compress.sh
#
# An edge whose config has no sse.compression (a tree before issue 24)
# runs the off side with its default and says so.
set -euo pipefail
{
cd "$(dirname "$0")/.."
. benchmarks/lib.sh

runs=${RUNS:-5}
codings=${CODINGS:-gzip zstd}
storm_clients=${STORM_CLIENTS:-9000} keys=${KEYS:-10000}
clients_live=${CLIENTS_LIVE:-2000} rate=${RATE:-100} duration=${DURATION:-10s}
idle=${IDLE:-9000} settle=${SETTLE:-10s}
port=${PORT_BASE:-29000}
out=${OUT:-$(mktemp -d /tmp/ssekafka-compress.XXXXXX)}
mkdir -p "$out"
secs=${duration%s} settle_s=${settle%s}
case $secs$settle_s in '' | *[!0-9]*)
  echo "DURATION and SETTLE must be whole seconds, like 10s: $duration, $settle"
  exit 2
  ;;
esac
kafka=127.0.0.1:$((port + 92)) nats=127.0.0.1:$((port + 22))
edge_http=127.0.0.1:$((port + 80)) edge_admin=127.0.0.1:$((port + 81)) dev_http=127.0.0.1:$((port + 83))
ports_free "$kafka" "$nats" "$edge_http" "$edge_admin" "$dev_http" || { echo "(PORT_BASE is $port)"; exit 2; }

echo "this tree $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' + changes'); sides: off $codings; $runs runs; output in $out"
mkdir -p "$out/bin"
go build -o "$out/bin/ssekafka" ./cmd/ssekafka
go build -o "$out/bin/sseload" ./benchmarks/cmd/sseload
go test -c -o "$out/bin/benchmarks.test" ./benchmarks/

# The edge's config per side (live and idle); the storm writes its own.
off_yaml="compression: off"
printf 'sse:\n  %s\nroutes:\n  - when: [{path: /tasks}]\n    with: {topic: tasks}\n' "$off_yaml" >"$out/edge-off.yaml"
printf 'routes:\n  - when: [{path: /tasks}]\n    with: {topic: tasks}\n' >"$out/edge-on.yaml"
storm_off=off
if ! "$out/bin/ssekafka" validate --config "$out/edge-off.yaml" >"$out/validate.log" 2>&1; then
  echo "this tree's edge has no sse.compression ($(tail -n 1 "$out/validate.log")): the off side runs with the edge's default"
  cp "$out/edge-on.yaml" "$out/edge-off.yaml"
  storm_off=
fi

# side_accept SIDE / side_config SIDE: what the clients send, which config the edge reads.
side_accept() { if [ "$1" = off ]; then echo "gzip, zstd"; else echo "$1"; fi; }

dev_pid= edge_pid=
cleanup() {
  [ -z "$edge_pid" ] || kill -KILL "$edge_pid" 2>/dev/null || true
  [ -z "$dev_pid" ] || kill -KILL "$dev_pid" 2>/dev/null || true
}
trap cleanup EXIT
ready_or_gone() { curl -sf "http://$edge_admin/_ssekafka/ready" || ! kill -0 "$edge_pid"; }

# start SIDE DIR FIG: a fresh dev process (kafka, nats, cache) and edge.
start() {
  local side=$1 dir=$2 fig=$3 cfg=$out/edge-on.yaml
  [ "$side" = off ] && cfg=$out/edge-off.yaml
  "$out/bin/ssekafka" dev --only kafka,nats,cache --http "$dev_http" --kafka "$kafka" --nats "$nats" >"$dir/dev-$fig.log" 2>&1 &
  dev_pid=$!
  if ! waitfor 30 grep -q 'embedded nats listening' "$dir/dev-$fig.log"; then
    echo "dev did not start (see $dir/dev-$fig.log)"
    return 1
  fi
  "$out/bin/ssekafka" edge --config "$cfg" --http "$edge_http" --nats "nats://$nats" --admin "$edge_admin" >"$dir/edge-$fig.log" 2>&1 &
  edge_pid=$!
  if ! waitfor 60 ready_or_gone || ! kill -0 "$edge_pid" 2>/dev/null; then
    echo "edge did not start (see $dir/edge-$fig.log)"
    return 1
  fi
}
stop() {
  [ -z "$edge_pid" ] || stopproc "$edge_pid"
  [ -z "$dev_pid" ] || stopproc "$dev_pid"
  edge_pid= dev_pid=
}

# load SIDE DIR FIG SSELOAD_ARGS...: one sseload run against a fresh edge.
load() {
  local side=$1 dir=$2 fig=$3 rc=0
  shift 3
  start "$side" "$dir" "$fig" || { stop; return 1; }
  timeout -k 5 $((secs + settle_s + 180)) "$out/bin/sseload" -url "http://$edge_http/tasks" -kafka "$kafka" -topic tasks \
    -edge-pid "$edge_pid" -json -accept-encoding "$(side_accept "$side")" "$@" -out "$dir/$fig.json" 2>"$dir/$fig.log" || rc=$?
  stop
  return $rc
}

# storm SIDE DIR: one BenchmarkNewClientStorm.
storm() {
  local side=$1 dir=$2 comp=
  [ "$side" = off ] && comp=$storm_off
  (cd benchmarks && "$out/bin/benchmarks.test" -test.run '^$' -test.bench '^BenchmarkNewClientStorm$' -test.benchtime 1x \
    -test.timeout 30m -storm-new-clients "$storm_clients" -storm-keys "$keys" -storm-json \
    -storm-accept-encoding "$(side_accept "$side")" -storm-compression "$comp") >"$dir/storm.log" 2>&1
}

failed=0
for i in $(seq 1 "$runs"); do
  echo "== run $i of $runs"
  for side in off $codings; do
    dir="$out/run$i-$side"
    mkdir -p "$dir"
    if storm "$side" "$dir"; then
      line=$(grep '^new-client storm, this tree:' "$dir/storm.log" || true)
      echo "$line" | sed -E 's/.* ([0-9.]+) B read per client.*/\1/' >>"$out/bytes.$side"
      echo "$line" | sed -E 's/.*edge CPU ([0-9.]+) s.*/\1/' >>"$out/storm-cpu.$side"
      echo "$line" | sed -E 's/.*all ready in ([0-9]+) ms.*/\1/' >>"$out/storm-ready.$side"
      echo "$line" | sed -E 's/.*: ([0-9]+) exact.*/\1/' >>"$out/storm-exact.$side"
      echo "$line" | sed -E 's/.*, ([0-9]+) decode errors.*/\1/' >>"$out/decode-errors.$side"
    else
      failed=$((failed + 1))
      echo "failed: storm, $side, run $i (see $dir/storm.log)"
      tail -n 5 "$dir/storm.log"
    fi
    if load "$side" "$dir" live -clients "$clients_live" -rate "$rate" -duration "$duration"; then
      jnum "$dir/live.json" edgeCPUMicrosPerDelivery >>"$out/live-cpu.$side"
      jnum "$dir/live.json" missed >>"$out/live-missed.$side"
      jnum "$dir/live.json" p99 >>"$out/live-p99.$side"
      jnum "$dir/live.json" decodeErrors >>"$out/decode-errors.$side" || true
    else
      failed=$((failed + 1))
      echo "failed: live, $side, run $i (see $dir)"
      tail -n 5 "$dir/live.log" 2>/dev/null || true
    fi
    if load "$side" "$dir" idle -clients "$idle" -rate 1 -duration 1s -settle "$settle"; then
      jnum "$dir/idle.json" edgeRSSBytesPerConnection >>"$out/idle-rss.$side"
    else
      failed=$((failed + 1))
      echo "failed: idle, $side, run $i (see $dir)"
      tail -n 5 "$dir/idle.log" 2>/dev/null || true
    fi
  done
done


echo
echo "bytes and storm: $storm_clients new clients on $keys JSON values; live: $clients_live clients x $rate records/s for $duration; idle: $idle streams, settle $settle"
printf '%-44s' figure
for side in off $codings; do printf '%-30s' "$side median (min..max)"; done
for c in $codings; do printf '%-10s' "$c/off"; done
echo
for row in "bytes|bytes read per new client" "storm-cpu|storm: edge CPU s" "storm-ready|storm: all ready ms" \
  "live-cpu|live: edge CPU us per delivery" "live-p99|live: p99 ms" "idle-rss|idle: edge RSS B per connection" \
  "storm-exact|storm: exact states (want all)" "live-missed|live: missed (want 0)" "decode-errors|decode errors (want 0)"; do
  IFS='|' read -r key label <<<"$row"
  printf '%-44s' "$label"
  read -r offm _ _ <<<"$(stats "$out/$key.off")"
  for side in off $codings; do
    read -r m lo hi <<<"$(stats "$out/$key.$side" | num)"
    printf '%-30s' "$m ($lo..$hi)"
  done
  for c in $codings; do
    read -r cm _ _ <<<"$(stats "$out/$key.$c")"
    awk -v c="$cm" -v o="$offm" 'BEGIN { if (c == "-" || o == "-" || o == 0) printf "%-10s", "-"; else printf "%-10.3f", c / o }'
  done
  echo
done
[ "$runs" -ge 3 ] || echo "(a spread of $runs run(s) says little: RUNS of 3 or more)"
[ "$failed" = 0 ] || echo "$failed figure run(s) FAILED and are missing from the medians (logs in $out)"
exit
}
