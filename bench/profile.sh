#!/usr/bin/env bash
# Profiles `linq-hooks serve` in one benchmark section: `perf record -a -g` (the whole machine,
# so the harness's own share shows too) for as long as the section's Nth `serve` process runs.
#
#   bench/profile.sh SECTION [N] [OUT]     e.g. bench/profile.sh latency 2 /tmp/latency.perf
#   perf report -i OUT --no-children --sort pid,comm -g none    # who took the CPU
#
# Needs perf and a release build (`cargo build --release -p linq-hooks -p linq-hooks-bench`).
# The section's figures go to /tmp/profile-SECTION.md, its log to /tmp/profile-SECTION.log.
set -euo pipefail
section=${1:?usage: bench/profile.sh SECTION [N] [OUT]}
nth=${2:-1}
out=${3:-/tmp/$section.perf}
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/target/release/linq-hooks-bench" --root "$root" --only "$section" \
    --out "/tmp/profile-$section.md" > "/tmp/profile-$section.log" 2>&1 &
bench=$!
seen=0 last="" pid=""
while kill -0 "$bench" 2>/dev/null; do
    pid=$(pgrep -f "$root/target/release/linq-hooks serve" | head -1 || true)
    if [ -n "$pid" ] && [ "$pid" != "$last" ]; then
        seen=$((seen + 1)) last=$pid
        [ "$seen" -ge "$nth" ] && break
    fi
    sleep 0.05
done
[ -n "$pid" ] || { echo "no serve process seen" >&2; exit 1; }
perf record -F 299 -g -a -o "$out" -- sh -c "while kill -0 $pid 2>/dev/null; do sleep 0.1; done" \
    > /dev/null 2>&1
wait "$bench"
echo "serve (pid $pid) profiled into $out; the section's figures: /tmp/profile-$section.md"
