package selfjoin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
)

// DirName is the join directory inside the state directory: the lab CA,
// the endpoint's certificate and the tickets' hashes.
const DirName = "join"

// Endpoint is one lab's join endpoint, as the inventory places it.
type Endpoint struct {
	Addr netip.AddrPort // where it listens and what the seeds name
	Dir  string         // <state-dir>/join
	TTL  time.Duration  // of the tickets it issues
	Now  func() time.Time
}

// ErrNoSelfJoin is returned by FromInventory for an inventory without
// pis.joinServer.address.
var ErrNoSelfJoin = errors.New("no rack joins by itself: pis.joinServer.address is not set")

// FromInventory places the endpoint from pis.joinServer (a validated
// inventory) and the state directory.
func FromInventory(inv *inventory.Inventory, stateDir string) (*Endpoint, error) {
	p := inv.Lab.Pis
	if p == nil || p.JoinServer.Address == "" {
		return nil, ErrNoSelfJoin
	}
	ip, err := netip.ParseAddr(p.JoinServer.Address)
	if err != nil {
		return nil, fmt.Errorf("pis.joinServer.address %q: %w", p.JoinServer.Address, err)
	}
	ttl, err := time.ParseDuration(p.JoinServer.TicketTTL)
	if err != nil {
		return nil, fmt.Errorf("pis.joinServer.ticketTTL %q: %w", p.JoinServer.TicketTTL, err)
	}
	return &Endpoint{Addr: netip.AddrPortFrom(ip, uint16(p.JoinServer.Port)), Dir: filepath.Join(stateDir, DirName), TTL: ttl}, nil
}

func (e *Endpoint) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// URL is what seeds name: https://ADDR:PORT/v1/join.
func (e *Endpoint) URL() string {
	return "https://" + net.JoinHostPort(e.Addr.Addr().String(), strconv.Itoa(int(e.Addr.Port()))) + JoinPath
}

// Store is the endpoint's ticket store.
func (e *Endpoint) Store() *Store { return &Store{Dir: e.Dir, Now: e.Now} }

// Seed returns what node n's seed carries. previous is the ticket its
// last seed carried ("" when none): it is kept while it is unused and has
// more than half of its lifetime left, so seeding again changes nothing;
// otherwise n is issued a new ticket (the old one stops working).
func (e *Endpoint) Seed(n *inventory.Node, previous string) (*render.JoinSeed, error) {
	pki, err := EnsurePKI(e.Dir, e.Addr.Addr(), e.now())
	if err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(n.IP)
	if err != nil {
		return nil, fmt.Errorf("seed %s: address %q: %w", n.Name, n.IP, err)
	}
	if previous != "" {
		if t, err := e.Store().Check(previous, n.Name, ip); err == nil && t.Expires.Sub(e.now()) > e.TTL/2 {
			return &render.JoinSeed{Node: n.Name, URL: e.URL(), Ticket: previous, CACert: string(pki.CACert)}, nil
		}
	}
	ticket, _, err := e.Store().Issue(n.Name, ip, e.TTL)
	if err != nil {
		return nil, err
	}
	return &render.JoinSeed{Node: n.Name, URL: e.URL(), Ticket: ticket, CACert: string(pki.CACert)}, nil
}

// Serve serves the endpoint until ctx ends, getting the token from grant
// for each valid ticket. Refusals and exchanges are logged to log.
func (e *Endpoint) Serve(ctx context.Context, grant GrantFunc, log *slog.Logger) error {
	pki, err := EnsurePKI(e.Dir, e.Addr.Addr(), e.now())
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", e.Addr.String())
	if err != nil {
		return fmt.Errorf("join endpoint: %w", err)
	}
	log.Info("join endpoint listening", "url", e.URL())
	return Serve(ctx, ln, pki.Server, &Handler{Store: e.Store(), Grant: grant, Log: log}, log)
}
