package cli

import (
	"os"
	"strings"
	"testing"
)

// TestRunbookOrderWrittenOnce: the help texts and the README list the
// stages in the order of the pipeline apply runs (stages.Apply), so a
// stage added or moved there shows up everywhere or fails here.
func TestRunbookOrderWrittenOnce(t *testing.T) {
	order := runbook()
	if !strings.HasPrefix(order, "validate → render → ") || !strings.HasSuffix(order, " → swarm → verify") {
		t.Fatalf("runbook() = %q", order)
	}
	for _, args := range [][]string{{"--help"}, {"apply", "--help"}, {"plan", "--help"}} {
		code, out, _ := run(t, args...)
		if code != 0 || !strings.Contains(out, order) {
			t.Errorf("provision %s: exit %d, lacks %q:\n%s", strings.Join(args, " "), code, order, out)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "\n    "+order+"\n") {
		t.Errorf("README.md does not list the runbook as the pipeline runs it:\n    %s", order)
	}
}
