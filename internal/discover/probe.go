package discover

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// probeWorkers bounds the banner reads and pings running at once.
const probeWorkers = 16

// maxBanner is the longest SSH identification line (RFC 4253 4.2).
const maxBanner = 255

type probeJob struct {
	conn net.Conn
	ep   Endpoint
}

// prober collects open endpoints and reads what they say, with a bounded
// pool of goroutines started on the first job.
type prober struct {
	ctx     context.Context
	opts    Options
	jobs    chan probeJob
	start   sync.Once
	workers sync.WaitGroup

	mu    sync.Mutex
	found []Endpoint
}

func newProber(ctx context.Context, o Options) *prober {
	return &prober{ctx: ctx, opts: o, jobs: make(chan probeJob, probeWorkers)}
}

// wants says whether an open port gets a probe.
func (p *prober) wants(port uint16) bool {
	return port == 22 || (port == 2375 && p.opts.DockerPing)
}

func (p *prober) add(ep Endpoint) {
	p.mu.Lock()
	p.found = append(p.found, ep)
	p.mu.Unlock()
}

// take hands over a connected socket (the caller no longer owns fd). It
// blocks while every worker is busy: a range full of SSH servers slows the
// sweep down rather than piling up sockets.
func (p *prober) take(fd int, ep Endpoint) {
	f := os.NewFile(uintptr(fd), "")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		ep.Problem = "read: " + err.Error()
		p.add(ep)
		return
	}
	p.start.Do(func() {
		for range probeWorkers {
			p.workers.Add(1)
			go p.work()
		}
	})
	select {
	case p.jobs <- probeJob{conn, ep}:
	case <-p.ctx.Done():
		conn.Close()
		ep.Problem = "not read: " + p.ctx.Err().Error()
		p.add(ep)
	}
}

func (p *prober) work() {
	defer p.workers.Done()
	for j := range p.jobs {
		p.add(p.probe(j.conn, j.ep))
	}
}

// wait ends the pool and returns every endpoint.
func (p *prober) wait() []Endpoint {
	close(p.jobs)
	p.workers.Wait()
	return p.found
}

func (p *prober) probe(conn net.Conn, ep Endpoint) Endpoint {
	defer conn.Close()
	deadline := time.Now().Add(p.opts.BannerTimeout)
	if d, ok := p.ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(p.ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var err error
	switch ep.Port {
	case 22:
		ep.Banner, err = readBanner(conn)
		if err != nil {
			ep.Problem = "banner: " + err.Error()
		}
	case 2375:
		ep.Docker, err = ping(conn, ep.Addr, ep.Port)
		if err != nil {
			ep.Problem = "ping: " + err.Error()
		}
	}
	return ep
}

// readBanner reads the server's identification line. A server may send
// other lines before it (RFC 4253 4.2); the first line starting "SSH-" is
// the banner.
func readBanner(r io.Reader) (string, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, 8*1024), 512)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return "", errors.New("no line end in the first 512 bytes: not an SSH server")
		}
		if len(line) > 0 && strings.HasPrefix(string(line), "SSH-") {
			return printable(strings.TrimRight(string(line), "\r\n")), nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", errors.New("closed without an SSH identification line")
			}
			if isTimeout(err) {
				return "", errors.New("no SSH identification line before the deadline")
			}
			return "", err
		}
	}
}

// printable keeps printable ASCII, at most maxBanner bytes.
func printable(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if b.Len() == maxBanner {
			break
		}
		if c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// ping asks the Engine API's GET /_ping over conn.
func ping(conn net.Conn, addr netip.Addr, port uint16) (*DockerPing, error) {
	host := netip.AddrPortFrom(addr, port).String()
	if _, err := fmt.Fprintf(conn, "GET /_ping HTTP/1.1\r\nHost: %s\r\nUser-Agent: provision-discover\r\nConnection: close\r\n\r\n", host); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		if isTimeout(err) {
			return nil, errors.New("no HTTP answer before the deadline")
		}
		return nil, fmt.Errorf("no HTTP answer: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	return &DockerPing{
		OK:         resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "OK",
		Status:     printable(resp.Status),
		APIVersion: printable(resp.Header.Get("Api-Version")),
		OSType:     printable(resp.Header.Get("Ostype")),
	}, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
