package pvesim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Server is a running simulator endpoint.
type Server struct {
	URL    string // base URL ending in /api2/json
	CAFile string // PEM of the CA that signed the server certificate (TLS only)
	CAPEM  []byte // the same PEM
	Addr   string // host:port it listens on
	Close  func() error
}

// Listen serves s.Handler() on addr ("127.0.0.1:0" picks a port) until ctx
// ends or Close is called. With useTLS it generates a CA and a server
// certificate for the loopback addresses and "localhost", writes the CA to
// a temporary file (Server.CAFile, removed by Close) and serves HTTPS
// with HTTP/1.1 only, so error answers can carry PVE's reason phrases.
func (s *Sim) Listen(ctx context.Context, addr string, useTLS bool) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pvesim: listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler: s.Handler(),
		// A client that stalls while sending a request, or idles between
		// requests, loses its connection instead of holding it for good.
		ReadHeaderTimeout: min(10*time.Second, s.opts.ReadTimeout),
		ReadTimeout:       s.opts.ReadTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // no HTTP/2: hijacking needs HTTP/1.1
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	out := &Server{Addr: ln.Addr().String()}
	scheme := "http"
	var caDir string
	if useTLS {
		caPEM, cert, err := selfSignedCert(ln.Addr())
		if err != nil {
			ln.Close()
			return nil, err
		}
		caDir, err = os.MkdirTemp("", "pvesim-ca-")
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("pvesim: CA file: %w", err)
		}
		out.CAFile = filepath.Join(caDir, "pvesim-ca.pem")
		out.CAPEM = caPEM
		if err := os.WriteFile(out.CAFile, caPEM, 0o644); err != nil {
			ln.Close()
			os.RemoveAll(caDir)
			return nil, fmt.Errorf("pvesim: CA file: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
		ln = tls.NewListener(ln, srv.TLSConfig)
		scheme = "https"
	}
	out.URL = scheme + "://" + out.Addr + apiBase
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	var once sync.Once
	var closeErr error
	out.Close = func() error {
		once.Do(func() {
			stop()
			if err := srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				closeErr = err
			}
			<-served
			if caDir != "" {
				if err := os.RemoveAll(caDir); err != nil && closeErr == nil {
					closeErr = err
				}
			}
		})
		return closeErr
	}
	return out, nil
}

// selfSignedCert makes a CA and a server certificate signed by it, valid
// for localhost, the loopback addresses and the listener's address.
func selfSignedCert(addr net.Addr) ([]byte, tls.Certificate, error) {
	fail := func(err error) ([]byte, tls.Certificate, error) {
		return nil, tls.Certificate{}, fmt.Errorf("pvesim: make certificate: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: "pvesim CA", Organization: []string{"PVE Cluster Manager CA (simulated)"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fail(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fail(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + 1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ta.IP)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fail(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fail(err)
	}
	cert, err := tls.X509KeyPair(
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return fail(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), cert, nil
}
