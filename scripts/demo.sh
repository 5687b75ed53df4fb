#!/usr/bin/env bash
# make demo: installs what it needs, then runs provision's main job on an
# emulated lab: inventory/local.yaml's 15 nodes (3 managers, 6 VM workers,
# 6 Pis), each a network namespace with its own dockerd and sshd; forms the
# swarm, verifies it and runs a small stack on it. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bin/provision
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo runs an emulated lab of network namespaces and needs root: sudo make demo" >&2
  exit 1
fi
missing=()
for tool in dockerd docker sshd ip nsenter unshare cloud-init busybox; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages (missing: ${missing[*]})"
  scripts/install-deps.sh
fi
[ -x "$bin" ] || make build

say "the real lab: provision validate -i inventory/example.yaml"
$bin validate -i inventory/example.yaml
$bin render -i inventory/example.yaml -o out/example-seeds --state-dir out/example-state 2>&1 | tail -n 1
echo "   159 cloud-init seeds in out/example-seeds/ (e.g. out/example-seeds/mgr-1/user-data)"

inv=inventory/local.yaml
say "the emulated lab: provision lab up -i $inv"
$bin lab up -i "$inv"

say "provision swarm -i $inv"
$bin swarm -i "$inv"

say "provision swarm -i $inv   (again: nothing to change)"
$bin swarm -i "$inv" >/dev/null

say "provision verify -i $inv"
$bin verify -i "$inv"

# The stack is deployed the way an admin would: the docker CLI on a manager,
# over SSH with the key and host keys provision uses.
mgr=$($bin inventory -i "$inv" -o json | sed -n 's/.*"ip": "\(198[^"]*\)".*/\1/p' | head -n 1)
ssh_mgr() {
  ssh -i .lab/id_ed25519 -o UserKnownHostsFile=.provision/local/known_hosts -o StrictHostKeyChecking=yes \
      -o BatchMode=yes -o LogLevel=ERROR "provision@$mgr" "$@"
}
say "docker stack deploy -c scripts/demo-stack.yml demo   (on mgr-1 over SSH)"
ssh_mgr docker stack deploy --resolve-image never -c - demo < scripts/demo-stack.yml
for _ in $(seq 1 60); do
  running=$(ssh_mgr docker service ls --filter name=demo_ --format '{{.Replicas}}' | tr '\n' ' ')
  case "$running" in *0/*|*1/6*|*2/6*|*3/6*|*4/6*|*5/6*|"") sleep 1 ;; *) break ;; esac
done
ssh_mgr docker stack services demo
echo
ssh_mgr "docker service ps demo_echo --format '{{.Name}}  on {{.Node}}  {{.CurrentState}}'"
sleep 4
say "the probe on a VM worker reaches the echo servers on the Pis over the overlay"
ssh_mgr docker service logs --raw --tail 5 demo_probe

say "done"
cat <<MSG
The lab keeps running. Look around:
  $bin lab status -i $inv
  ssh -i .lab/id_ed25519 -o UserKnownHostsFile=.provision/local/known_hosts provision@$mgr docker node ls
Every step of every run, at debug level (tokens redacted):
  .provision/local/provision.log
Tear it all down (namespaces, daemons, mounts, files):
  $bin lab down -i $inv
MSG
