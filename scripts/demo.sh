#!/usr/bin/env bash
# make demo: validate and render the real lab's inventory and show the plan.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/provision
inv=inventory/example.yaml
out=out/demo
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "provision validate -i $inv"
$bin validate -i "$inv"

say "provision inventory -i $inv   (first lines)"
$bin inventory -i "$inv" | head -n 8
echo "   ... ($($bin inventory -i "$inv" -o json | grep -c '"name"') nodes)"

say "provision render -i $inv -o $out"
$bin render -i "$inv" -o "$out" --state-dir "$out/state"
echo "   $(ls "$out" | grep -vc state) node directories; mgr-1's user-data starts:"
head -n 12 "$out/mgr-1/user-data" | sed 's/^/   | /'

say "provision plan -i $inv"
$bin plan -i "$inv" -o "$out" --state-dir "$out/state"
