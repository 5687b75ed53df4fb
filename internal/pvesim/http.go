package pvesim

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// apiError is an error answer as PVE writes it: the status line carries
// the message's first line, the body {"data":null,"message":...,"errors":...}.
type apiError struct {
	code   int
	msg    string            // with PVE's trailing newline
	errors map[string]string // per-parameter errors (400)
	noBody bool              // PVE answers some errors (401, 595) without a body
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s", e.code, strings.TrimRight(e.msg, "\n"))
}

// errf makes a PVE error; like Perl's die, a message gets a newline.
func errf(code int, format string, args ...any) *apiError {
	msg := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	return &apiError{code: code, msg: msg}
}

// paramError is PVE's raise_param_exc.
func paramError(errs map[string]string) *apiError {
	return &apiError{code: http.StatusBadRequest, msg: "Parameter verification failed.\n", errors: errs}
}

func paramErr1(name, msg string) *apiError { return paramError(map[string]string{name: msg}) }

// request is one API call after routing, authentication and checking.
type request struct {
	ctx    context.Context
	method string
	path   string // relative to /api2/json
	info   *methodInfo
	p      params
	authID string // user@realm or user@realm!token
	userID string // user@realm
}

func (r *request) str(name string) string { v, _ := r.p.get(name); return v }
func (r *request) has(name string) bool   { _, ok := r.p.get(name); return ok }
func (r *request) int(name string) int    { n, _ := strconv.Atoi(r.str(name)); return n }
func (r *request) bool(name string) bool {
	v, _ := parseBoolean(r.str(name))
	return v == "1"
}

type handlerFunc func(r *request) (any, error)

const apiBase = "/api2/json"

