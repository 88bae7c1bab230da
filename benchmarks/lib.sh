# Helpers shared by the cluster benchmark scripts (hot.sh, compress.sh,
# compare.sh): sourced, not run.

# ports_free ADDR...: fails, saying which, if something listens on an ADDR
# (host:port).
ports_free() {
  local p
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/${p%:*}/${p#*:}") 2>/dev/null; then
      echo "$p is in use: stop what listens there, or set PORT_BASE"
      return 1
    fi
  done
}

# waitfor SECONDS CMD...: polls CMD every 0.1 s until it succeeds; fails
# after SECONDS.
waitfor() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# stopproc PID: SIGINT, then SIGKILL after 10 s.
stopproc() {
  kill -INT "$1" 2>/dev/null || return 0
  local deadline=$((SECONDS + 10))
  while kill -0 "$1" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# jnum FILE KEY: the first number field KEY of a JSON file (sseload's);
# nothing if it has none.
jnum() { grep -o "\"$2\": [0-9.e+-]*" "$1" | head -1 | sed 's/.*: //' || true; }

# stats FILE: the median, min and max of FILE's numbers, one per line;
# "- - -" if it has none.
stats() {
  [ -s "$1" ] || { echo "- - -"; return; }
  { grep -E '^[0-9.e+-]+$' "$1" || true; } | sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "- - -"; exit} print v[int((NR+1)/2)], v[1], v[NR]}'
}

# num: each number of its input rounded: whole at 100 and above, else 3
# significant digits; "-" kept.
num() { awk '{for (i = 1; i <= NF; i++) if ($i != "-") $i = ($i >= 100 ? sprintf("%.0f", $i) : sprintf("%.3g", $i)); print}'; }
