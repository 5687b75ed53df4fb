package pvesim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// rawConn opens a plain-HTTP connection to a fresh simulator on loopback;
// every read and write fails after a generous guard deadline instead of
// hanging the test.
func rawConn(t *testing.T, opts Options) net.Conn {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	s.AddNode("pve1", true)
	s.AddToken(testTokenID, testSecret(), false, nil)
	srv, err := s.Listen(context.Background(), "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	conn, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn
}

func authHeader() string {
	return "Authorization: PVEAPIToken=" + testTokenID + "=" + testSecret() + "\r\n"
}

// readAnswer reads a status line and headers; it returns the status line
// and the headers as sent.
func readAnswer(t *testing.T, br *bufio.Reader) (status string, header []string) {
	t.Helper()
	status, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read status line: %v", err)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read header: %v", err)
		}
		if l == "\r\n" {
			return status, header
		}
		header = append(header, l)
	}
}

// wantClosed reads until the server closes the connection; a guard
// deadline (set by rawConn) turns a connection held open into a failure.
func wantClosed(t *testing.T, r io.Reader, what string) {
	t.Helper()
	_, err := io.Copy(io.Discard, r)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: the server kept the connection open", what)
	}
}

// TestStatusLineControlCharacters: what the URL puts into an error's
// status line cannot add lines or terminal escapes to it.
func TestStatusLineControlCharacters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ path, want string }{
		{"/nodes/x%0dy/qemu", `HTTP/1.1 500 hostname lookup 'x\x0dy' failed`},
		{"/nodes/x%0d%0aSet-Cookie:%20a/qemu", "HTTP/1.1 500 hostname lookup 'x\r\n"}, // the first line only, as PVE
		{"/nodes/x%1b[31m/qemu", `HTTP/1.1 500 hostname lookup 'x\x1b[31m' failed`},
		{"/nodes/x%7f%00%c2%9b/qemu", `HTTP/1.1 500 hostname lookup 'x\x7f\x00\x9b' failed`},
		{"/no%0dsuch", `HTTP/1.1 501 Method 'GET /no\x0dsuch' not implemented`},
	} {
		conn := rawConn(t, Options{})
		fmt.Fprintf(conn, "GET /api2/json%s HTTP/1.1\r\nHost: x\r\n%s\r\n", tc.path, authHeader())
		br := bufio.NewReader(conn)
		status, header := readAnswer(t, br)
		if !strings.HasPrefix(status, tc.want) || !strings.HasSuffix(status, "\r\n") {
			t.Errorf("%s: status line %q, want it to start with %q", tc.path, status, tc.want)
		}
		if strings.ContainsFunc(strings.TrimSuffix(status, "\r\n"), isControl) {
			t.Errorf("%s: control characters in status line %q", tc.path, status)
		}
		for _, h := range header {
			if strings.HasPrefix(h, "Set-Cookie") {
				t.Errorf("%s: injected header %q", tc.path, h)
			}
		}
	}
}

// TestBodyTooLarge: a body over pve-http-server's limit is refused like
// pveproxy does (501 "for data too large"), before it is read when its
// length is announced, and its content is never echoed.
func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	const path = "/api2/json/nodes/pve1/qemu/100/config"
	t.Run("announced", func(t *testing.T) {
		t.Parallel()
		conn := rawConn(t, Options{})
		// Only the head is sent: the answer must not wait for the body.
		fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n",
			path, authHeader(), maxPostBody+1)
		br := bufio.NewReader(conn)
		status, _ := readAnswer(t, br)
		if status != "HTTP/1.1 501 for data too large\r\n" {
			t.Errorf("status line %q", status)
		}
		body, _ := io.ReadAll(br)
		if string(body) != `{"data":null,"message":"for data too large\n"}` {
			t.Errorf("body %q", body)
		}
	})
	t.Run("chunked", func(t *testing.T) {
		t.Parallel()
		conn := rawConn(t, Options{})
		go func() {
			fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n", path, authHeader())
			chunk := "description=" + strings.Repeat("A", 64<<10)
			for range (maxPostBody / len(chunk)) + 2 {
				if _, err := fmt.Fprintf(conn, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
					return // the server refused and closed
				}
			}
			fmt.Fprint(conn, "0\r\n\r\n")
		}()
		br := bufio.NewReader(conn)
		status, _ := readAnswer(t, br)
		if status != "HTTP/1.1 501 for data too large\r\n" {
			t.Errorf("status line %q", status)
		}
		body, _ := io.ReadAll(br)
		if strings.Contains(string(body), "AAAA") || len(body) > 100 {
			t.Errorf("the body was echoed: %d bytes", len(body))
		}
	})
	t.Run("at the limit", func(t *testing.T) {
		t.Parallel()
		conn := rawConn(t, Options{})
		body := "description=" + strings.Repeat("A", maxPostBody-len("description="))
		go fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
			path, authHeader(), len(body), body)
		status, _ := readAnswer(t, bufio.NewReader(conn))
		// Read whole, then checked (the token has no privileges).
		if !strings.HasPrefix(status, "HTTP/1.1 403 Permission check failed (/vms/100,") {
			t.Errorf("status line %q", status)
		}
	})
}

// TestStalledClientsLoseTheirConnection: a client that stops sending in
// the middle of a body, or idles between requests, is disconnected.
func TestStalledClientsLoseTheirConnection(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	t.Run("mid-body", func(t *testing.T) {
		t.Parallel()
		conn := rawConn(t, Options{ReadTimeout: timeout})
		fmt.Fprintf(conn, "PUT /api2/json/nodes/pve1/qemu/100/config HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ndescription=abc",
			authHeader())
		wantClosed(t, conn, "a body stalled after 15 of 1000 bytes")
	})
	t.Run("mid-header", func(t *testing.T) {
		t.Parallel()
		conn := rawConn(t, Options{ReadTimeout: timeout})
		fmt.Fprint(conn, "GET /api2/json/version HTTP/1.1\r\nHost: x\r\n")
		wantClosed(t, conn, "a request head stalled")
	})
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		conn := rawConn(t, Options{IdleTimeout: timeout})
		fmt.Fprintf(conn, "GET /api2/json/version HTTP/1.1\r\nHost: x\r\n%s\r\n", authHeader())
		br := bufio.NewReader(conn)
		status, header := readAnswer(t, br)
		if status != "HTTP/1.1 200 OK\r\n" {
			t.Fatalf("status line %q", status)
		}
		var n int
		for _, h := range header {
			if _, err := fmt.Sscanf(h, "Content-Length: %d", &n); err == nil {
				break
			}
		}
		if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
			t.Fatal(err)
		}
		wantClosed(t, br, "an idle kept-alive connection")
	})
}

// FuzzEscapeControls: whatever a message holds, the reason phrase made of
// it has no control character, and text without one is left alone.
func FuzzEscapeControls(f *testing.F) {
	f.Add("hostname lookup 'x\x1b[31m' failed")
	f.Add("Method 'GET /a\rb' not implemented")
	f.Add("caf\u00e9 \u009b\x7f\x00")
	f.Fuzz(func(t *testing.T, msg string) {
		got := escapeControls(msg)
		if strings.ContainsFunc(got, isControl) {
			t.Fatalf("escapeControls(%q) = %q", msg, got)
		}
		if !strings.ContainsFunc(msg, isControl) && got != msg {
			t.Fatalf("escapeControls(%q) changed it to %q", msg, got)
		}
	})
}