// Handler returns the API as an http.Handler, serving /api2/json/...
// Errors are written through a hijacked connection so the status line
// carries PVE's reason phrase; where the ResponseWriter cannot be
// hijacked (httptest.ResponseRecorder, HTTP/2) the standard phrase is used.
func (s *Sim) Handler() http.Handler {
	routes := s.routes()
	return http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		rel := strings.TrimPrefix(hr.URL.Path, apiBase)
		var data any
		var err error
		if f := s.fault(hr.Method, rel); f != nil {
			select {
			case <-time.After(f.Hold):
			case <-hr.Context().Done():
			}
			err = errf(f.Code, "%s", f.Msg)
		} else {
			data, err = s.serve(hr, rel, routes)
		}
		status := http.StatusOK
		var ae *apiError
		if err != nil {
			if !errors.As(err, &ae) {
				ae = errf(http.StatusInternalServerError, "%s", err.Error())
			}
			status = ae.code
		}
		s.mu.Lock()
		s.calls = append(s.calls, Call{Method: hr.Method, Path: rel, Status: status})
		s.mu.Unlock()
		s.log.Debug("pvesim: request", "method", hr.Method, "path", rel, "status", status)
		if ae != nil {
			if ae.code == http.StatusUnauthorized && s.opts.AuthFailureDelay > 0 {
				select {
				case <-time.After(s.opts.AuthFailureDelay):
				case <-hr.Context().Done():
				}
			}
			s.log.Debug("pvesim: error", "method", hr.Method, "path", rel, "status", ae.code, "message", strings.TrimSpace(ae.msg))
			writeError(w, ae)
			return
		}
		body, jerr := json.Marshal(envelope{Data: data})
		if jerr != nil {
			writeError(w, errf(500, "pvesim: encode answer: %v", jerr))
			return
		}
		h := w.Header()
		setPVEHeaders(h)
		h.Set("Content-Type", "application/json;charset=UTF-8")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

type envelope struct {
	Data any `json:"data"`
}

func setPVEHeaders(h http.Header) {
	date := time.Now().UTC().Format(http.TimeFormat)
	h.Set("Cache-Control", "max-age=0")
	h.Set("Date", date)
	h.Set("Expires", date)
	h.Set("Pragma", "no-cache")
	h.Set("Server", "pve-api-daemon/3.0")
}

// writeError writes PVE's error answer: "HTTP/1.1 <code> <first line>",
// Connection: close, body {"data":null,"message":"...\n"[,"errors":{...}]}.
func writeError(w http.ResponseWriter, ae *apiError) {
	reason, _, _ := strings.Cut(ae.msg, "\n")
	reason = escapeControls(strings.TrimRight(reason, "\r"))
	if reason == "" {
		reason = http.StatusText(ae.code)
	}
	var body []byte
	if !ae.noBody {
		m := map[string]any{"data": nil, "message": ae.msg}
		if len(ae.errors) > 0 {
			m["errors"] = ae.errors
		}
		body, _ = json.Marshal(m)
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		h := w.Header()
		setPVEHeaders(h)
		h.Set("Connection", "close")
		if body != nil {
			h.Set("Content-Type", "application/json;charset=UTF-8")
		}
		w.WriteHeader(ae.code)
		_, _ = w.Write(body)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		w.WriteHeader(ae.code)
		_, _ = w.Write(body)
		return
	}
	defer conn.Close()
	h := http.Header{}
	setPVEHeaders(h)
	h.Set("Connection", "close")
	if body != nil {
		h.Set("Content-Type", "application/json;charset=UTF-8")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	fmt.Fprintf(buf, "HTTP/1.1 %03d %s\r\n", ae.code, reason)
	_ = h.Write(buf)
	_, _ = buf.WriteString("\r\n")
	_, _ = buf.Write(body)
	_ = buf.Flush()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	drain(buf.Reader)
}

// escapeControls writes the control characters of a reason phrase (which
// can come from the URL) as \xNN, so the status line stays one line and a
// terminal showing it gets no escape sequences.
func escapeControls(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// drain discards what the client already sent so closing does not reset
// the connection before it read the answer.
func drain(r *bufio.Reader) {
	if n := r.Buffered(); n > 0 {
		_, _ = r.Discard(n)
	}
}

// serve runs one request through PVE's stages: auth, route, parameters
// from URI/query/body, token and permission checks, proxy to the node,
// schema validation, handler.
func (s *Sim) serve(hr *http.Request, rel string, routes map[string]handlerFunc) (any, error) {
	if !strings.HasPrefix(hr.URL.Path, apiBase+"/") {
		if strings.HasPrefix(hr.URL.Path, "/api2/") {
			return nil, errf(http.StatusNotImplemented, "no formatter for uri %s", hr.URL.Path)
		}
		return nil, errf(http.StatusNotImplemented, "no such uri")
	}
	method := hr.Method
	authID, userID, isToken, err := s.authenticate(hr, rel)
	if err != nil {
		return nil, err
	}
	if hr.ContentLength > maxPostBody {
		return nil, errTooLarge()
	}
	if hr.ContentLength > 0 && method != http.MethodPost && method != http.MethodPut {
		return nil, errf(http.StatusNotImplemented, "Unexpected content for method '%s'", method)
	}
	node, uriParams := s.schema.match(rel)
	var info *methodInfo
	if node != nil {
		info = node.methods[method]
	}
	if info == nil {
		return nil, errf(http.StatusNotImplemented, "Method '%s %s' not implemented", method, rel)
	}
	ps, err := extractParams(hr)
	if err != nil {
		return nil, err
	}
	delete(ps, "_dc")
	for k, v := range uriParams {
		if old, ok := ps[k]; ok && (old == nil || old.ref != "" || old.s != v) {
			return nil, paramErr1(k, "duplicate parameter (already defined in URI) with conflicting values!")
		}
		ps[k] = &value{s: v}
	}
	if isToken && !bool(info.AllowToken) {
		return nil, errf(http.StatusForbidden, "Permission check failed (URI '%s' not available with API token, need proper ticket.\n)", rel)
	}
	r := &request{ctx: hr.Context(), method: method, path: rel, info: info, p: ps, authID: authID, userID: userID}
	if err := s.checkPermissions(r, info.Permissions); err != nil {
		return nil, err
	}
	if info.Proxyto == "node" {
		if err := s.checkNodeReachable(r.str("node")); err != nil {
			return nil, err
		}
	}
	if errs := s.chk.check(info.Parameters, ps); len(errs) > 0 {
		return nil, paramError(errs)
	}
	h := routes[method+" "+node.path]
	if h == nil {
		return nil, errf(http.StatusNotImplemented, "Method '%s %s' not implemented by the simulator (pvesim implements a subset of the PVE API)", method, rel)
	}
	return h(r)
}

func (s *Sim) checkNodeReachable(node string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.nodes[node]
	if !ok {
		return errf(http.StatusInternalServerError,
			"hostname lookup '%s' failed - failed to get address info for: %s: Name or service not known", node, node)
	}
	if !n.online {
		// AnyEvent::HTTP's connect error, passed through by the proxy.
		return &apiError{code: 595, msg: "No route to host\n", noBody: true}
	}
	return nil
}

// authenticate is PVE's auth_handler: a ticket (cookie or Authorization
// header, plus CSRFPreventionToken for writes) or an API token.
func (s *Sim) authenticate(hr *http.Request, rel string) (authID, userID string, isToken bool, err error) {
	if (rel == "/access/ticket" && (hr.Method == http.MethodGet || hr.Method == http.MethodPost)) ||
		(rel == "/access/domains" && hr.Method == http.MethodGet) {
		return "", "", false, nil
	}
	authHeader := hr.Header.Get("Authorization")
	ticket := ""
	if c, e := hr.Cookie("PVEAuthCookie"); e == nil {
		ticket, _ = url.QueryUnescape(c.Value)
	}
	if ticket == "" {
		ticket = authValue(authHeader, "PVEAuthCookie")
	}
	failed := &apiError{code: http.StatusUnauthorized, msg: "Authentication failed!\n", noBody: true}
	if ticket == "" {
		apiToken := authValue(authHeader, "PVEAPIToken")
		if apiToken == "" {
			return "", "", false, &apiError{code: http.StatusUnauthorized, msg: "No ticket\n", noBody: true}
		}
		i := strings.LastIndex(apiToken, "=")
		if i <= 0 {
			return "", "", false, failed
		}
		id, secret := apiToken[:i], apiToken[i+1:]
		s.mu.Lock()
		tok, ok := s.tokens[id]
		var want string
		if ok {
			want = tok.secret
		}
		s.mu.Unlock()
		if !ok || subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 {
			s.log.Warn("pvesim: authentication failure", "token", id) // the id only, never the secret
			return "", "", false, failed
		}
		return id, tok.user, true, nil
	}
	s.mu.Lock()
	userid, ok := s.tickets[ticket]
	s.mu.Unlock()
	if !ok {
		return "", "", false, failed
	}
	if hr.Method != http.MethodGet && hr.Header.Get("CSRFPreventionToken") != csrfToken(ticket) {
		return "", "", false, &apiError{code: http.StatusUnauthorized, msg: "Permission denied - invalid csrf token\n", noBody: true}
	}
	return userid, userid, false, nil
}

// authValue is PVE's extract_auth_value.
func authValue(header, key string) string {
	for i := 0; i+len(key) < len(header); i++ {
		if (i == 0 || header[i-1] == ' ' || header[i-1] == '\t') && strings.HasPrefix(header[i:], key) {
			rest := header[i+len(key):]
			if rest[0] != '=' && rest[0] != ' ' {
				continue
			}
			v, _, _ := strings.Cut(rest[1:], ";")
			if u, err := url.PathUnescape(v); err == nil {
				v = u
			}
			return v
		}
	}
	return ""
}

// maxPostBody is pve-http-server's $limit_max_post (512 KiB since
// libpve-http-server-perl 5.2.1): a larger body is refused before it is read.
const maxPostBody = 512 << 10

// errTooLarge is pve-http-server's answer to a body over maxPostBody
// (AnyEvent.pm: $self->error($reqstate, 501, "for data too large")).
func errTooLarge() *apiError { return errf(http.StatusNotImplemented, "for data too large") }

// extractParams is PVE's extract_params: the urlencoded (or JSON) body of
// POST/PUT, then the query string on top.
func extractParams(hr *http.Request) (params, error) {
	ps := params{}
	if hr.Method == http.MethodPost || hr.Method == http.MethodPut {
		body, err := io.ReadAll(io.LimitReader(hr.Body, maxPostBody+1))
		if err != nil {
			return nil, errf(http.StatusBadRequest, "reading request body failed: %v", err)
		}
		if len(body) > maxPostBody { // chunked: no Content-Length to refuse up front
			return nil, errTooLarge()
		}
		ct := strings.ToLower(strings.TrimSpace(strings.Split(hr.Header.Get("Content-Type"), ";")[0]))
		if ct == "application/json" {
			if len(strings.TrimSpace(string(body))) > 0 {
				var m map[string]any
				if err := json.Unmarshal(body, &m); err != nil {
					return nil, errf(http.StatusBadRequest, "malformed JSON string: %v", err)
				}
				for k, v := range m {
					ps[k] = jsonValue(v)
				}
			}
		} else {
			decodeURLEncoded(ps, string(body))
		}
	}
	q := params{}
	decodeURLEncoded(q, hr.URL.RawQuery)
	for k, v := range q {
		ps[k] = v
	}
	return ps, nil
}

func jsonValue(v any) *value {
	switch t := v.(type) {
	case nil:
		return nil
	case string:
		return &value{s: t}
	case float64:
		return &value{s: strconv.FormatFloat(t, 'f', -1, 64)}
	case bool:
		if t {
			return &value{s: "1", ref: "JSON::PP::Boolean"}
		}
		return &value{s: "0", ref: "JSON::PP::Boolean"}
	case []any:
		l := make([]string, 0, len(t))
		for _, e := range t {
			if ev := jsonValue(e); ev != nil {
				l = append(l, ev.s)
			}
		}
		return &value{list: l}
	default:
		return &value{ref: "HASH"}
	}
}

// decodeURLEncoded is PVE's decode_urlencoded: pairs split on & or ;, a
// pair split on "=" (only the first two fields count), "+" is a space,
// an empty value is undef, repeated keys make a list.
func decodeURLEncoded(ps params, data string) {
	if data == "" {
		return
	}
	for kv := range strings.FieldsFuncSeq(data, func(r rune) bool { return r == '&' || r == ';' }) {
		fields := strings.Split(kv, "=")
		for len(fields) > 1 && fields[len(fields)-1] == "" { // Perl's split drops trailing empty fields
			fields = fields[:len(fields)-1]
		}
		k := unescapePVE(fields[0])
		if len(fields) < 2 {
			ps[k] = nil
			continue
		}
		v := unescapePVE(fields[1])
		if old := ps[k]; old != nil {
			if old.list != nil {
				old.list = append(old.list, v)
				continue
			}
			ps[k] = &value{list: []string{old.s, v}}
			continue
		}
		ps[k] = &value{s: v}
	}
}

func unescapePVE(s string) string {
	s = strings.ReplaceAll(s, "+", " ")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			n, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(n))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
