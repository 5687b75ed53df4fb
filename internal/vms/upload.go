package vms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

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

// SSHDialer dials Proxmox hosts over SSH as user with signer, checking host
// keys against known (trust on first use, a changed key refused).
func SSHDialer(user string, port int, cfg remote.Config) Dialer {
	return func(ctx context.Context, host inventory.ProxmoxNode) (Uploader, func() error, error) {
		c := cfg
		c.Host, c.User, c.Port = host.Address, user, port
		cl, err := remote.Dial(ctx, c)
		if err != nil {
			return nil, nil, err
		}
		return cl, cl.Close, nil
	}
}
