package proxmox

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Property is a parsed PVE property string such as
// "local-lvm:vm-4101-disk-0,iothread=1,size=32G" or
// "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0": the first item (a bare value, or
// the first key=value pair) and the options after it.
type Property struct {
	// Key is the first item's key when it is key=value ("virtio"), else "".
	Key string
	// Value is the first item's value ("local-lvm:vm-4101-disk-0", the MAC).
	Value string
	// Opts are the remaining key=value items.
	Opts map[string]string
}

// ParseProperty splits a property string. A bare first item (a volume) is
// Value; a first item that is key=value sets Key and Value.
func ParseProperty(s string) Property {
	p := Property{Opts: map[string]string{}}
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, hasEq := strings.Cut(item, "=")
		if i == 0 {
			if hasEq {
				p.Key, p.Value = k, v
			} else {
				p.Value = item
			}
			continue
		}
		if !hasEq {
			// PVE allows a default key anywhere; keep it under "".
			p.Opts[""] = item
			continue
		}
		p.Opts[k] = v
	}
	return p
}

// Storage is the storage part of a volume value ("local-lvm" of
// "local-lvm:vm-100-disk-0"), or "" when the value is not a volume.
func (p Property) Storage() string {
	if p.Key != "" {
		return ""
	}
	st, _, ok := strings.Cut(p.Value, ":")
	if !ok {
		return ""
	}
	return st
}

// IsCloudInit says whether a drive value is a cloud-init drive.
func (p Property) IsCloudInit() bool {
	_, vol, _ := strings.Cut(p.Value, ":")
	return vol == "cloudinit" || strings.HasSuffix(vol, "-cloudinit") || strings.Contains(vol, "-cloudinit.")
}

// IsCDROM says whether a drive is a CD-ROM (a cloud-init drive is one too).
func (p Property) IsCDROM() bool {
	return p.Opts["media"] == "cdrom" || p.Value == "cdrom" || p.Value == "none"
}

// diskSlot matches the keys of drive slots in a VM config.
var diskSlot = regexp.MustCompile(`^(ide|sata|scsi|virtio)[0-9]+$`)

// IsDiskSlot says whether a config key is a drive slot (ide0, scsi0, ...).
func IsDiskSlot(key string) bool { return diskSlot.MatchString(key) }

// sizeRE is a PVE disk size: 32G, 3584M, 1T, 1024 (bytes? PVE: K default for
// some; we treat a bare number as bytes).
var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)([KMGTP]?)B?$`)

// ParseSize converts a size such as "32G" or "3584M" (binary units, as PVE
// and the inventory use them) into bytes.
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(s)))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size like 32G", s)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size like 32G", s)
	}
	mult := map[string]float64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}[m[2]]
	return int64(f * mult), nil
}

// FormatSize writes bytes in binary units with one decimal: 96.0 GiB.
func FormatSize(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTP"[exp])
}
