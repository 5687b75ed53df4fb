package vms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/remote"
)

// Uploader puts files into, and removes them from, a directory of one
// host; *remote.Client is one.
type Uploader interface {
	Upload(ctx context.Context, dir string, files []remote.File, opts remote.UploadOptions) (remote.UploadResult, error)
	Remove(ctx context.Context, dir string, names []string) (remote.RemoveResult, error)
}

// Dialer connects to a Proxmox host for uploads. The returned close
// function ends the connection.
type Dialer func(ctx context.Context, host inventory.ProxmoxNode) (Uploader, func() error, error)

// UploadReport counts what an upload of all snippets did.
type UploadReport struct {
	Hosts     int
	Written   int
	Unchanged int
}

// UploadSnippets uploads every VM's snippets to the snippets directory of
// its Proxmox host, one connection per host, at most concurrency hosts at
// once. Files already right are left alone. Every host is tried; the
// errors of all failed hosts are returned together, each naming its host.
func UploadSnippets(ctx context.Context, d *Data, dial Dialer, concurrency int, log *slog.Logger) (UploadReport, error) {
	hosts, files := snippetsByHost(d, nil)
	var mu sync.Mutex
	rep := UploadReport{Hosts: len(hosts)}
	err := eachHost(ctx, hosts, dial, concurrency, "snippets to", func(ctx context.Context, up Uploader, host inventory.ProxmoxNode) error {
		res, err := up.Upload(ctx, d.SnippetsDir, files[host.Name], remote.UploadOptions{})
		if err != nil {
			return err
		}
		logger(log).Debug("snippets uploaded", "host", host.Name, "written", len(res.Written), "unchanged", len(res.Unchanged))
		mu.Lock()
		defer mu.Unlock()
		rep.Written += len(res.Written)
		rep.Unchanged += len(res.Unchanged)
		return nil
	})
	return rep, err
}

// RemoveReport counts what a removal of snippets did.
type RemoveReport struct {
	Hosts   int
	Removed int
	Absent  int // not there any more
}

// RemoveSnippets removes the snippets of the VMs named (every VM of the
// lab when vmNames is empty) from their Proxmox hosts, as UploadSnippets
// put them there; files of other VMs are left alone.
func RemoveSnippets(ctx context.Context, d *Data, vmNames []string, dial Dialer, concurrency int, log *slog.Logger) (RemoveReport, error) {
	hosts, files := snippetsByHost(d, vmNames)
	var mu sync.Mutex
	rep := RemoveReport{Hosts: len(hosts)}
	err := eachHost(ctx, hosts, dial, concurrency, "remove snippets from", func(ctx context.Context, up Uploader, host inventory.ProxmoxNode) error {
		names := make([]string, len(files[host.Name]))
		for i, f := range files[host.Name] {
			names[i] = f.Name
		}
		res, err := up.Remove(ctx, d.SnippetsDir, names)
		logger(log).Debug("snippets removed", "host", host.Name, "removed", len(res.Removed), "absent", len(res.Absent))
		mu.Lock()
		defer mu.Unlock()
		rep.Removed += len(res.Removed)
		rep.Absent += len(res.Absent)
		return err
	})
	return rep, err
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// snippetsByHost groups the snippets of the VMs named (all when names is
// empty) by host, hosts in name order.
func snippetsByHost(d *Data, names []string) ([]inventory.ProxmoxNode, map[string][]remote.File) {
	files := map[string][]remote.File{}
	byName := map[string]inventory.ProxmoxNode{}
	for _, vm := range d.VMs {
		if len(names) > 0 && !slices.Contains(names, vm.Name) {
			continue
		}
		files[vm.Host.Name] = append(files[vm.Host.Name], vm.Snippets...)
		byName[vm.Host.Name] = vm.Host
	}
	hosts := make([]inventory.ProxmoxNode, 0, len(byName))
	for _, h := range byName {
		hosts = append(hosts, h)
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	return hosts, files
}

// eachHost runs fn with a connection to every host, at most concurrency
// hosts at once. Every host is tried; the errors of all failed hosts are
// returned together, each as "<what> <host> (<address>): ...".
func eachHost(ctx context.Context, hosts []inventory.ProxmoxNode, dial Dialer, concurrency int, what string,
	fn func(ctx context.Context, up Uploader, host inventory.ProxmoxNode) error) error {
	if concurrency < 1 {
		concurrency = 1
	}
	var (
		errs = make([]error, len(hosts))
		wg   sync.WaitGroup
		sem  = make(chan struct{}, concurrency)
	)
	for i, host := range hosts {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				errs[i] = fmt.Errorf("%s %s: %w", what, host.Name, ctx.Err())
				return
			}
			up, closeFn, err := dial(ctx, host)
			if err == nil {
				err = fn(ctx, up, host)
				closeFn()
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s %s (%s): %w", what, host.Name, host.Address, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Proxmox hosts are up already (they serve the API): unlike a booting VM
// they are not waited for. A refused, unreachable or silent host fails
// after two quick attempts (the second one covers a dropped packet or an
// sshd restarting).
const (
	proxmoxDialAttempts       = 2
	proxmoxDialAttemptTimeout = 5 * time.Second
	proxmoxDialPause          = 500 * time.Millisecond
)

// SSHDialer dials Proxmox hosts over SSH as user with signer, checking host
// keys against known (trust on first use, a changed key refused), at the
// host's sshPort or else port. Its retry policy and timeout are its own
// (see proxmoxDialAttempts); an error names the host and what to check.
func SSHDialer(user string, port int, cfg remote.Config) Dialer {
	return func(ctx context.Context, host inventory.ProxmoxNode) (Uploader, func() error, error) {
		c := cfg
		c.Host, c.User, c.Port = host.Address, user, port
		if host.SSHPort != 0 {
			c.Port = host.SSHPort
		}
		c.Retry = remote.RetryPolicy{
			MaxAttempts: proxmoxDialAttempts, InitialDelay: proxmoxDialPause, MaxDelay: proxmoxDialPause,
			AttemptTimeout: proxmoxDialAttemptTimeout,
		}
		// MaxAttempts ends the dial; the overall timeout only must not cut
		// the last attempt short.
		c.Timeout = proxmoxDialAttempts*(proxmoxDialAttemptTimeout+2*proxmoxDialPause) + 5*time.Second
		cl, err := remote.Dial(ctx, c)
		if err != nil {
			return nil, nil, dialHint(err, host.Name, user, c.Port)
		}
		return cl, cl.Close, nil
	}
}

// dialHint adds to a failed dial what the admin can do about it.
func dialHint(err error, host, user string, port int) error {
	if port == 0 {
		port = remote.DefaultPort
	}
	var changed *remote.HostKeyChangedError
	switch {
	case errors.Is(err, context.Canceled):
		return err
	case errors.As(err, &changed):
		// Its message says what to check; --no-snippets would only hide it.
		return err
	case strings.Contains(err.Error(), "not accepted for user"):
		return fmt.Errorf("%w — add the public key to ~%s/.ssh/authorized_keys on %s, name another key with --ssh-key, or pass --no-snippets", err, user, host)
	}
	return fmt.Errorf("%w — check sshd on %s (port %d), proxmox.sshUser (%s), or pass --no-snippets", err, host, port, user)
}
