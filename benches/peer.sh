#!/usr/bin/env bash
# Side by side with Flink SQL, in one run: the same queries over the same JSON-lines file of bids,
# read by each engine's file connector; rows per CPU-second of each engine's process, and the ratio.
#
#   benches/peer.sh                 # q0 q1 q2 hop tumble over 4 M bids
#   BIDS=1000000 benches/peer.sh q0 tumble
#
# Needs Flink SQL in a Python venv (once, ~600 MB; Java 17 must be installed):
#   python3 -m venv ~/.cache/flinkvenv && ~/.cache/flinkvenv/bin/pip install 'apache-flink==2.*'
# FLINK_PY overrides the venv's python. The file is generated once (benches/peer/gen_bids.py) and
# kept in $PEER_DIR (default /tmp). Flink's CPU is its JVM's, less a run over 1,000 bids (start-up).
# The queries: benches/peer/peer_flink.py (Flink) and `mod peer` in benches/nexmark.rs (eddy).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bids=${BIDS:-4000000}
dir=${PEER_DIR:-/tmp}
file=$dir/eddy-peer-bids-$bids.jsonl
tiny=$dir/eddy-peer-bids-1000.jsonl
py=${FLINK_PY:-$HOME/.cache/flinkvenv/bin/python}
queries=("$@")
[ ${#queries[@]} -gt 0 ] || queries=(q0 q1 q2 hop tumble)

[ -x "$py" ] || { echo "no Flink venv at $py (see the top of $0)"; exit 2; }
[ -s "$file" ] || { echo "generating $file"; python3 "$here/peer/gen_bids.py" "$bids" 3 >"$file"; }
[ -s "$tiny" ] || python3 "$here/peer/gen_bids.py" 1000 3 >"$tiny"

# CPU-seconds of the JVM that runs Flink query $1 over file $2 (sampled until it exits).
flink_cpu() {
  local out; out=$(mktemp)
  "$py" "$here/peer/peer_flink.py" "$1" "$2" 2 >"$out" 2>&1 &
  local pid=$! tck cpu=0 c j
  tck=$(getconf CLK_TCK)
  while kill -0 "$pid" 2>/dev/null; do
    for j in $(pgrep -P "$pid" java || true); do
      c=$(awk '{print $14+$15}' "/proc/$j/stat" 2>/dev/null || true)
      [ -n "$c" ] && cpu=$c
    done
    sleep 0.5
  done
  wait "$pid" || { cat "$out" >&2; rm -f "$out"; return 1; }
  grep '^flink' "$out" >&2 || true
  rm -f "$out"
  echo "scale=2; $cpu / $tck" | bc
}

eddy_out=$(mktemp)
(cd "$here/.." && cargo bench --bench nexmark -- --json-file "$file" "${queries[@]}") | tee "$eddy_out"
startup=$(flink_cpu q0 "$tiny")
echo "flink start-up (1,000 bids): $startup CPU-s"
printf '\n%-7s %14s %14s %8s\n' query "eddy rows/CPU-s" "flink rows/CPU-s" ratio
for q in "${queries[@]}"; do
  cpu=$(flink_cpu "$q" "$file")
  net=$(echo "$cpu - $startup" | bc)
  eddy=$(awk -v q="$q" '$1 == "peer" && $2 == q { for (i = 1; i < NF; i++) if ($(i+1) == "rows/CPU-s") print $i }' "$eddy_out")
  flink=$(echo "$bids / $net" | bc)
  printf '%-7s %14.0f %14.0f %7.2fx   (flink JVM %s CPU-s, %s net)\n' "$q" "$eddy" "$flink" \
    "$(echo "scale=2; $eddy / $flink" | bc)" "$cpu" "$net"
done
rm -f "$eddy_out"
