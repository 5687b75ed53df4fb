package state_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/state"
)

// TestKill9WhileSaving: a process killed with SIGKILL while it saves the
// state file over and over leaves a state file that loads, every time, with
// one whole generation of facts (never a mix or a torn file).
func TestKill9WhileSaving(t *testing.T) {
	if dir := os.Getenv("PROVISION_STATE_SAVER"); dir != "" {
		saveForever(dir)
		return
	}
	dir := t.TempDir()
	for round := range 25 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9WhileSaving$")
		cmd.Env = append(os.Environ(), "PROVISION_STATE_SAVER="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+rand.IntN(60)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		s, err := state.Load(dir, "kill-lab")
		if err != nil {
			t.Fatalf("round %d: the state file does not load after kill -9: %v", round, err)
		}
		if len(s.Nodes) == 0 {
			continue // killed before its first save
		}
		gen := s.Nodes["node-0000"].SwarmNodeID
		for name, n := range s.Nodes {
			if n.SwarmNodeID != gen {
				t.Fatalf("round %d: %s is of generation %s, node-0000 of %s: a mixed file", round, name, n.SwarmNodeID, gen)
			}
		}
		if len(s.Nodes) != 2000 {
			t.Fatalf("round %d: %d nodes, want 2000", round, len(s.Nodes))
		}
	}
}

// saveForever saves a 2,000-node state again and again, each generation
// with its own number in every node, until killed.
func saveForever(dir string) {
	s := state.New("kill-lab")
	for gen := 0; ; gen++ {
		for i := range 2000 {
			n := s.Node(fmt.Sprintf("node-%04d", i))
			n.IP = "198.51.100." + strconv.Itoa(i%250)
			n.SwarmNodeID = strconv.Itoa(gen)
		}
		if err := s.Save(dir, time.Now()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
