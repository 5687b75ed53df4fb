package rootfs

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// PackageTime is how long dpkg spent on one package (unpacking,
// configuring and its triggers), from dpkg.log.
type PackageTime struct {
	Package string
	Took    time.Duration
}

// DpkgTimes reads a dpkg.log and attributes the time between each line and
// the one before it to the package the line names (dpkg logs each step
// when it is done, to the second): the packages that took longest first,
// and the time from the first line to the last. Under qemu-user this is
// where a cold build's time goes.
func DpkgTimes(r io.Reader) ([]PackageTime, time.Duration, error) {
	per := map[string]time.Duration{}
	var first, prev time.Time
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		t, err := time.Parse("2006-01-02 15:04:05", f[0]+" "+f[1])
		if err != nil {
			continue
		}
		// "status installed pkg:arch ver", "configure pkg:arch ...",
		// "trigproc pkg:arch ...", "startup archives unpack".
		pkg := f[3]
		if f[2] == "status" && len(f) >= 5 {
			pkg = f[4]
		}
		if f[2] == "startup" {
			pkg = ""
		}
		pkg, _, _ = strings.Cut(pkg, ":")
		if first.IsZero() {
			first = t
		}
		if !prev.IsZero() && pkg != "" && t.After(prev) {
			per[pkg] += t.Sub(prev)
		}
		prev = t
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("read dpkg.log: %w", err)
	}
	out := make([]PackageTime, 0, len(per))
	for p, d := range per {
		out = append(out, PackageTime{p, d})
	}
	slices.SortFunc(out, func(a, b PackageTime) int {
		return cmp.Or(cmp.Compare(b.Took, a.Took), cmp.Compare(a.Package, b.Package))
	})
	return out, prev.Sub(first), nil
}

// SlowestLine says in one line where dpkg's time went: the total and the n
// slowest packages.
func SlowestLine(times []PackageTime, total time.Duration, n int) string {
	var parts []string
	for _, t := range times[:min(n, len(times))] {
		parts = append(parts, fmt.Sprintf("%s %s", t.Package, t.Took))
	}
	return fmt.Sprintf("dpkg ran for %s; slowest: %s", total, strings.Join(parts, ", "))
}
