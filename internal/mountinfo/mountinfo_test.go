package mountinfo

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{`/run/a\040b`, "/run/a b"},
		{`/plain`, "/plain"},
		{`/tab\011x`, "/tab\tx"},
		{`/bad\09x`, `/bad\09x`},
		{`/mnt/trailing\040`, "/mnt/trailing "},
		{`/short\04`, `/short\04`},
	}
	for _, tt := range tests {
		if got := Unescape(tt.in); got != tt.want {
			t.Errorf("Unescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	in := `22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
35 22 0:31 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw
40 22 7:3 / /mnt/my\040card rw,relatime - vfat /dev/loop3p1 rw
short line
`
	got, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{Dev: "259:2", Point: "/", FSType: "ext4"},
		{Dev: "0:31", Point: "/sys/fs/cgroup", FSType: "cgroup2"},
		{Dev: "7:3", Point: "/mnt/my card", FSType: "vfat"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Parse:\n got %+v\nwant %+v", got, want)
	}
}

func TestReadSelf(t *testing.T) {
	ms, err := Read("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("read /proc/self/mountinfo: %v", err)
	}
	for _, m := range ms {
		if m.Point == "/" {
			return
		}
	}
	t.Fatalf("no mount on / in /proc/self/mountinfo: %+v", ms)
}

func TestReadMissing(t *testing.T) {
	if _, err := Read(t.TempDir() + "/none"); !os.IsNotExist(err) {
		t.Fatalf("Read of a missing file: %v", err)
	}
}
