package netboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
)

// EventSink takes boot events (a *Recorder).
type EventSink interface{ Record(Event) }

// BootFiles is the TFTP server's Handler: SERIAL/FILE (or MAC/FILE) for a
// netbooted Pi of the inventory, from the golden image's boot partition,
// with its cmdline.txt and config.txt generated. Refused, with an event:
// a directory no Pi has, a Pi that boots from SD, a path with "..", an
// absolute path, a request outside any Pi's directory.
type BootFiles struct {
	img       *BootImage
	boards    *Boards
	generated map[string]map[string][]byte // directory → file → content
	events    EventSink
	log       *slog.Logger
}

// NewBootFiles renders the generated files of every netbooted Pi of inv.
func NewBootFiles(inv *inventory.Inventory, r *render.Renderer, img *BootImage, boards *Boards, root RootOptions, events EventSink, log *slog.Logger) (*BootFiles, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &BootFiles{img: img, boards: boards, generated: map[string]map[string][]byte{}, events: events, log: log}
	var errs []error
	for _, n := range boards.Netbooted(inv) {
		dir := boards.Dir(n)
		files, err := NodeFiles(inv, r, img, n, dir, root)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b.generated[dir] = files
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return b, nil
}

// Generated returns the generated file name of the Pi with directory dir.
func (b *BootFiles) Generated(dir, name string) ([]byte, bool) {
	data, ok := b.generated[strings.ToLower(dir)][strings.ToLower(name)]
	return data, ok
}

type memFile struct{ *bytes.Reader }

func (m memFile) Size() int64 { return m.Reader.Size() }

type diskFile struct {
	f interface {
		ReadAt([]byte, int64) (int, error)
	}
	size int64
}

func (d diskFile) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }
func (d diskFile) Size() int64                             { return d.size }

func (b *BootFiles) record(e Event) {
	if b.events != nil {
		b.events.Record(e)
	}
}

// Open implements Handler.
func (b *BootFiles) Open(ctx context.Context, req Request, remote netip.AddrPort) (File, error) {
	ip := remote.Addr().String()
	parts, err := splitPath(req.Filename)
	if err != nil {
		b.log.Warn("tftp: refused a path", "client", remote, "err", err)
		b.record(Event{Kind: EventRefused, IP: ip, File: req.Filename, Detail: "bad path"})
		return nil, &Refusal{Code: errAccess, Msg: "access violation: " + err.Error()}
	}
	if len(parts) < 2 {
		b.log.Warn("tftp: refused a file outside any Pi's directory", "client", remote, "file", req.Filename)
		b.record(Event{Kind: EventRefused, IP: ip, File: req.Filename, Detail: "outside any Pi's directory"})
		return nil, &Refusal{Code: errNotFound, Msg: "file not found: ask for " + string(b.boards.Naming) + "/FILE"}
	}
	dir, name := strings.ToLower(parts[0]), strings.Join(parts[1:], "/")
	n, known := b.boards.ByDir(dir)
	if !known {
		b.log.Warn("tftp: a Pi asked for a directory no node has", "client", remote, "dir", dir, "file", name, "naming", b.boards.Naming)
		b.record(Event{Kind: EventUnknown, Serial: dir, IP: ip, File: name})
		return nil, &Refusal{Code: errNotFound, Msg: "file not found: unknown " + string(b.boards.Naming) + " " + dir}
	}
	ev := Event{Node: n.Name, Serial: dir, MAC: n.MAC, IP: ip, File: name}
	if n.Boot != inventory.BootNetboot {
		b.log.Warn("tftp: refused a Pi that boots from its SD card", "node", n.Name, "client", remote, "boot", n.Boot)
		ev.Kind, ev.Detail = EventRefused, "node boots from "+n.Boot
		b.record(ev)
		return nil, &Refusal{Code: errNotFound, Msg: "file not found: " + n.Name + " boots from " + n.Boot}
	}
	if data, ok := b.Generated(dir, name); ok {
		return memFile{bytes.NewReader(data)}, nil
	}
	if f, ok := b.img.Lookup(name); ok {
		return diskFile{f: f, size: f.Size}, nil
	}
	ev.Kind, ev.Detail = EventRefused, "not on the boot partition"
	b.record(ev)
	b.log.Debug("tftp: not on the boot partition", "node", n.Name, "file", name)
	return nil, &Refusal{Code: errNotFound, Msg: "file not found"}
}

// Done records a file served to the end as an event (TFTPServer.Done).
// The Pi bootloader ends some transfers itself after the OACK (it asked
// only for the size): those are not events.
func (b *BootFiles) Done(st TransferStat) {
	var abort *ClientAbort
	switch {
	case st.Done:
		parts, err := splitPath(st.Filename)
		if err != nil || len(parts) < 2 {
			return
		}
		ev := Event{Kind: EventFile, Serial: strings.ToLower(parts[0]), IP: st.Remote.Addr().String(), File: strings.Join(parts[1:], "/"), Bytes: st.Bytes}
		if n, ok := b.boards.ByDir(parts[0]); ok {
			ev.Node, ev.MAC = n.Name, n.MAC
		}
		b.record(ev)
		b.log.Debug("tftp: served", "client", st.Remote, "file", st.Filename, "bytes", st.Bytes, "blksize", st.Blksize, "window", st.Window, "took", st.Took)
	case errors.As(st.Err, &abort):
		b.log.Debug("tftp: the client ended the transfer", "client", st.Remote, "file", st.Filename, "err", st.Err)
	case errors.Is(st.Err, errClientGone):
		b.log.Warn("tftp: dropped a client that stopped answering", "client", st.Remote, "file", st.Filename, "bytes", st.Bytes, "err", st.Err)
	case st.Err != nil && st.Size > 0:
		b.log.Warn("tftp: transfer failed", "client", st.Remote, "file", st.Filename, "err", fmt.Sprint(st.Err))
	}
}
