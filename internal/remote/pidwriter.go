package remote

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
)

// pidWriter collects a command's stderr and takes out the line in which
// the remote shell announced its PID ("provision-pid:<nonce>:<pid>"). The
// nonce keeps the command's own output from being taken for it.
type pidWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	prefix []byte
	found  bool
	pidNum int
	ready  chan struct{} // closed when the PID is known
}

func newPIDWriter() (*pidWriter, error) {
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return &pidWriter{
		prefix: []byte("provision-pid:" + hex.EncodeToString(nonce) + ":"),
		ready:  make(chan struct{}),
	}, nil
}

// announce is the shell snippet put before the command.
func (w *pidWriter) announce() string {
	return "echo " + string(w.prefix) + "$$ >&2; "
}

func (w *pidWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.found {
		w.extract()
	}
	return len(p), nil
}

// extract removes the announcement line once it is complete.
func (w *pidWriter) extract() {
	b := w.buf.Bytes()
	i := bytes.Index(b, w.prefix)
	if i < 0 || (i > 0 && b[i-1] != '\n') {
		return
	}
	end := bytes.IndexByte(b[i:], '\n')
	if end < 0 {
		return // not complete yet
	}
	pid, err := strconv.Atoi(string(b[i+len(w.prefix) : i+end]))
	if err != nil {
		return
	}
	w.pidNum, w.found = pid, true
	close(w.ready)
	rest := append(bytes.Clone(b[:i]), b[i+end+1:]...)
	w.buf.Reset()
	w.buf.Write(rest)
}

// pid returns the announced PID, or 0 if it is not known (yet).
func (w *pidWriter) pid() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pidNum
}

func (w *pidWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}
