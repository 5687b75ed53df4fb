// Package proxmox is provision's own client for the Proxmox VE REST API
// (/api2/json), built on net/http alone: API token authentication, TLS from a
// CA file (or an explicit insecure switch), the {"data": ...} envelope, PVE's
// error status lines and bodies kept in errors, bounded retries for reads,
// and UPID task polling.
//
// The token secret is sent in the Authorization header only; it never appears
// in logs or errors. Every request takes a context, so Ctrl-C stops a run.
package proxmox

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fhlab/provision/internal/userfile"
)

// APIPath is how every Proxmox API base URL ends.
const APIPath = "/api2/json"

// Defaults for Config fields left zero.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultRetries   = 2
	DefaultRetryWait = 500 * time.Millisecond
	maxBody          = 16 << 20
)

// Config configures a Client.
type Config struct {
	// BaseURL is the API root, e.g. https://pve1:8006/api2/json.
	BaseURL string
	// TokenID is user@realm!tokenid; TokenSecret its secret (a UUID).
	TokenID, TokenSecret string
	// CAFile is a PEM file with the certificate(s) that sign the API's TLS
	// certificate (on PVE: /etc/pve/pve-root-ca.pem). Empty: the system roots.
	CAFile string
	// Insecure skips TLS certificate verification. Explicit, never implied.
	Insecure bool
	// Timeout bounds one HTTP request (default 30 s).
	Timeout time.Duration
	// Retries is how many times a failed GET is tried again (default 2;
	// negative: never). Writes are never retried.
	Retries int
	// RetryWait is the pause before the first retry; it doubles each time
	// (default 500 ms).
	RetryWait time.Duration
	// PollInterval is the longest pause between two task status polls
	// (default 1 s; the first poll is immediate and the pauses grow to it).
	PollInterval time.Duration
	// MaxConns bounds the connections to the API (default 8): pveproxy
	// serves each on a few workers, and every new one costs a TLS handshake.
	// Requests beyond it wait for a free connection.
	MaxConns int
	// NoKeepAlive opens a new connection for every request, as a loop of
	// curl calls would (used by the benchmark's anchor).
	NoKeepAlive bool
	// Log receives one debug line per request (method, path, status,
	// duration). Nil: no logging.
	Log *slog.Logger
}

// Client talks to one Proxmox VE API endpoint. It is safe for concurrent use.
type Client struct {
	base      string // scheme://host:port/api2/json, no trailing slash
	host      string
	tokenID   string
	auth      string // the whole Authorization header value
	secret    string
	hc        *http.Client
	retries   int
	retryWait time.Duration
	poll      time.Duration
	log       *slog.Logger
	calls     callCounter
}

