package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
)

// Limits on the names the lab derives. Linux interface names hold at most
// 15 bytes (IFNAMSIZ 16 with the NUL); unix socket paths at most 107.
const (
	maxIfName     = 15
	maxSocketPath = 107
	// MaxPrefixLen keeps "<prefix>-<6 hex>" veth names within IFNAMSIZ.
	MaxPrefixLen = 8
)

var (
	prefixRE   = regexp.MustCompile(`^[a-z][a-z0-9]{1,7}$`)
	nodeNameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
)

// PrefixFor derives a stable lab prefix from a lab's name: "pl" and six hex
// digits of its SHA-256, so `lab down` finds what `lab up` made.
func PrefixFor(labName string) string {
	h := sha256.Sum256([]byte(labName))
	return "pl" + hex.EncodeToString(h[:3])
}

func checkPrefix(p string) error {
	if !prefixRE.MatchString(p) {
		return fmt.Errorf("lab prefix %q: want 2 to %d lower-case letters and digits, starting with a letter", p, MaxPrefixLen)
	}
	return nil
}

func checkNodeName(name string) error {
	if !nodeNameRE.MatchString(name) {
		return fmt.Errorf("node name %q is not a valid hostname label", name)
	}
	return nil
}

// bridgeName is the lab's Linux bridge on the host.
func bridgeName(prefix string) string { return prefix + "-br" }

// netnsName is a node's network namespace under /run/netns.
func netnsName(prefix, node string) string { return prefix + "-" + node }

// cgroupName is the (relative) cgroup parent of a node's containers.
func cgroupName(prefix, node string) string { return prefix + "-" + node }

// vethName picks the host side of a node's veth pair: the prefix and six
// hex digits of a hash of the node's name, rehashed on the rare collision
// with a name in taken. The result always fits IFNAMSIZ.
func vethName(prefix, node string, taken map[string]bool) string {
	seed := node
	for i := 0; ; i++ {
		h := sha256.Sum256([]byte(seed))
		name := prefix + "-" + hex.EncodeToString(h[:3])
		if !taken[name] && name != bridgeName(prefix) {
			return name
		}
		seed = fmt.Sprintf("%s#%d", node, i+1)
	}
}
