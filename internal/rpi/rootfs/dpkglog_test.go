package rootfs

import (
	"strings"
	"testing"
	"time"
)

func TestDpkgTimes(t *testing.T) {
	log := `2026-11-30 22:42:00 startup archives unpack
2026-11-30 22:42:01 install python3:arm64 <none> 3.11.2-1+b1
2026-11-30 22:42:03 status unpacked python3:arm64 3.11.2-1+b1
2026-11-30 22:43:00 startup packages configure
2026-11-30 22:43:01 configure python3:arm64 3.11.2-1+b1 <none>
2026-11-30 22:44:31 status installed python3:arm64 3.11.2-1+b1
2026-11-30 22:44:41 status installed cloud-init:all 22.4.2-1
2026-11-30 22:44:42 trigproc man-db:arm64 2.11.2-2 <none>
not a dpkg line
`
	got, total, err := DpkgTimes(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := []PackageTime{{"python3", 94 * time.Second}, {"cloud-init", 10 * time.Second}, {"man-db", time.Second}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: %v, want %v", i, got[i], want[i])
		}
	}
	if total != 2*time.Minute+42*time.Second {
		t.Errorf("total %s", total)
	}
	if line := SlowestLine(got, total, 2); line != "dpkg ran for 2m42s; slowest: python3 1m34s, cloud-init 10s" {
		t.Errorf("%q", line)
	}
}
