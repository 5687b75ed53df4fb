package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Server serves a mirror's repository directory (never the key beside
// it) over HTTP, read-only.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen opens addr ("198.51.100.1:8081") for the repository of dir.
func Listen(dir, addr string, log *slog.Logger) (*Server, error) {
	repo := filepath.Join(dir, RepoDir)
	if _, err := os.Stat(filepath.Join(repo, "dists", Suite, "InRelease")); err != nil {
		return nil, fmt.Errorf("mirror %s: no repository yet (run provision mirror build): %w", dir, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mirror: listen on %s: %w", addr, err)
	}
	files := http.FileServer(http.Dir(repo))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		if log != nil {
			log.Debug("mirror request", "from", r.RemoteAddr, "path", r.URL.Path)
		}
		files.ServeHTTP(w, r)
	})
	return &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, ln: ln}, nil
}

// Addr is where the server listens.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until ctx ends, then shuts down.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.srv.Shutdown(sctx)
		if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
			err = e
		}
		return err
	}
}
