package pvesim

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// task is a PVE worker task.
type task struct {
	upid, node, typ, id, user string
	pid, pstart               int
	start                     int64

	mu     sync.Mutex
	status string // running, stopped
	exit   string // OK, or the error
	end    int64
	lines  []string
	done   chan struct{}
}

func (t *task) logf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, fmt.Sprintf(format, args...))
}

// taskSpec is a task to run: run does the work when the task's duration
// is over; onFail undoes what the handler prepared when the task fails;
// release runs last either way (e.g. to drop a lock).
type taskSpec struct {
	node, typ, id, user string
	run                 func(ctx context.Context, t *task) error
	onFail              func()
	release             func()
}

// startTask registers and starts a task and returns its UPID. With
// TaskDuration 0 the task has finished when startTask returns, so the
// first status poll sees "stopped".
func (s *Sim) startTask(spec taskSpec) string {
	s.mu.Lock()
	s.pidCounter++
	now := s.now()
	t := &task{node: spec.node, typ: spec.typ, id: spec.id, user: spec.user,
		pid: s.pidCounter, pstart: 1000000 + s.pidCounter*7, start: now.Unix(),
		status: "running", done: make(chan struct{})}
	t.upid = fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", t.node, t.pid, t.pstart, t.start, t.typ, t.id, t.user)
	s.tasks[t.upid] = t
	s.taskOrder = append(s.taskOrder, t.upid)
	var failMsg string
	for i, f := range s.failures {
		if f.match(spec.typ, spec.id) {
			failMsg = f.msg
			s.failures = append(s.failures[:i:i], s.failures[i+1:]...)
			break
		}
	}
	s.mu.Unlock()

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(t.done)
		err := s.runTask(spec, t, failMsg)
		if err != nil && spec.onFail != nil {
			spec.onFail()
		}
		if spec.release != nil {
			spec.release()
		}
		t.mu.Lock()
		t.status = "stopped"
		t.end = s.now().Unix()
		if err != nil {
			t.exit = strings.TrimRight(err.Error(), "\n")
			t.lines = append(t.lines, "TASK ERROR: "+t.exit)
		} else {
			t.exit = "OK"
			t.lines = append(t.lines, "TASK OK")
		}
		t.mu.Unlock()
		s.log.Debug("pvesim: task done", "upid", t.upid, "exitstatus", t.exit)
	}()
	if s.opts.TaskDuration <= 0 {
		<-t.done
	}
	return t.upid
}

func (s *Sim) runTask(spec taskSpec, t *task, failMsg string) error {
	if d := s.opts.TaskDuration; d > 0 {
		select {
		case <-time.After(d):
		case <-s.ctx.Done():
			return fmt.Errorf("interrupted by signal")
		}
	}
	if failMsg != "" {
		return fmt.Errorf("%s", failMsg)
	}
	if spec.run == nil {
		return nil
	}
	return spec.run(s.ctx, t)
}

// acquireLock takes a VM's config file lock, waiting up to LockTimeout
// like PVE's lock_config, and returns its release.
func (s *Sim) acquireLock(ctx context.Context, vmid int) (func(), error) {
	s.mu.Lock()
	ch := s.locks[vmid]
	if ch == nil {
		ch = make(chan struct{}, 1)
		s.locks[vmid] = ch
	}
	s.mu.Unlock()
	timer := time.NewTimer(s.opts.LockTimeout)
	defer timer.Stop()
	select {
	case ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-ch }) }, nil
	case <-timer.C:
	case <-ctx.Done():
	}
	return nil, errf(http.StatusInternalServerError, "can't lock file '/var/lock/qemu-server/lock-%d.conf' - got timeout", vmid)
}

// addVMUnlock puts v into the cluster, releases s.mu (held by the caller)
// and takes v's config lock; when the lock cannot be had, v is removed again.
func (s *Sim) addVMUnlock(ctx context.Context, v *simVM) (func(), error) {
	s.vms[v.vmid] = v
	s.mu.Unlock()
	release, err := s.acquireLock(ctx, v.vmid)
	if err != nil {
		s.mu.Lock()
		delete(s.vms, v.vmid)
		s.mu.Unlock()
		return nil, err
	}
	return release, nil
}

func (s *Sim) taskStatus(r *request) (any, error) {
	t, err := s.findTask(r)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]any{"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart,
		"starttime": t.start, "type": t.typ, "id": t.id, "user": t.user, "status": t.status}
	if t.status == "stopped" {
		out["exitstatus"] = t.exit
	}
	return out, nil
}

func (s *Sim) taskLog(r *request) (any, error) {
	t, err := s.findTask(r)
	if err != nil {
		return nil, err
	}
	start, limit := r.int("start"), 50
	if r.has("limit") {
		limit = r.int("limit")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []map[string]any{}
	for i, line := range t.lines {
		if i < start || (limit > 0 && len(out) >= limit) {
			continue
		}
		out = append(out, map[string]any{"n": i + 1, "t": line})
	}
	return out, nil
}

func (s *Sim) findTask(r *request) (*task, error) {
	upid := r.str("upid")
	s.mu.Lock()
	t := s.tasks[upid]
	s.mu.Unlock()
	if t == nil || t.node != r.str("node") {
		if !strings.HasPrefix(upid, "UPID:") || strings.Count(upid, ":") < 8 {
			return nil, errf(http.StatusInternalServerError, "unable to parse worker upid '%s'", upid)
		}
		return nil, errf(http.StatusInternalServerError, "no such task")
	}
	return t, nil
}

func (s *Sim) taskList(r *request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for i := len(s.taskOrder) - 1; i >= 0; i-- {
		t := s.tasks[s.taskOrder[i]]
		if t.node != r.str("node") {
			continue
		}
		t.mu.Lock()
		e := map[string]any{"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart,
			"starttime": t.start, "type": t.typ, "id": t.id, "user": t.user}
		if t.status == "stopped" {
			e["status"] = t.exit
			e["endtime"] = t.end
		}
		t.mu.Unlock()
		out = append(out, e)
	}
	return out, nil
}
