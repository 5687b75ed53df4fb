package pvesim

// Power: start, stop, shutdown and reboot tasks.

import (
	"context"
	"fmt"
	"maps"
	"strings"
)

// powerOp runs start/stop/shutdown/reboot: checks, the VM's lock, a task.
func (s *Sim) powerOp(r *request, typ string, work func(ctx context.Context, v *simVM, t *task) error) (any, error) {
	node, vmid := r.str("node"), r.int("vmid")
	s.mu.Lock()
	v, err := s.loadVMLocked(node, vmid)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if r.bool("skiplock") && (r.userID != "root@pam" || strings.Contains(r.authID, "!")) {
		return nil, paramErr1("skiplock", "Only root may use this option.")
	}
	return s.vmTask(r, node, vmid, typ, func(ctx context.Context, t *task) error {
		if !r.bool("skiplock") {
			s.mu.Lock()
			err := checkConfLock(v)
			s.mu.Unlock()
			if err != nil {
				return err
			}
		}
		return work(ctx, v, t)
	})
}

// startVM marks a VM running after its cicustom snippets were found and
// the OnStart hook agreed.
func (s *Sim) startVM(ctx context.Context, v *simVM, ev VMEvent) error {
	s.mu.Lock()
	err := s.checkCICustomLocked(v.node, v.vmid, s.configView(v, false))
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if s.opts.OnStart != nil {
		if err := s.opts.OnStart(ctx, ev); err != nil {
			return fmt.Errorf("start failed: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v.running = true
	v.startedAt = s.now()
	// pending changes are applied at start
	maps.Copy(v.conf, v.pending)
	for k := range v.pendDel {
		delete(v.conf, k)
	}
	v.pending, v.pendDel = map[string]string{}, map[string]bool{}
	return nil
}

func (s *Sim) stopVM(ctx context.Context, v *simVM) error {
	s.mu.Lock()
	ev := s.vmEvent(v)
	s.mu.Unlock()
	if s.opts.OnStop != nil {
		if err := s.opts.OnStop(ctx, ev); err != nil {
			return fmt.Errorf("stop failed: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v.running = false
	return nil
}

func (s *Sim) postQemuStart(r *request) (any, error) {
	return s.powerOp(r, "qmstart", func(ctx context.Context, v *simVM, t *task) error {
		s.mu.Lock()
		if v.conf["template"] == "1" {
			s.mu.Unlock()
			return fmt.Errorf("you can't start a vm if it's a template")
		}
		if v.running {
			s.mu.Unlock()
			return fmt.Errorf("VM %d already running", v.vmid)
		}
		ev := s.vmEvent(v)
		s.mu.Unlock()
		return s.startVM(ctx, v, ev)
	})
}

func (s *Sim) postQemuStop(r *request) (any, error) {
	return s.powerOp(r, "qmstop", func(ctx context.Context, v *simVM, t *task) error {
		s.mu.Lock()
		running := v.running
		s.mu.Unlock()
		if !running {
			return nil // vm_stop of a stopped VM succeeds
		}
		return s.stopVM(ctx, v)
	})
}

func (s *Sim) postQemuShutdown(r *request) (any, error) {
	return s.powerOp(r, "qmshutdown", func(ctx context.Context, v *simVM, t *task) error {
		s.mu.Lock()
		running := v.running
		s.mu.Unlock()
		if !running {
			return fmt.Errorf("VM %d not running", v.vmid)
		}
		return s.stopVM(ctx, v)
	})
}

func (s *Sim) postQemuReboot(r *request) (any, error) {
	return s.powerOp(r, "qmreboot", func(ctx context.Context, v *simVM, t *task) error {
		s.mu.Lock()
		running := v.running
		s.mu.Unlock()
		if !running {
			return fmt.Errorf("VM %d not running", v.vmid)
		}
		if err := s.stopVM(ctx, v); err != nil {
			return err
		}
		s.mu.Lock()
		ev := s.vmEvent(v)
		s.mu.Unlock()
		return s.startVM(ctx, v, ev)
	})
}
