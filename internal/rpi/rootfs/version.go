package rootfs

import (
	"strconv"
	"strings"
)

// CompareVersions orders kernel version strings with runs of digits
// compared as numbers: 6.1.0-9-arm64 < 6.1.0-10-arm64 < 6.12.0-1-arm64.
func CompareVersions(a, b string) int {
	for a != "" && b != "" {
		da, ra := leadingDigits(a)
		db, rb := leadingDigits(b)
		switch {
		case da != "" && db != "":
			na, _ := strconv.ParseUint(da, 10, 64)
			nb, _ := strconv.ParseUint(db, 10, 64)
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
			a, b = ra, rb
		case a[0] != b[0]:
			return strings.Compare(a[:1], b[:1])
		default:
			a, b = a[1:], b[1:]
		}
	}
	return strings.Compare(a, b)
}

func leadingDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}
