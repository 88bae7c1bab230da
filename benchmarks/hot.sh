#!/usr/bin/env bash
# One hot topic (issue 23): compares this tree with a baseline commit on the
# sseload figures, in one command, with every node a process of its own on
# 127.0.0.1:
#
#   a     CLIENTS_A (2,000) clients x RATE_A (100) records/s for DURATION (10s):
#         p50 and p99 latency, deliveries/s
#   b     CLIENTS_B (8,000) x RATE_B (200) records/s: deliveries/s, p50, p99
#   idle  IDLE (9,000) idle streams: the edge's RSS per connection after
#         SETTLE (10s)
#
# Each run of a figure starts a fresh `ssekafka dev --only kafka,nats,cache`
# process, a fresh `ssekafka edge` and the side's own sseload, all built from
# the baseline commit (in a temporary git worktree) or from this tree. RUNS
# runs (5), the baseline and this tree alternately; then per figure the
# medians, the baseline's spread (min..max), the ratio and whether this
# tree's median is within, better than or worse than that spread. Raw output
# (sseload's JSON, every process's log) is kept in $OUT.
#
#   benchmarks/hot.sh bfcbe5b                      # as today's harness: no pinning
#   SWEEP="1 2" benchmarks/hot.sh bfcbe5b          # the edge on K cores, the rest on the others
#   CORES_EDGE=4 benchmarks/hot.sh bfcbe5b         # one K
#   PROFILE=1 benchmarks/hot.sh bfcbe5b            # and CPU, mutex, block profiles of a and b
#
# Placement (taskset, util-linux). SWEEP lists placements: `none` (the
# default) leaves every process where the scheduler puts it, as today's
# harness does; a number K pins the edge to the first K CPUs of CPUS (by
# default the CPUs this shell may use) and sseload and the dev process to
# the others (or to LOAD_CORES, a taskset list, where given; LOAD_ARGS, e.g.
# "-procs 4", passes to sseload for a and b: one sseload process reads its
# connections on one epoll loop, a core's worth). Where no CPU is
# left for the load (K at or above the CPUs), the load shares the edge's
# CPUs, and the output says so. Without taskset only `none` runs.
#
# PROFILE=1: after the measured runs, one more run of a and b per side (not
# in the medians) with the edge's --pprof listener, capturing a CPU profile
# while records are produced, and the mutex and block profiles over the same
# time (--pprof-mutex PROFILE_MUTEX (5), --pprof-block PROFILE_BLOCK (10000
# ns), where the edge has those flags); `go tool pprof -top` heads in
# $OUT/profiles/*.top (flat) and *.cumtop (cumulative).
#
# A quick check of the script (about 2 minutes):
#
#   RUNS=1 CLIENTS_A=100 CLIENTS_B=200 RATE_B=100 IDLE=300 DURATION=2s SETTLE=1s \
#     benchmarks/hot.sh bfcbe5b
set -euo pipefail
# The whole script is read before it runs (one block), so a checkout that
# changes this file during a run leaves the run alone.
{
cd "$(dirname "$0")/.."
. benchmarks/lib.sh

base=${1:?usage: benchmarks/hot.sh BASELINE_REF}
runs=${RUNS:-5}
clients_a=${CLIENTS_A:-2000} rate_a=${RATE_A:-100}
clients_b=${CLIENTS_B:-8000} rate_b=${RATE_B:-200}
idle=${IDLE:-9000} settle=${SETTLE:-10s}
duration=${DURATION:-10s}
port=${PORT_BASE:-28000}
sweep=${SWEEP:-${CORES_EDGE:-none}}
profile=${PROFILE:-0}
out=${OUT:-$(mktemp -d /tmp/ssekafka-hot.XXXXXX)}
mkdir -p "$out"
secs=${duration%s} settle_s=${settle%s}
case $secs$settle_s in '' | *[!0-9]*)
  echo "DURATION and SETTLE must be whole seconds, like 10s: $duration, $settle"
  exit 2
  ;;
esac
for k in $sweep; do
  case $k in none | [1-9] | [1-9][0-9] | [1-9][0-9][0-9]) ;; *)
    echo "SWEEP: $k is neither none nor a number of CPUs"
    exit 2
    ;;
  esac
