#!/usr/bin/env bash
# Writes the committed seed corpora in fuzz/seeds/ from the project's own data (needs jq):
#   parse_hooks: the `input` of every 8th LINQ SDK hook case (valid and invalid alike);
#   parse_event: every line of examples/events.ndjson.
# verify_signature takes structured input (arbitrary) and starts from an empty corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf fuzz/seeds/parse_hooks fuzz/seeds/parse_event
mkdir -p fuzz/seeds/parse_hooks fuzz/seeds/parse_event
jq -r 'select((.id | split("-")[1] | tonumber) % 8 == 0) | [.id, (.input | @base64)] | @tsv' \
    tests/fixtures/linq-sdk/hook-cases.jsonl |
    while IFS=$'\t' read -r id input; do
        printf '%s' "$input" | base64 -d > "fuzz/seeds/parse_hooks/case-$id.json"
    done
n=0
while IFS= read -r line; do
    n=$((n + 1))
    printf '%s' "$line" > "fuzz/seeds/parse_event/example-$(printf %02d "$n").json"
done < examples/events.ndjson
# Timestamps at the edges: a year before 0000 through an offset, the six-digit form, digits
# below the millisecond before 1970 (both once written wrongly), and the last second of jiff's
# range (once a panic); see the README's "Fuzzing".
edge='{"event": "new_plan", "plan_id": "p", "timestamp": "%s"}'
printf "$edge" "0000-01-01T00:00:00+00:01" > fuzz/seeds/parse_event/edge-01.json
printf "$edge" "-000001-01-01T00:00:00Z" > fuzz/seeds/parse_event/edge-02.json
printf "$edge" "1969-12-31T23:59:59.9999Z" > fuzz/seeds/parse_event/edge-03.json
printf "$edge" "9999-12-30T22:00:00.5Z" > fuzz/seeds/parse_event/edge-04.json
echo "parse_hooks: $(ls fuzz/seeds/parse_hooks | wc -l) seeds, parse_event: $(ls fuzz/seeds/parse_event | wc -l) seeds"
