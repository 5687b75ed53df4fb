package netboot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// ErrNoAnswer is a Fetch whose server stopped answering (a lost or
// overloaded link, not a refusal): a Pi's bootloader starts its boot over.
var ErrNoAnswer = errors.New("no answer")

// FetchOptions are what a Fetch asks the server for; zero values send no
// option (a plain RFC 1350 transfer of 512-byte blocks).
type FetchOptions struct {
	Blksize int           // RFC 2348
	Window  int           // RFC 7440
	TSize   bool          // RFC 2349: ask for the size
	Timeout time.Duration // wait for a block before re-sending the ACK
	Retries int
}

// Fetch reads file name from the TFTP server at server into w, as a Pi's
// bootloader does (blksize 1468 and tsize, lock-step, when asked so), over
// conn (a socket of the caller's, unconnected). It returns the bytes
// written. It is provision's own client, for bench/tftp and tests; the
// server is tested against tftp-hpa and curl.
func Fetch(ctx context.Context, conn net.PacketConn, server netip.AddrPort, name string, o FetchOptions, w io.Writer) (int64, error) {
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	req := Request{Filename: name, Mode: "octet"}
	if o.Blksize > 0 {
		req.Options = append(req.Options, Option{"blksize", strconv.Itoa(o.Blksize)})
	}
	if o.TSize {
		req.Options = append(req.Options, Option{"tsize", "0"})
	}
	if o.Window > 0 {
		req.Options = append(req.Options, Option{"windowsize", strconv.Itoa(o.Window)})
	}
	blksize, window := 512, 1
	last := appendRequest(nil, req)
	dst := net.UDPAddrFromAddrPort(server)
	var peer *net.UDPAddr // the server's transfer port, from its first answer
	buf := make([]byte, 65536)
	ack := make([]byte, 4)
	binary.BigEndian.PutUint16(ack, opACK)
	var (
		total   int64
		next    = uint64(1) // the block wanted next (absolute)
		misses  int
		inBlock int // blocks received since the last ACK
	)
	sendLast := func() error {
		to := dst
		if peer != nil {
			to = peer
		}
		_, err := conn.WriteTo(last, to)
		return err
	}
	if err := sendLast(); err != nil {
		return 0, fmt.Errorf("tftp %s: send request: %w", name, err)
	}
	for {
		conn.SetReadDeadline(time.Now().Add(o.Timeout))
		n, src, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return total, ctx.Err()
			}
			if isNetTimeout(err) {
				misses++
				if misses > o.Retries {
					return total, fmt.Errorf("tftp %s: %w after %d re-sends", name, ErrNoAnswer, o.Retries)
				}
				if err := sendLast(); err != nil {
					return total, err
				}
				continue
			}
			return total, err
		}
		ua, _ := src.(*net.UDPAddr)
		if ua == nil || !ua.IP.Equal(dst.IP) || (peer != nil && ua.Port != peer.Port) {
			continue
		}
		if peer == nil {
			peer = ua
		}
		pkt := buf[:n]
		if len(pkt) < 4 {
			continue
		}
		misses = 0
		switch binary.BigEndian.Uint16(pkt) {
		case opERROR:
			c, m := parseError(pkt)
			return total, &ClientAbort{Code: c, Msg: m} // here: the server's error
		case opOACK:
			opts, err := parseOACK(pkt)
			if err != nil {
				return total, fmt.Errorf("tftp %s: %w", name, err)
			}
			if v, ok := opts["blksize"]; ok {
				blksize, _ = strconv.Atoi(v)
			}
			if v, ok := opts["windowsize"]; ok {
				window, _ = strconv.Atoi(v)
			}
			if blksize < 8 || window < 1 {
				return total, fmt.Errorf("tftp %s: bad OACK %v", name, opts)
			}
			binary.BigEndian.PutUint16(ack[2:], 0)
			last = ack
			if err := sendLast(); err != nil {
				return total, err
			}
		case opDATA:
			blk := binary.BigEndian.Uint16(pkt[2:])
			if blk != uint16(next) {
				// Out of order (a lost block): ask again from the last good one.
				binary.BigEndian.PutUint16(ack[2:], uint16(next-1))
				last = ack
				inBlock = 0
				sendLast()
				continue
			}
			data := pkt[4:]
			if _, err := w.Write(data); err != nil {
				return total, err
			}
			total += int64(len(data))
			next++
			inBlock++
			end := len(data) < blksize
			if end || inBlock >= window {
				binary.BigEndian.PutUint16(ack[2:], uint16(next-1))
				last = ack
				inBlock = 0
				if err := sendLast(); err != nil {
					return total, err
				}
			}
			if end {
				return total, nil
			}
		}
	}
}

// isNetTimeout reports whether err is a read deadline passing.
func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