// New checks cfg and returns a Client. It makes no request.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("proxmox API URL %q: not a URL like https://pve1:8006%s", cfg.BaseURL, APIPath)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("proxmox API URL %q: must not have a query or fragment", cfg.BaseURL)
	}
	path := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(path, APIPath) {
		return nil, fmt.Errorf("proxmox API URL %q: must end in %s (e.g. https://%s%s)", cfg.BaseURL, APIPath, u.Host, APIPath)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("proxmox API URL %q: refusing to send the API token over plain http to %s; use https", cfg.BaseURL, u.Host)
	}
	if cfg.TokenID == "" || cfg.TokenSecret == "" {
		return nil, errors.New("proxmox API token: both the token ID (user@realm!tokenid) and its secret are needed")
	}
	if !tokenIDPattern(cfg.TokenID) {
		// Not the value: a secret pasted into it would be shown.
		return nil, errors.New("proxmox API token ID: not of the form user@realm!tokenid")
	}
	if strings.ContainsAny(cfg.TokenSecret, "\r\n") {
		return nil, errors.New("proxmox API token secret: contains a line break")
	}
	if cfg.Insecure && cfg.CAFile != "" {
		return nil, fmt.Errorf("proxmox TLS: choose either a CA file (%s) or insecure, not both", cfg.CAFile)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case cfg.Insecure:
		tlsConf.InsecureSkipVerify = true
	case cfg.CAFile != "":
		pem, err := userfile.Read(cfg.CAFile, userfile.MaxSmall)
		if err != nil {
			return nil, fmt.Errorf("proxmox TLS: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("proxmox TLS: CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	} else if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = DefaultRetryWait
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 8
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	tr := &http.Transport{
		Proxy:               nil, // like the Telmate provider: the API is on the lab network
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxConnsPerHost:     cfg.MaxConns,
		MaxIdleConnsPerHost: cfg.MaxConns,
		IdleConnTimeout:     90 * time.Second,
		DisableKeepAlives:   cfg.NoKeepAlive,
		// HTTP/1.1 only: pveproxy speaks nothing else.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	return &Client{
		base:      u.Scheme + "://" + u.Host + path,
		host:      u.Host,
		tokenID:   cfg.TokenID,
		auth:      "PVEAPIToken=" + cfg.TokenID + "=" + cfg.TokenSecret,
		secret:    cfg.TokenSecret,
		hc:        &http.Client{Transport: tr, Timeout: cfg.Timeout, CheckRedirect: noRedirect},
		retries:   cfg.Retries,
		retryWait: cfg.RetryWait,
		poll:      cfg.PollInterval,
		log:       cfg.Log,
	}, nil
}

// noRedirect stops the client from following a redirect (and resending the
// token to wherever it points).
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func tokenIDPattern(id string) bool {
	user, tok, ok := strings.Cut(id, "!")
	if !ok || tok == "" || strings.ContainsAny(id, " =\r\n\t") {
		return false
	}
	name, realm, ok := strings.Cut(user, "@")
	return ok && name != "" && realm != ""
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TokenID is the token the client authenticates with (not secret).
func (c *Client) TokenID() string { return c.tokenID }

// Host is host:port of the API endpoint.
func (c *Client) Host() string { return c.host }

// BaseURL is the API root the client talks to.
func (c *Client) BaseURL() string { return c.base }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Get requests path (relative to the API root, e.g. "/version") with query
// parameters and decodes the response's data into out (nil: discard).
// Failed reads are retried (see Config.Retries).
func (c *Client) Get(ctx context.Context, path string, query url.Values, out any) error {
	return c.do(ctx, http.MethodGet, path, query, out)
}

// Post sends form parameters; out receives data (often a task UPID).
func (c *Client) Post(ctx context.Context, path string, form url.Values, out any) error {
	return c.do(ctx, http.MethodPost, path, form, out)
}

// Put sends form parameters; out receives data.
func (c *Client) Put(ctx context.Context, path string, form url.Values, out any) error {
	return c.do(ctx, http.MethodPut, path, form, out)
}

// Delete sends query parameters; out receives data.
func (c *Client) Delete(ctx context.Context, path string, query url.Values, out any) error {
	return c.do(ctx, http.MethodDelete, path, query, out)
}

// Path joins API path segments, escaping each: Path("nodes", n, "qemu").
func Path(segments ...string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

func (c *Client) do(ctx context.Context, method, path string, params url.Values, out any) error {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	attempts := 1
	if method == http.MethodGet {
		attempts += c.retries
	}
	wait := c.retryWait
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%s %s: %w (after: %v)", method, path, ctx.Err(), err)
			case <-t.C:
			}
			wait *= 2
		}
		err = c.once(ctx, method, path, params, out)
		if err == nil || !retryable(ctx, err) {
			return err
		}
	}
	if attempts > 1 {
		return fmt.Errorf("%w (tried %d times)", err, attempts)
	}
	return err
}

// retryable says whether a failed GET is worth another try: transport
// errors and 5xx answers, except PVE's deterministic ones.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		switch {
		case apiErr.StatusCode < 500:
			return false
		case apiErr.StatusCode == http.StatusNotImplemented:
			return false
		case strings.HasPrefix(apiErr.Status, "500 no such resource"):
			return false
		}
		return true
	}
	var decErr *decodeError
	return !errors.As(err, &decErr) && !IsTLS(err)
}

