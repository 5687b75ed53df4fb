package rootfs

import (
	"slices"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	want := []string{"6.1.0-9-arm64", "6.1.0-10-arm64", "6.1.0-57-arm64", "6.1.0-57-rt-arm64", "6.12.0-1-arm64"}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, CompareVersions)
	if !slices.Equal(got, want) {
		t.Errorf("sorted %q, want %q", got, want)
	}
	if CompareVersions("6.1.0-10-arm64", "6.1.0-10-arm64") != 0 {
		t.Error("equal versions differ")
	}
}
