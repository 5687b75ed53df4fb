#!/usr/bin/env bash
# Measures the emulated lab at scale: time of `lab up`, memory of its
# processes (RSS and PSS sums, MemAvailable drop) and time of `lab down`,
# for each node count given (default 15 and 60). Needs root, like the lab.
#
#   scripts/lab-measure.sh            # 15 and 60 nodes
#   scripts/lab-measure.sh 15 60 144  # any sizes up to 250
#   PROVISION_LAB_CONCURRENCY=4 scripts/lab-measure.sh 60
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "lab-measure: lab up needs root; run: sudo $0 $*" >&2
  exit 1
fi
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(15 60)
IFS=, ; scale="${sizes[*]}" ; unset IFS
PROVISION_LAB_SCALE="$scale" go test -count=1 -timeout 30m -run '^TestIntegrationScale$' -v ./internal/lab \
  | grep -E 'scale_test.go|^(--- )?(PASS|FAIL|ok)'
