package ui

import (
	"io"
	"regexp"
	"strings"
)

// privateKey matches a PEM or OpenSSH private key block, also when its
// newlines were escaped (\n) by a log handler that quotes values.
var privateKey = regexp.MustCompile(`-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----(?s:.*?)-----END ([A-Z0-9]+ )*PRIVATE KEY-----`)

// RedactPrivateKeys replaces every private key block in s with
// "[redacted private key]".
func RedactPrivateKeys(s string) string {
	if !strings.Contains(s, "PRIVATE KEY-----") {
		return s
	}
	return privateKey.ReplaceAllLiteralString(s, "[redacted private key]")
}

// RedactWriter passes each write through Redact to W. Each write should be
// whole (a record, a line), so that no secret is split across writes.
type RedactWriter struct {
	W      io.Writer
	Redact func(string) string
}

func (r RedactWriter) Write(p []byte) (int, error) {
	if r.Redact == nil {
		return r.W.Write(p)
	}
	if _, err := io.WriteString(r.W, r.Redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
