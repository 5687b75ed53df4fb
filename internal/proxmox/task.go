package proxmox

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// UPID is a parsed Proxmox task id:
// UPID:node:pid:pstart:starttime:type:id:user: (pve-common PVE/UPID.pm).
type UPID struct {
	Raw       string
	Node      string
	PID       int64
	PStart    int64
	StartTime time.Time
	Type      string // qmcreate, qmtemplate, download, qmclone, ...
	ID        string // e.g. the VMID
	User      string
}

// ParseUPID parses a task id.
func ParseUPID(s string) (UPID, error) {
	f := strings.Split(s, ":")
	// "UPID", node, pid, pstart, starttime, type, id, user, "" (trailing ':')
	if len(f) < 9 || f[0] != "UPID" || f[1] == "" {
		return UPID{}, fmt.Errorf("%q is not a Proxmox task id (UPID:node:pid:pstart:starttime:type:id:user:)", s)
	}
	// The user part may itself contain ':' in theory; join what is left.
	user := strings.Join(f[7:len(f)-1], ":")
	u := UPID{Raw: s, Node: f[1], Type: f[5], ID: f[6], User: user}
	var err error
	if u.PID, err = strconv.ParseInt(f[2], 16, 64); err != nil {
		return UPID{}, fmt.Errorf("task id %q: pid %q is not hexadecimal", s, f[2])
	}
	if u.PStart, err = strconv.ParseInt(f[3], 16, 64); err != nil {
		return UPID{}, fmt.Errorf("task id %q: pstart %q is not hexadecimal", s, f[3])
	}
	st, err := strconv.ParseInt(f[4], 16, 64)
	if err != nil {
		return UPID{}, fmt.Errorf("task id %q: start time %q is not hexadecimal", s, f[4])
	}
	u.StartTime = time.Unix(st, 0)
	return u, nil
}

// TaskStatus is GET /nodes/{node}/tasks/{upid}/status.
type TaskStatus struct {
	UPID       string `json:"upid"`
	Node       string `json:"node"`
	Type       string `json:"type"`
	ID         string `json:"id"`
	User       string `json:"user"`
	Status     string `json:"status"`     // running | stopped
	ExitStatus string `json:"exitstatus"` // OK, "WARNINGS: n", or the error text
}

// OK says whether a stopped task succeeded (PVE: exitstatus OK or WARNINGS).
func (t TaskStatus) OK() bool {
	return t.ExitStatus == "OK" || strings.HasPrefix(t.ExitStatus, "WARNINGS")
}

// TaskError is a task that ended with an error, or did not end in time.
type TaskError struct {
	UPID       UPID
	ExitStatus string   // the task's own error text; empty on a timeout
	Log        []string // the last lines of the task log
	Timeout    time.Duration
}

func (e *TaskError) Error() string {
	what := fmt.Sprintf("task %s on %s", e.UPID.Type, e.UPID.Node)
	if e.UPID.ID != "" {
		what = fmt.Sprintf("task %s %s on %s", e.UPID.Type, e.UPID.ID, e.UPID.Node)
	}
	var b strings.Builder
	if e.Timeout > 0 {
		fmt.Fprintf(&b, "%s still running after %s (it keeps running on the host: see `pvenode task status %s`)", what, e.Timeout, e.UPID.Raw)
	} else {
		fmt.Fprintf(&b, "%s failed: %s", what, e.ExitStatus)
	}
	if len(e.Log) > 0 {
		b.WriteString("\n  task log (last lines):")
		for _, l := range e.Log {
			b.WriteString("\n    ")
			b.WriteString(l)
		}
	}
	return b.String()
}

// TaskStatus reads a task's status once.
func (c *Client) TaskStatus(ctx context.Context, upid string) (TaskStatus, error) {
	u, err := ParseUPID(upid)
	if err != nil {
		return TaskStatus{}, err
	}
	var st TaskStatus
	err = c.Get(ctx, Path("nodes", u.Node, "tasks", upid, "status"), nil, &st)
	return st, err
}

// TaskLog returns the last n lines of a task's log.
func (c *Client) TaskLog(ctx context.Context, upid string, n int) ([]string, error) {
	u, err := ParseUPID(upid)
	if err != nil {
		return nil, err
	}
	var lines []struct {
		N int    `json:"n"`
		T string `json:"t"`
	}
	// PVE returns 50 lines by default; ask for plenty and keep the tail.
	q := url.Values{"start": {"0"}, "limit": {"5000"}}
	if err := c.Get(ctx, Path("nodes", u.Node, "tasks", upid, "log"), q, &lines); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if strings.TrimSpace(l.T) != "" {
			out = append(out, c.scrubString(l.T))
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

// WaitTask polls a task until it stops and returns nil if it succeeded, a
// *TaskError with the task's exit status and the tail of its log if it
// failed, or a *TaskError with Timeout set if it is still running after
// timeout (0: no limit but ctx). The first poll is immediate.
func (c *Client) WaitTask(ctx context.Context, upid string, timeout time.Duration) error {
	u, err := ParseUPID(upid)
	if err != nil {
		return err
	}
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	wait := 50 * time.Millisecond
	for {
		st, err := c.TaskStatus(ctx, upid)
		if err != nil {
			return fmt.Errorf("wait for task %s %s on %s: %w", u.Type, u.ID, u.Node, err)
		}
		if st.Status == "stopped" || st.ExitStatus != "" {
			if st.OK() {
				return nil
			}
			te := &TaskError{UPID: u, ExitStatus: st.ExitStatus}
			te.Log, _ = c.TaskLog(ctx, upid, 10)
			return te
		}
		pause := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			pause.Stop()
			return fmt.Errorf("wait for task %s %s on %s: %w", u.Type, u.ID, u.Node, ctx.Err())
		case <-deadline:
			pause.Stop()
			te := &TaskError{UPID: u, Timeout: timeout}
			// A fresh context: the caller's may be close to its end too.
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			te.Log, _ = c.TaskLog(lctx, upid, 10)
			cancel()
			return te
		case <-pause.C:
		}
		if wait *= 2; wait > c.poll {
			wait = c.poll
		}
	}
}

// IsTaskTimeout reports whether err is a task that did not end in time.
func IsTaskTimeout(err error) bool {
	var te *TaskError
	return errors.As(err, &te) && te.Timeout > 0
}
