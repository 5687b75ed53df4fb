package lab

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// cmdPath is the PATH every command the lab starts gets: the daemons look
// up their helpers (containerd, runc, iptables, modprobe) through it.
const cmdPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// CmdError is a command that failed: what ran, how it ended and what it said.
type CmdError struct {
	Cmd    string
	Err    error
	Output string
}

func (e *CmdError) Error() string {
	out := strings.TrimSpace(e.Output)
	if out == "" {
		return fmt.Sprintf("%s: %v", e.Cmd, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, out)
}

func (e *CmdError) Unwrap() error { return e.Err }

// run runs a command to completion and returns its combined output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	return runInput(ctx, "", name, args...)
}

// runInput is run with stdin.
func runInput(ctx context.Context, stdin, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = []string{cmdPath, "LC_ALL=C"}
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return out.String(), &CmdError{Cmd: strings.Join(append([]string{name}, args...), " "), Err: err, Output: out.String()}
	}
	return out.String(), nil
}
