package vms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/remote"
)

// Uploader puts files into a directory of one host; *remote.Client is one.
type Uploader interface {
	Upload(ctx context.Context, dir string, files []remote.File, opts remote.UploadOptions) (remote.UploadResult, error)
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
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if concurrency < 1 {
		concurrency = 1
	}
	byHost := map[string][]remote.File{}
	hosts := map[string]inventory.ProxmoxNode{}
	for _, vm := range d.VMs {
		byHost[vm.Host.Name] = append(byHost[vm.Host.Name], vm.Snippets...)
		hosts[vm.Host.Name] = vm.Host
	}
	names := make([]string, 0, len(byHost))
	for n := range byHost {
		names = append(names, n)
	}
	sort.Strings(names)

	var (
		mu   sync.Mutex
		rep  = UploadReport{Hosts: len(names)}
		errs = make([]error, len(names))
		wg   sync.WaitGroup
		sem  = make(chan struct{}, concurrency)
	)
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				errs[i] = fmt.Errorf("snippets to %s: %w", name, ctx.Err())
				return
			}
			res, err := uploadHost(ctx, hosts[name], d.SnippetsDir, byHost[name], dial)
			if err != nil {
				errs[i] = fmt.Errorf("snippets to %s (%s): %w", name, hosts[name].Address, err)
				return
			}
			log.Debug("snippets uploaded", "host", name, "written", len(res.Written), "unchanged", len(res.Unchanged))
			mu.Lock()
			rep.Written += len(res.Written)
			rep.Unchanged += len(res.Unchanged)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return rep, errors.Join(errs...)
}

func uploadHost(ctx context.Context, host inventory.ProxmoxNode, dir string, files []remote.File, dial Dialer) (remote.UploadResult, error) {
	up, closeFn, err := dial(ctx, host)
	if err != nil {
		return remote.UploadResult{}, err
	}
	defer closeFn()
	return up.Upload(ctx, dir, files, remote.UploadOptions{})
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
