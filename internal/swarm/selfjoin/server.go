package selfjoin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// JoinPath is where the endpoint takes tickets (POST, JSON).
const JoinPath = "/v1/join"

// Request is what a node sends: its name and its ticket.
type Request struct {
	Node   string `json:"node"`
	Ticket string `json:"ticket"`
}

// Grant is what the endpoint needs to let a node join: the worker join
// token and the managers' swarm addresses (ip:2377).
type Grant struct {
	WorkerToken string
	Managers    []string
}

// GrantFunc fetches a Grant when a valid ticket is presented (from a
// manager's engine, in practice); the token is held in memory only.
type GrantFunc func(ctx context.Context) (Grant, error)

// Handler is the join endpoint: a valid ticket is exchanged for the
// Engine API join request (POST /swarm/join body) of its node.
type Handler struct {
	Store *Store
	Grant GrantFunc
	Log   *slog.Logger
}

var nodeName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// maxRequest bounds a request body: a name and a ticket.
const maxRequest = 4 << 10

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	from, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, "cannot tell your address", http.StatusBadRequest)
		return
	}
	src := from.Addr().Unmap()
	if r.URL.Path != JoinPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	var req Request
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequest+1))
	if err != nil || len(body) > maxRequest || json.Unmarshal(body, &req) != nil || !nodeName.MatchString(req.Node) || req.Ticket == "" {
		h.Log.Warn("self-join refused: malformed request", "from", src.String())
		http.Error(w, `malformed request: send {"node": NAME, "ticket": TICKET}`, http.StatusBadRequest)
		return
	}
	if _, err := h.Store.Check(req.Ticket, req.Node, src); err != nil {
		h.refuse(w, req.Node, src, err)
		return
	}
	grant, err := h.Grant(r.Context())
	if err != nil {
		// The ticket is not used: the node retries.
		h.Log.Warn("self-join deferred: the swarm cannot answer yet", "node", req.Node, "from", src.String(), "err", err.Error())
		w.Header().Set("Retry-After", "10")
		http.Error(w, "the swarm is not ready yet: try again", http.StatusServiceUnavailable)
		return
	}
	t, err := h.Store.Redeem(req.Ticket, req.Node, src)
	if err != nil {
		h.refuse(w, req.Node, src, err)
		return
	}
	addr := net.JoinHostPort(t.Addr, "2377")
	resp, err := json.Marshal(swarm.JoinRequest{
		ListenAddr: addr, AdvertiseAddr: addr,
		RemoteAddrs: grant.Managers, JoinToken: grant.WorkerToken,
		Availability: swarm.NodeAvailabilityActive,
	})
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h.Log.Info("self-join ticket exchanged", "node", t.Node, "from", src.String(), "managers", len(grant.Managers))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(resp)))
	w.Write(resp)
}

// refuse answers a refused ticket with its HTTP status and logs it,
// without the ticket.
func (h *Handler) refuse(w http.ResponseWriter, node string, from netip.Addr, err error) {
	var ref *Refusal
	if !errors.As(err, &ref) {
		h.Log.Error("self-join failed", "node", node, "from", from.String(), "err", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h.Log.Warn("self-join refused", "node", node, "from", from.String(), "reason", string(ref.Reason), "detail", ref.Detail)
	http.Error(w, "refused: "+ref.Error(), Status(ref.Reason))
}

// Status is the HTTP status the endpoint answers a refusal with.
func Status(r Reason) int {
	switch r {
	case Reused:
		return http.StatusConflict
	case Expired:
		return http.StatusGone
	case WrongAddress, WrongNode:
		return http.StatusForbidden
	default:
		return http.StatusUnauthorized
	}
}

// Serve serves h over TLS with cert on ln until ctx ends; then it shuts
// down, giving requests under way a few seconds.
func Serve(ctx context.Context, ln net.Listener, cert tls.Certificate, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:          log.New(slogWriter{logger}, "", 0),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-done:
		return fmt.Errorf("join endpoint on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-done
	return nil
}

// slogWriter sends net/http's own messages (TLS handshake errors: the
// remote address and the TLS alert) to the logger at debug level.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("join endpoint", "msg", string(p))
	return len(p), nil
}