done

kafka=127.0.0.1:$((port + 92)) nats=127.0.0.1:$((port + 22))
edge_http=127.0.0.1:$((port + 80)) edge_admin=127.0.0.1:$((port + 81))
edge_pprof=127.0.0.1:$((port + 82)) dev_http=127.0.0.1:$((port + 83))
ports_free "$kafka" "$nats" "$edge_http" "$edge_admin" "$edge_pprof" "$dev_http" || { echo "(PORT_BASE is $port)"; exit 2; }

# cpulist LIST: a taskset list (0-3,8) as numbers, one per word.
cpulist() {
  local part lo hi
  for part in ${1//,/ }; do
    lo=${part%-*} hi=${part#*-}
    seq "$lo" "$hi"
  done | tr '\n' ' '
}
# joined WORDS...: a comma-separated taskset list.
joined() { local IFS=,; echo "$*"; }

have_taskset=1
if ! command -v taskset >/dev/null; then
  have_taskset=0
  if [ "$sweep" != none ]; then
    echo "taskset not found (util-linux): cannot pin, SWEEP=\"$sweep\" falls back to no pinning"
  fi
  sweep=none
fi
cpus=${CPUS:-}
if [ -z "$cpus" ] && [ "$have_taskset" = 1 ]; then
  cpus=$(taskset -cp $$ | sed 's/.*: *//')
fi
read -r -a all_cpus <<<"$(cpulist "${cpus:-0-$(($(nproc) - 1))}")"

# place K: sets edge_cpus and load_cpus (empty: no pinning) and place_note.
place() {
  local k=$1
  edge_cpus= load_cpus= place_note=
  if [ "$k" = none ]; then
    place_note="no pinning (as today's harness): the edge, sseload and the dev process share all ${#all_cpus[@]} CPUs"
    return
  fi
  edge_cpus=$(joined "${all_cpus[@]:0:k}")
  if [ -n "${LOAD_CORES:-}" ]; then
    load_cpus=$LOAD_CORES
  elif [ "$k" -lt "${#all_cpus[@]}" ]; then
    load_cpus=$(joined "${all_cpus[@]:k}")
  else
    load_cpus=$(joined "${all_cpus[@]}")
  fi
  if [ "$k" -gt "${#all_cpus[@]}" ]; then
    place_note="K=$k: only ${#all_cpus[@]} CPUs here, the edge gets all of them ($edge_cpus) and the load shares them: this says nothing of $k cores"
    return
  fi
  place_note="K=$k: edge on CPUs $edge_cpus; sseload and dev on CPUs $load_cpus"
  case ",$load_cpus," in *",${all_cpus[0]},"*)
    place_note="$place_note (the load SHARES the edge's CPUs)"
    ;;
  esac
}

# pin CPUS: the command prefix that pins to CPUS (none when CPUS is empty);
# taskset execs the command, so $! of a pinned process is its own.
pin() {
  pinned=()
  if [ -n "$1" ]; then pinned=(taskset -c "$1"); fi
}

# Builds: bin/SIDE/ssekafka and bin/SIDE/sseload.
wt="$out/baseline-src"
dev_pid= edge_pid=
cleanup() {
  [ -z "$edge_pid" ] || kill -KILL "$edge_pid" 2>/dev/null || true
  [ -z "$dev_pid" ] || kill -KILL "$dev_pid" 2>/dev/null || true
  git worktree remove --force "$wt" >/dev/null 2>&1 || true
}
trap cleanup EXIT
echo "baseline $base ($(git rev-parse --short "$base")), this tree $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' + changes'); $runs runs each; output in $out"
git worktree add --quiet --detach --force "$wt" "$base"
for side in baseline tree; do
  src=.
  [ "$side" = baseline ] && src=$wt
  mkdir -p "$out/bin/$side"
  (cd "$src" && go build -o "$out/bin/$side/ssekafka" ./cmd/ssekafka && go build -o "$out/bin/$side/sseload" ./benchmarks/cmd/sseload)
done
git worktree remove --force "$wt"

ready_or_gone() { curl -sf "http://$edge_admin/_ssekafka/ready" || ! kill -0 "$edge_pid"; }
# cputicks PID: the process's user+system CPU so far, in clock ticks.
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)

