package swarm

import (
	"errors"
	"regexp"
	"strings"

	"github.com/docker/docker/api/types/swarm"
)

// tokenPattern matches any swarm join token, known or not.
var tokenPattern = regexp.MustCompile(`SWMTKN-1-[A-Za-z0-9-]+`)

// Redact removes join tokens from s.
func Redact(s string) string { return tokenPattern.ReplaceAllString(s, "[redacted]") }

// redact returns err with every join token removed from its message.
func redact(err error, t swarm.JoinTokens) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, tok := range []string{t.Worker, t.Manager} {
		if tok != "" {
			msg = strings.ReplaceAll(msg, tok, "[redacted]")
		}
	}
	clean := Redact(msg)
	if clean == err.Error() {
		return err
	}
	return redactedError{msg: clean, err: err}
}

// redactedError keeps the chain for errors.Is while hiding the message.
type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Is(target error) bool {
	return errors.Is(e.err, target)
}