func (c *Client) once(ctx context.Context, method, path string, params url.Values, out any) error {
	target := c.base + path
	var body io.Reader
	if len(params) > 0 {
		if method == http.MethodGet || method == http.MethodDelete {
			target += "?" + params.Encode()
		} else {
			body = strings.NewReader(params.Encode())
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, c.scrub(err))
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	start := time.Now()
	c.calls.add(method)
	resp, err := c.hc.Do(req)
	if err != nil {
		if c.log != nil {
			c.log.Debug("proxmox request failed", "method", method, "path", path, "err", c.scrub(err))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		return &TransportError{Method: method, Path: path, Host: c.host, Err: c.scrub(err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if c.log != nil {
		c.log.Debug("proxmox request", "method", method, "path", path, "status", resp.Status, "duration", time.Since(start).Round(time.Millisecond))
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		return &TransportError{Method: method, Path: path, Host: c.host, Err: c.scrub(err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.apiError(method, path, resp, raw)
	}
	if out == nil {
		return nil
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return &decodeError{fmt.Errorf("%s %s: %s: the answer is not PVE's JSON envelope: %v", method, path, resp.Status, err)}
	}
	if len(env.Data) == 0 {
		env.Data = json.RawMessage("null")
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return &decodeError{fmt.Errorf("%s %s: decode data: %v", method, path, err)}
	}
	return nil
}

type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// scrub removes the token secret from an error's text, should any layer
// ever echo it.
func (c *Client) scrub(err error) error {
	if err == nil || c.secret == "" || !strings.Contains(err.Error(), c.secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), c.secret, "[redacted]"))
}

func (c *Client) scrubString(s string) string {
	if c.secret == "" {
		return s
	}
	return strings.ReplaceAll(s, c.secret, "[redacted]")
}

// APIError is a non-2xx answer from the API. Status is the HTTP status line
// as PVE wrote it (e.g. "500 no such resource 'vm:101'"): PVE puts the first
// line of its message in the reason phrase.
type APIError struct {
	Method, Path string
	StatusCode   int
	Status       string            // "400 Parameter verification failed."
	Message      string            // the body's message, trimmed
	Errors       map[string]string // per-parameter errors (400)
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %s", e.Method, e.Path, e.Status)
	reason := strings.TrimSpace(strings.TrimPrefix(e.Status, fmt.Sprint(e.StatusCode)))
	if m := strings.TrimSpace(e.Message); m != "" && m != reason {
		b.WriteString(": ")
		b.WriteString(strings.ReplaceAll(m, "\n", "; "))
	}
	if len(e.Errors) > 0 {
		b.WriteString(" (")
		for i, k := range slices.Sorted(maps.Keys(e.Errors)) {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s: %s", k, strings.TrimSpace(e.Errors[k]))
		}
		b.WriteString(")")
	}
	return b.String()
}

// IsNotFound reports whether err is PVE's "no such resource" (or a 404).
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && (e.StatusCode == http.StatusNotFound ||
		strings.HasPrefix(e.Status, "500 no such resource") || strings.Contains(e.Message, "does not exist"))
}

// IsAuth reports whether err is an authentication failure (401).
func IsAuth(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.StatusCode == http.StatusUnauthorized
}

// IsForbidden reports whether err is a permission failure (403).
func IsForbidden(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.StatusCode == http.StatusForbidden
}

func (c *Client) apiError(method, path string, resp *http.Response, raw []byte) error {
	e := &APIError{Method: method, Path: path, StatusCode: resp.StatusCode, Status: c.scrubString(resp.Status)}
	var body struct {
		Message string          `json:"message"`
		Errors  json.RawMessage `json:"errors"`
	}
	if json.Unmarshal(raw, &body) == nil {
		e.Message = c.scrubString(strings.TrimSpace(body.Message))
		if len(body.Errors) > 0 && !bytes.Equal(body.Errors, []byte("null")) {
			var m map[string]any
			if json.Unmarshal(body.Errors, &m) == nil && len(m) > 0 {
				e.Errors = make(map[string]string, len(m))
				for k, v := range m {
					e.Errors[k] = c.scrubString(strings.TrimSpace(fmt.Sprint(v)))
				}
			}
		}
	}
	return e
}

// TransportError is a request that got no HTTP answer: connection refused,
// TLS failure, timeout.
type TransportError struct {
	Method, Path, Host string
	Err                error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("%s %s: no answer from %s: %v", e.Method, e.Path, e.Host, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// IsTLS reports whether err is a TLS certificate problem.
func IsTLS(err error) bool {
	var (
		unk  x509.UnknownAuthorityError
		host x509.HostnameError
		inv  x509.CertificateInvalidError
		ver  *tls.CertificateVerificationError
	)
	return errors.As(err, &unk) || errors.As(err, &host) || errors.As(err, &inv) || errors.As(err, &ver)
}

// Calls counts the HTTP requests a Client sent (each retry counts).
type Calls struct {
	Total, Get, Post, Put, Delete int64
}

// Mutating is the number of requests that may change something.
func (c Calls) Mutating() int64 { return c.Post + c.Put + c.Delete }

type callCounter struct{ get, post, put, del atomic.Int64 }

func (cc *callCounter) add(method string) {
	switch method {
	case http.MethodGet:
		cc.get.Add(1)
	case http.MethodPost:
		cc.post.Add(1)
	case http.MethodPut:
		cc.put.Add(1)
	case http.MethodDelete:
		cc.del.Add(1)
	}
}

// Calls returns how many requests the client has sent so far.
func (c *Client) Calls() Calls {
	g, po, pu, d := c.calls.get.Load(), c.calls.post.Load(), c.calls.put.Load(), c.calls.del.Load()
	return Calls{Total: g + po + pu + d, Get: g, Post: po, Put: pu, Delete: d}
}