# start SIDE DIR FIG [EDGE_ARGS...]: a fresh dev process and edge; sets dev_pid, edge_pid.
start() {
  local side=$1 dir=$2 fig=$3 bin=$out/bin/$1/ssekafka
  shift 3
  pin "$load_cpus"
  "${pinned[@]}" "$bin" dev --only kafka,nats,cache --http "$dev_http" --kafka "$kafka" --nats "$nats" \
    >"$dir/dev-$fig.log" 2>&1 &
  dev_pid=$!
  if ! waitfor 30 grep -q 'embedded nats listening' "$dir/dev-$fig.log" || ! kill -0 "$dev_pid" 2>/dev/null; then
    echo "dev did not start (see $dir/dev-$fig.log)"
    return 1
  fi
  pin "$edge_cpus"
  "${pinned[@]}" "$bin" edge --http "$edge_http" --nats "nats://$nats" --admin "$edge_admin" "$@" \
    >"$dir/edge-$fig.log" 2>&1 &
  edge_pid=$!
  if ! waitfor 60 ready_or_gone || ! kill -0 "$edge_pid" 2>/dev/null; then
    if kill -0 "$edge_pid" 2>/dev/null; then
      echo "edge not ready within 60 s: $(curl -s "http://$edge_admin/_ssekafka/ready") (see $dir/edge-$fig.log)"
    else
      echo "edge exited: $(tail -n 1 "$dir/edge-$fig.log")"
    fi
    return 1
  fi
}
stop() {
  [ -z "$edge_pid" ] || stopproc "$edge_pid"
  [ -z "$dev_pid" ] || stopproc "$dev_pid"
  edge_pid= dev_pid=
}

# load SIDE DIR NAME SSELOAD_ARGS...: one sseload run against the edge, its
# JSON in DIR/NAME.json; also writes DIR/NAME.cpu: edge and load CPUs busy.
load() {
  local side=$1 dir=$2 name=$3 t0 e0 e1 rc=0
  shift 3
  e0=$(cputicks "$edge_pid") t0=$(date +%s.%N)
  local TIMEFORMAT='%U %S %R'
  pin "$load_cpus"
  { time "${pinned[@]}" timeout -k 5 $((secs + settle_s + 150)) "$out/bin/$side/sseload" \
    -url "http://$edge_http/tasks" -kafka "$kafka" -topic tasks -edge-pid "$edge_pid" "$@" \
    -out "$dir/$name.json" 2>"$dir/$name.log"; } 2>"$dir/$name.time" || rc=$?
  e1=$(cputicks "$edge_pid")
  awk -v e="$((e1 - e0))" -v hz="$hz" -v t0="$t0" -v t1="$(date +%s.%N)" '{
    printf "%.2f %.2f\n", e / hz / (t1 - t0), ($1 + $2) / $3 }' <(tail -n 1 "$dir/$name.time") >"$dir/$name.cpu"
  return $rc
}

# figure SIDE DIR FIG: one run of a figure with fresh processes.
figure() {
  local side=$1 dir=$2 fig=$3
  mkdir -p "$dir"
  start "$side" "$dir" "$fig" || { stop; return 1; }
  local rc=0
  case $fig in
  a) load "$side" "$dir" a -clients "$clients_a" -rate "$rate_a" -duration "$duration" ${LOAD_ARGS:-} || rc=$? ;;
  b) load "$side" "$dir" b -clients "$clients_b" -rate "$rate_b" -duration "$duration" ${LOAD_ARGS:-} || rc=$? ;;
  idle) load "$side" "$dir" idle -clients "$idle" -rate 1 -duration 1s -settle "$settle" || rc=$? ;;
  esac
  stop
  return $rc
}

# One process holds IDLE or CLIENTS_B connections (and the edge as many).
need=$((idle > clients_b ? idle : clients_b))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((need + 500)) ]; then
  echo "warning: open files limited to $(ulimit -n), under the $need connections of one process (raise ulimit -n)"
