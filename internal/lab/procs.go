package lab

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one process as /proc shows it.
type proc struct {
	pid     int
	cmdline string // arguments joined by spaces
	net     string // "net:[inode]"
	uts     string // "uts:[inode]"
}

// listProcs reads every process in /proc. Processes that exit meanwhile
// are skipped.
func listProcs() ([]proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var ps []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		p, ok := readProc(pid)
		if ok {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

// readProc reads one process; ok is false for a process gone or a zombie.
func readProc(pid int) (proc, bool) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	raw, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil || len(raw) == 0 {
		return proc{}, false // gone, kernel thread or zombie
	}
	p := proc{pid: pid, cmdline: string(bytes.TrimRight(bytes.ReplaceAll(raw, []byte{0}, []byte{' '}), " "))}
	p.net, _ = os.Readlink(filepath.Join(dir, "ns", "net"))
	p.uts, _ = os.Readlink(filepath.Join(dir, "ns", "uts"))
	return p, true
}

// nsID is the "type:[inode]" a /proc/PID/ns link shows for a namespace
// bound at path, or "" when nothing is bound there.
func nsID(kind, path string) string {
	var st syscall.Stat_t
	if !isNsfs(path) || syscall.Stat(path, &st) != nil {
		return ""
	}
	return kind + ":[" + strconv.FormatUint(st.Ino, 10) + "]"
}

// pidFromFile returns the live process whose pid is in file and whose
// command line contains mark (so a recycled pid is never taken for ours).
func pidFromFile(file, mark string) (int, bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, false
	}
	p, ok := readProc(pid)
	if !ok || !strings.Contains(p.cmdline, mark) {
		return 0, false
	}
	return pid, true
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	_, ok := readProc(pid)
	return ok
}

// waitGone waits until none of pids is alive, or ctx or timeout ends; it
// returns the pids still alive.
func waitGone(ctx context.Context, pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return left
		}
		pids = left
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// signal sends sig to pid; a process already gone is not an error.
func signal(pid int, sig syscall.Signal) error {
	err := syscall.Kill(pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}
