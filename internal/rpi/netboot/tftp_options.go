package netboot

import (
	"strconv"
	"time"
)

// Limits bound what a TFTP client may negotiate and what a transfer costs.
// A transfer holds one packet buffer of BlockSize+4 bytes, whatever its
// window: blocks are re-read from the file to be re-sent.
type Limits struct {
	MaxBlockSize int           // largest blksize granted (RFC 2348 allows 65464)
	MaxWindow    int           // largest windowsize granted (RFC 7440)
	Timeout      time.Duration // wait for an ACK before re-sending, unless the client sets "timeout"
	Retries      int           // re-sends of one window before the client is dropped
	MaxTransfers int           // transfers at once; more are refused with "busy"
	// Engines is how many event loops run the transfers; one wakes up
	// for many ready transfers at once, which costs the least CPU per
	// block (bench/tftp).
	Engines int
}

// DefaultLimits are the server's limits unless configured.
func DefaultLimits() Limits {
	return Limits{MaxBlockSize: 65464, MaxWindow: 64, Timeout: time.Second, Retries: 5, MaxTransfers: 512, Engines: 1}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBlockSize < 512 || l.MaxBlockSize > 65464 {
		l.MaxBlockSize = d.MaxBlockSize
	}
	if l.MaxWindow < 1 || l.MaxWindow > 65535 {
		l.MaxWindow = d.MaxWindow
	}
	if l.Timeout <= 0 {
		l.Timeout = d.Timeout
	}
	if l.Retries < 1 {
		l.Retries = d.Retries
	}
	if l.Engines < 1 || l.Engines > 64 {
		l.Engines = d.Engines
	}
	if l.MaxTransfers < 1 {
		l.MaxTransfers = d.MaxTransfers
	}
	return l
}

// params are a transfer's negotiated settings.
type params struct {
	blksize int
	window  int
	timeout time.Duration
	oack    []Option // options acknowledged, in the client's order; none: no OACK
}

// negotiate grants the options of r within l (RFC 2347: options the server
// does not know or whose value it refuses are left out of the OACK; an
// oversized blksize or windowsize is lowered to the limit). size is the
// file's size, for tsize.
func negotiate(r Request, size int64, l Limits) params {
	p := params{blksize: 512, window: 1, timeout: l.Timeout}
	for _, o := range r.Options {
		v, err := strconv.Atoi(o.Value)
		if err != nil {
			continue
		}
		switch o.Name {
		case "blksize":
			if v < 8 || v > 65464 {
				continue
			}
			p.blksize = min(v, l.MaxBlockSize)
			p.oack = append(p.oack, Option{o.Name, strconv.Itoa(p.blksize)})
		case "tsize":
			if v != 0 { // a read request asks with 0
				continue
			}
			p.oack = append(p.oack, Option{o.Name, strconv.FormatInt(size, 10)})
		case "timeout":
			if v < 1 || v > 255 {
				continue
			}
			p.timeout = time.Duration(v) * time.Second
			p.oack = append(p.oack, Option{o.Name, o.Value})
		case "windowsize":
			if v < 1 || v > 65535 {
				continue
			}
			p.window = min(v, l.MaxWindow)
			p.oack = append(p.oack, Option{o.Name, strconv.Itoa(p.window)})
		}
	}
	return p
}
