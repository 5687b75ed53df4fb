// Package selfjoin lets Pis join the swarm by themselves at first boot.
//
// provision keeps a small lab CA in its state directory (<state-dir>/join)
// and serves a join endpoint over HTTPS on the admin host. `provision image
// seed` issues each self-joining Pi a ticket: random, single-use, bound to
// the node's name and inventory address, valid for pis.joinServer.ticketTTL.
// Only the ticket's SHA-256 is kept (tickets.json, 0600). The seed carries
// the ticket, the endpoint's URL and the CA certificate; at first boot the
// node's provision-self-join script presents the ticket and gets back the
// Engine API join request (worker token and manager addresses), which it
// hands straight to its own dockerd. The swarm stage then only waits for
// those nodes to appear and labels them.
//
// A ticket that is unknown, used already, expired, of another node or
// presented from another address than its node's is refused with an HTTP
// error and logged (without the ticket). The join token is never written:
// not to a seed, the state directory, a log or an error.
package selfjoin
