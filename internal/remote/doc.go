// Package remote runs commands on lab nodes over SSH and reaches their
// Unix sockets (the Docker Engine API) through the same connection.
//
// It is a domain package: it takes a context.Context and explicit
// dependencies (a signer, a known_hosts policy, a redactor, a logger) and
// keeps no package-level mutable state.
//
// Host keys are never ignored. A KnownHosts trusts a host on first use by
// appending its key to a known_hosts file in OpenSSH format and refuses a
// host whose key differs from the recorded one with ErrHostKeyChanged; Dial
// never retries that error.
package remote
