package remote_test

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/fhlab/provision/internal/remote"
)

func TestRedactor(t *testing.T) {
	token := fakeSwarmToken()
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{"registered secret", []string{"hunter2-long"}, "password=hunter2-long;", "password=[redacted];"},
		{"every occurrence", []string{"abc123"}, "abc123 and abc123", "[redacted] and [redacted]"},
		{"longest first", []string{"tok", "token-xyz"}, "token-xyz tok", "[redacted] [redacted]"},
		{"unregistered swarm token", nil, "docker swarm join --token " + token + " 10.0.0.1:2377", "docker swarm join --token [redacted] 10.0.0.1:2377"},
		{"registered swarm token", []string{token}, "join " + token, "join [redacted]"},
		{"empty secrets ignored", []string{"", "  "}, "nothing to hide", "nothing to hide"},
		{"no match", []string{"secret-value"}, "plain text", "plain text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := remote.NewRedactor(tt.secrets...)
			if got := r.String(tt.in); got != tt.want {
				t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got := string(r.Bytes([]byte(tt.in))); got != tt.want {
				t.Errorf("Bytes(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRedactSwarmTokens(t *testing.T) {
	for in, want := range map[string]string{
		"SWMTKN-1-abc-def":               "[redacted]",
		"a SWMTKN-1-abc-def.":            "a [redacted].",
		"SWMTKN-1-a SWMTKN-1-b":          "[redacted] [redacted]",
		"SWMTKN-2-abc (not a v1 token)":  "SWMTKN-2-abc (not a v1 token)",
		"swarm is active, no token here": "swarm is active, no token here",
	} {
		if got := remote.RedactSwarmTokens(in); got != want {
			t.Errorf("RedactSwarmTokens(%q) = %q, want %q", in, got, want)
		}
	}
	var nilRedactor *remote.Redactor
	if got := nilRedactor.String("join SWMTKN-1-abc"); got != "join [redacted]" {
		t.Errorf("nil Redactor: %q", got)
	}
}

func TestRedactorError(t *testing.T) {
	r := remote.NewRedactor()
	r.Add("api-token-0123")
	base := fmt.Errorf("join with api-token-0123: %w", fs.ErrPermission)
	err := r.Error(base)
	if strings.Contains(err.Error(), "api-token-0123") || !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("redacted error = %q", err)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Error("redacted error lost its chain")
	}
	if r.Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
	clean := errors.New("nothing secret")
	if r.Error(clean) != clean {
		t.Error("an error with nothing to hide was wrapped")
	}
}

func TestRedactorConcurrentAdd(t *testing.T) {
	r := remote.NewRedactor()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			secret := fmt.Sprintf("secret-%03d", i)
			r.Add(secret)
			if got := r.String("x " + secret + " y"); got != "x [redacted] y" {
				t.Errorf("String = %q", got)
			}
		})
	}
	wg.Wait()
}

// fakeSwarmToken is shaped like a join token; it is built at run time so no
// token-shaped literal sits in the repository.
func fakeSwarmToken() string {
	return "SWMTKN-1-" + strings.Repeat("f4k3", 12) + "-" + strings.Repeat("t0k", 8)
}