fi

failed=0
# collect DIR FIG SIDE PDIR: appends the run's figures to PDIR/KEY.SIDE.
collect() {
  local dir=$1 fig=$2 side=$3 pdir=$4 j=$1/$2.json
  [ -s "$j" ] || return 0
  case $fig in
  idle) jnum "$j" edgeRSSBytesPerConnection >>"$pdir/idle-rss.$side" ;;
  *)
    jnum "$j" p50 >>"$pdir/$fig-p50.$side"
    jnum "$j" p99 >>"$pdir/$fig-p99.$side"
    jnum "$j" deliveriesPerSecond >>"$pdir/$fig-dps.$side"
    jnum "$j" missed >>"$pdir/$fig-missed.$side"
    local rate=$rate_a
    [ "$fig" = b ] && rate=$rate_b
    awk -v p="$(jnum "$j" produced)" -v o="$((rate * secs))" 'BEGIN {printf "%.3f\n", p / o}' >>"$pdir/$fig-produced.$side"
    read -r ec lc <"$dir/$fig.cpu"
    echo "$ec" >>"$pdir/$fig-edgecpu.$side"
    echo "$lc" >>"$pdir/$fig-loadcpu.$side"
    ;;
  esac
}

first=1
for k in $sweep; do
  place "$k"
  pdir="$out/place-$k"
  mkdir -p "$pdir"
  echo "$place_note" | tee "$pdir/placement"
  figs="a b"
  [ "$first" = 1 ] && figs="a b idle"
  for i in $(seq 1 "$runs"); do
    echo "== $k: run $i of $runs"
    for side in baseline tree; do
      for fig in $figs; do
        dir="$pdir/run$i-$side"
        if ! figure "$side" "$dir" "$fig"; then
          failed=$((failed + 1))
          echo "failed: $side $fig, run $i (logs in $dir)"
          tail -n 5 "$dir/$fig.log" 2>/dev/null || true
        fi
        collect "$dir" "$fig" "$side" "$pdir"
      done
    done
  done
  first=0
done

table() {
  local pdir=$1 row key label better bm bmin bmax tm tmin tmax ratio verdict
  printf '%-40s %-32s %-32s %-7s %s\n' figure "baseline median (min..max)" "this tree median (min..max)" ratio "this tree vs the baseline's spread"
  for row in "a-p50|a: p50 ms|down" "a-p99|a: p99 ms|down" "a-dps|a: deliveries/s|up" \
    "b-dps|b: deliveries/s|up" "b-p50|b: p50 ms|down" "b-p99|b: p99 ms|down" \
    "idle-rss|idle: edge RSS B per connection|down" \
    "a-missed|a: missed (want 0)|info" "b-missed|b: missed (want 0)|info" \
    "a-produced|a: produced/offered (want 1)|info" "b-produced|b: produced/offered (want 1)|info" \
    "a-edgecpu|a: edge CPUs busy|info" "b-edgecpu|b: edge CPUs busy|info" \
    "a-loadcpu|a: sseload CPUs busy|info" "b-loadcpu|b: sseload CPUs busy|info"; do
    IFS='|' read -r key label better <<<"$row"
    [ -s "$pdir/$key.baseline" ] || [ -s "$pdir/$key.tree" ] || continue
    read -r bm bmin bmax <<<"$(stats "$pdir/$key.baseline" | num)"
    read -r tm tmin tmax <<<"$(stats "$pdir/$key.tree" | num)"
    ratio=$(awk -v t="$tm" -v b="$bm" 'BEGIN { if (t == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", t / b }')
    verdict=$(awk -v t="$tm" -v lo="$bmin" -v hi="$bmax" -v b="$better" 'BEGIN {
      if (b == "info") print ""; else if (t == "-" || lo == "-") print "?";
      else if (t >= lo && t <= hi) print "within";
      else if ((b == "up") == (t > hi)) print "better"; else print "WORSE" }')
    printf '%-40s %-32s %-32s %-7s %s\n' "$label" "$bm ($bmin..$bmax)" "$tm ($tmin..$tmax)" "$ratio" "$verdict"
  done
}

