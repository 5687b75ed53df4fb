// Package swarm forms one Docker Swarm out of many engines, talking to each
// through the Docker Engine API (the official Go client) over whatever
// connection the caller dials, SSH in practice. It gathers facts first and
// acts only on the difference, so a re-run on a formed swarm makes no
// mutating API call at all.
package swarm

import (
	"context"
	"net"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"

	"github.com/docker/docker/client"
)

// DialFunc opens a connection to one node's Docker socket.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Counter counts the Engine API calls that change something (every method
// but GET and HEAD), across all nodes, in all and per call.
type Counter struct {
	n     atomic.Int64
	mu    sync.Mutex
	calls map[string]int
}

var (
	// apiVersion strips the /v1.41 prefix from a request path.
	apiVersion = regexp.MustCompile(`^/v[0-9.]+`)
	// objectID is the ID or name in a path like /nodes/ID/update.
	objectID = regexp.MustCompile(`^/(nodes|networks|services|tasks|containers|secrets|configs)/([^/]+)`)
)

// callName is "METHOD /path" without the API version and with object IDs
// as {id}, so that a call counts the same on every node.
func callName(r *http.Request) string {
	p := apiVersion.ReplaceAllString(r.URL.Path, "")
	if m := objectID.FindStringSubmatch(p); m != nil && m[2] != "create" && m[2] != "prune" {
		p = "/" + m[1] + "/{id}" + p[len(m[0]):]
	}
	return r.Method + " " + p
}

func (c *Counter) add(r *http.Request) {
	c.n.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[callName(r)]++
}

// Calls returns the mutating calls made, by "METHOD /path" (object IDs in
// the path as {id}: "POST /nodes/{id}/update").
func (c *Counter) Calls() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.calls))
	for k, v := range c.calls {
		out[k] = v
	}
	return out
}

// Mutations returns how many mutating calls were made.
func (c *Counter) Mutations() int64 {
	if c == nil {
		return 0
	}
	return c.n.Load()
}

type countingTransport struct {
	next    http.RoundTripper
	counter *Counter
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.counter != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		t.counter.add(r)
	}
	return t.next.RoundTrip(r)
}

// NewEngine returns a Docker client for one node whose connections come
// from dial (the socket path is the dial function's business). The API
// version is negotiated with the engine. Mutating calls are counted in c
// when c is not nil.
func NewEngine(dial DialFunc, c *Counter) (*client.Client, error) {
	cl, _, err := newEngine(dial, c)
	return cl, err
}

// newEngine is NewEngine that also returns the transport below the
// client, whose idle connections the client's Close leaves open (the
// client closes only a transport of its own making).
func newEngine(dial DialFunc, c *Counter) (*client.Client, *http.Transport, error) {
	tr := &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 2,
		DisableCompression:  true,
	}
	hc := &http.Client{Transport: countingTransport{next: tr, counter: c}}
	cl, err := client.NewClientWithOpts(
		client.WithHost("http://docker.sock"),
		client.WithHTTPClient(hc),
		client.WithAPIVersionNegotiation(),
	)
	return cl, tr, err
}
