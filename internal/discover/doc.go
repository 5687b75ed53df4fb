// Package discover sweeps an IPv4 address range for TCP endpoints (SSH,
// the Docker Engine API, the swarm manager port) and says which of them are
// inventory nodes and which are strangers.
//
// The sweep is one event loop over non-blocking sockets (see sweep_linux.go):
// a bounded window of connection attempts in flight, a token bucket for the
// attempts per second, one deadline per attempt kept in a FIFO (every attempt
// has the same timeout, so the FIFO is in deadline order), and sockets that
// saw a refusal reused for the next address. Open endpoints are handed to a
// small pool of goroutines that read the SSH banner or ask the Engine API's
// /_ping.
package discover