echo
echo "a: $clients_a clients x $rate_a records/s for $duration; b: $clients_b x $rate_b/s; idle: $idle streams, settle $settle"
for k in $sweep; do
  echo
  echo "== $(cat "$out/place-$k/placement")"
  table "$out/place-$k" | tee "$out/place-$k/summary"
done
[ "$runs" -ge 3 ] || echo "(a spread of $runs run(s) says little: the verdicts need RUNS of 3 or more)"
[ "$failed" = 0 ] || echo "$failed run(s) FAILED and are missing from the medians (logs in $out)"

# profile SIDE FIG: one run of FIG with the edge's profiles.
profile() {
  local side=$1 fig=$2 dir=$out/profiles/$side-$fig bin=$out/bin/$1/ssekafka rates=()
  mkdir -p "$dir"
  if "$bin" edge -h 2>&1 | grep -q -- -pprof-mutex; then
    rates=(--pprof-mutex "${PROFILE_MUTEX:-5}" --pprof-block "${PROFILE_BLOCK:-10000}")
  fi
  start "$side" "$dir" "$fig" --pprof "$edge_pprof" "${rates[@]}" || { stop; return 1; }
  local n=$clients_a r=$rate_a
  [ "$fig" = b ] && n=$clients_b r=$rate_b
  load "$side" "$dir" "$fig" -clients "$n" -rate "$r" -duration "$duration" ${LOAD_ARGS:-} &
  local lp=$! p=$((secs > 2 ? secs - 1 : secs))
  # Profile while records are produced: sseload logs its connects first.
  waitfor 90 grep -q 'clients connected' "$dir/$fig.log" || true
  curl -sf -o "$dir/cpu.pprof" "http://$edge_pprof/debug/pprof/profile?seconds=$p" &
  local cp=$! mp=
  if [ ${#rates[@]} -gt 0 ]; then
    curl -sf -o "$dir/mutex.pprof" "http://$edge_pprof/debug/pprof/mutex?seconds=$p" &
    mp=$!
    curl -sf -o "$dir/block.pprof" "http://$edge_pprof/debug/pprof/block?seconds=$p" || true
  fi
  wait "$cp" || true
  [ -z "$mp" ] || wait "$mp" || true
  wait "$lp" || true
  stop
  local kind ignore
  for kind in cpu mutex block; do
    [ -s "$dir/$kind.pprof" ] || continue
    # The block profile's own handlers wait through the profile: left out.
    ignore=()
    [ "$kind" = cpu ] || ignore=(-ignore 'net/http/pprof')
    go tool pprof -top -nodecount="${PROFILE_TOP:-25}" "${ignore[@]}" "$bin" "$dir/$kind.pprof" >"$out/profiles/$side-$fig-$kind.top" 2>&1 || true
    go tool pprof -top -cum -nodecount="${PROFILE_TOP:-25}" "${ignore[@]}" "$bin" "$dir/$kind.pprof" >"$out/profiles/$side-$fig-$kind.cumtop" 2>&1 || true
  done
  [ ${#rates[@]} -gt 0 ] || echo "$side: the edge has no --pprof-mutex/--pprof-block: CPU profile only" |
    tee "$out/profiles/$side-$fig-contention.note"
}

if [ "$profile" = 1 ]; then
  k=${sweep%% *}
  place "$k"
  echo
  echo "== profiles of a and b, one run per side (not in the medians); $place_note"
  for side in baseline tree; do
    for fig in a b; do
      profile "$side" "$fig" || echo "failed: profile $side $fig (see $out/profiles/$side-$fig)"
    done
  done
  # The first ten lines of each: CPU by flat and by cumulative time, the
  # mutex and block profiles by cumulative (their flat leaves are the
  # runtime's unlock and select).
  for f in "$out"/profiles/*-cpu.top "$out"/profiles/*.cumtop; do
    [ -e "$f" ] || continue
    echo "-- $(basename "$f")"
    sed -n '1,/flat%/p' "$f" | grep -v '^Type\|^Time\|^Build\|^File' || true
    sed -n '/flat%/,$p' "$f" | sed -n '2,11p'
  done
fi
exit
}
