package image

import "testing"

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 1536: "1.5 KiB", 4 << 30: "4.0 GiB", 1288490188: "1.2 GiB", 3 << 20: "3.0 MiB", 2 << 40: "2.0 TiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
