package remote

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Redacted replaces every secret a Redactor hides.
const Redacted = "[redacted]"

// swarmToken matches Docker Swarm join and unlock tokens (SWMTKN-1-...).
var swarmToken = regexp.MustCompile(`SWMTKN-1-[A-Za-z0-9-]+`)

// RedactSwarmTokens replaces anything that looks like a Docker Swarm token
// (SWMTKN-1-...) in s with "[redacted]", registered or not.
func RedactSwarmTokens(s string) string {
	if !strings.Contains(s, "SWMTKN-1-") {
		return s
	}
	return swarmToken.ReplaceAllLiteralString(s, Redacted)
}

// A Redactor hides registered secrets, and every swarm token, in strings and
// errors. Callers construct one per run and register secrets as they learn
// them (join tokens, API tokens). It is safe for concurrent use. A nil
// *Redactor hides only swarm tokens.
type Redactor struct {
	mu       sync.RWMutex
	secrets  []string
	replacer *strings.Replacer
}

// NewRedactor returns a Redactor that hides the given secrets.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// Add registers more secrets. Empty and all-blank strings are ignored: they
// would hide everything or nothing useful.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		if strings.TrimSpace(s) == "" || slices.Contains(r.secrets, s) {
			continue
		}
		r.secrets = append(r.secrets, s)
	}
	// Longest first, so a secret that contains another is hidden whole.
	slices.SortStableFunc(r.secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	pairs := make([]string, 0, 2*len(r.secrets))
	for _, s := range r.secrets {
		pairs = append(pairs, s, Redacted)
	}
	r.replacer = strings.NewReplacer(pairs...)
}

// String returns s with every registered secret and every swarm token
// replaced by "[redacted]".
func (r *Redactor) String(s string) string {
	if r != nil {
		r.mu.RLock()
		rep := r.replacer
		r.mu.RUnlock()
		if rep != nil {
			s = rep.Replace(s)
		}
	}
	return RedactSwarmTokens(s)
}

// Bytes is String for byte slices; it returns a new slice when anything was
// hidden and b itself otherwise.
func (r *Redactor) Bytes(b []byte) []byte {
	s := string(b)
	if out := r.String(s); out != s {
		return []byte(out)
	}
	return b
}

// Error returns err with its message redacted. The result still unwraps to
// err, so errors.Is and errors.As keep working; the fields of typed errors
// in the chain are not changed by this call. A nil err stays nil, and an
// error with nothing to hide is returned as is.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := r.String(msg)
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
