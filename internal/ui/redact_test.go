package ui

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestRedactPrivateKeys(t *testing.T) {
	openssh := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAEbm9uZQ==\n-----END OPENSSH PRIVATE KEY-----\n"
	tests := []struct {
		name, in, want string
	}{
		{"openssh", "key: " + openssh + "done", "key: [redacted private key]\ndone"},
		{"rsa pem", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "[redacted private key]"},
		{"pkcs8", "a -----BEGIN PRIVATE KEY-----\nMC4C\n-----END PRIVATE KEY----- b", "a [redacted private key] b"},
		{"quoted by a log handler", `err="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"`, `err="[redacted private key]\n"`},
		{"public key stays", "ssh-ed25519 AAAAC3Nz admin@lab", "ssh-ed25519 AAAAC3Nz admin@lab"},
		{"two keys", "-----BEGIN EC PRIVATE KEY-----x-----END EC PRIVATE KEY----- and -----BEGIN EC PRIVATE KEY-----y-----END EC PRIVATE KEY-----", "[redacted private key] and [redacted private key]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactPrivateKeys(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWarnHandlerPrintsOnlyWarningsAsLines(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(NewWarnHandler(RedactWriter{W: &b, Redact: func(s string) string { return strings.ReplaceAll(s, "pw", "[redacted]") }}))
	log.Debug("debug")
	log.Info("info")
	log.With("node", "mgr-1").WithGroup("ssh").Warn("host key pw changed", "port", 22)
	log.Error("failed", "err", "boom")
	want := " ! host key [redacted] changed (node=mgr-1, ssh.port=22)\n ✗ failed (err=boom)\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
	if strings.Contains(b.String(), "level=") || strings.Contains(b.String(), "time=") {
		t.Errorf("warnings printed as log records: %q", b.String())
	}
}
