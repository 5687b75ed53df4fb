// Package mountinfo reads /proc/self/mountinfo (proc(5)).
package mountinfo

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of a mountinfo file.
type Mount struct {
	Dev    string // major:minor of the mounted file system
	Point  string // mount point, unescaped
	FSType string // empty when the line has no "-" separator
}

// Read parses the mountinfo file at path (/proc/self/mountinfo).
func Read(path string) ([]Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads mountinfo lines from r. Lines with fewer than five fields
// are skipped.
func Parse(r io.Reader) ([]Mount, error) {
	var ms []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent maj:min root point options [optional...] - fstype source super
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		m := Mount{Dev: fields[2], Point: Unescape(fields[4])}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				m.FSType = fields[i+1]
				break
			}
		}
		ms = append(ms, m)
	}
	return ms, sc.Err()
}

// Unescape decodes the octal escapes (\040 for a space) the kernel writes
// in mountinfo and /proc/swaps paths.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
