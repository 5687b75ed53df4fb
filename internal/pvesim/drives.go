package pvesim

import (
	"fmt"
	"strconv"
	"strings"
)

// diskSlotList is computed once; callers must not modify it.
var diskSlotList = buildDiskSlots()

// diskSlots are the drive slots PVE knows, in PVE's order (read-only).
func diskSlots() []string { return diskSlotList }

func buildDiskSlots() []string {
	var out []string
	for _, bus := range []struct {
		name string
		max  int
	}{{"ide", 3}, {"sata", 5}, {"scsi", 30}, {"virtio", 15}} {
		for i := 0; i <= bus.max; i++ {
			out = append(out, bus.name+strconv.Itoa(i))
		}
	}
	return append(out, "efidisk0", "tpmstate0")
}

// isDiskSlot reports whether key is a drive slot.
func isDiskSlot(key string) bool {
	return reBootDisk.MatchString(key)
}

// propValue returns one key of a property string ("" when absent); the
// default key (the first field without "=") is not returned.
func propValue(ps, key string) string {
	for part := range strings.SplitSeq(ps, ",") {
		if k, v, ok := strings.Cut(part, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// parseSize is PVE::JSONSchema::parse_size: "32G" → bytes; -1 if invalid.
func parseSize(s string) int64 {
	m := reDiskSize.FindStringSubmatch(s)
	if m == nil {
		return -1
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	switch m[3] {
	case "K":
		f *= 1 << 10
	case "M":
		f *= 1 << 20
	case "G":
		f *= 1 << 30
	case "T":
		f *= 1 << 40
	}
	return int64(f)
}

// formatSize is PVE::JSONSchema::format_size: the largest unit that
// divides the size exactly.
func formatSize(size int64) string {
	units := []string{"K", "M", "G", "T"}
	unit := ""
	for _, u := range units {
		if size%1024 != 0 {
			break
		}
		size /= 1024
		unit = u
	}
	return fmt.Sprintf("%d%s", size, unit)
}
