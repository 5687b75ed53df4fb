package selfjoin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// TicketsFile holds the tickets' hashes in the join directory (0600).
const TicketsFile = "tickets.json"

// ticketPrefix marks a ticket, so a scan (or a human) can tell one.
const ticketPrefix = "pjt_"

// Store keeps the tickets of one lab: only their SHA-256, the node each is
// bound to, its address, expiry and use. A lock file serialises the
// processes that issue and redeem tickets (image seed, swarm).
type Store struct {
	Dir string
	Now func() time.Time // default time.Now

	mu sync.Mutex
}

// Ticket is what the store knows about one ticket: never the ticket itself.
type Ticket struct {
	Node     string    `json:"node"`
	Addr     string    `json:"addr"`
	Hash     string    `json:"sha256"`
	Issued   time.Time `json:"issued"`
	Expires  time.Time `json:"expires"`
	Used     time.Time `json:"used,omitzero"`
	UsedFrom string    `json:"usedFrom,omitempty"`
}

type ticketsFile struct {
	Version int      `json:"version"`
	Tickets []Ticket `json:"tickets"`
}

// Refusal is a ticket the endpoint does not accept, and why. Its message
// names the node and the reason, never the ticket.
type Refusal struct {
	Reason Reason
	Node   string // the ticket's node, when the ticket is known
	Detail string
}

// Reason is why a ticket was refused.
type Reason string

// The reasons a ticket is refused.
const (
	Unknown      Reason = "unknown ticket"
	Reused       Reason = "ticket used already"
	Expired      Reason = "ticket expired"
	WrongAddress Reason = "ticket presented from another address than its node's"
	WrongNode    Reason = "ticket of another node"
)

func (r *Refusal) Error() string {
	s := string(r.Reason)
	if r.Node != "" {
		s += " (node " + r.Node + ")"
	}
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	return s
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Issue makes a new ticket for node at addr, valid for ttl, and records
// its hash; a ticket issued to the node before and not used is replaced
// (the new seed supersedes the old). Tickets that ended more than a day
// ago are dropped.
func (s *Store) Issue(node string, addr netip.Addr, ttl time.Duration) (string, time.Time, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", time.Time{}, err
	}
	ticket := ticketPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	now := s.now().UTC()
	t := Ticket{Node: node, Addr: addr.String(), Hash: hash(ticket), Issued: now, Expires: now.Add(ttl)}
	err := s.update(func(f *ticketsFile) error {
		kept := f.Tickets[:0]
		for _, old := range f.Tickets {
			if old.Node == node && old.Used.IsZero() {
				continue
			}
			if now.Sub(old.Expires) > 24*time.Hour {
				continue
			}
			kept = append(kept, old)
		}
		f.Tickets = append(kept, t)
		return nil
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue a join ticket for %s: %w", node, err)
	}
	return ticket, t.Expires, nil
}

// Check says whether ticket would be accepted from node at from, changing
// nothing. Redeem checks again, and uses it.
func (s *Store) Check(ticket, node string, from netip.Addr) (Ticket, error) {
	var t Ticket
	err := s.update(func(f *ticketsFile) error {
		i, err := find(f, ticket, node, from, s.now())
		if err == nil {
			t = f.Tickets[i]
		}
		return errNoWrite{err}
	})
	return t, unwrapNoWrite(err)
}

// Redeem uses ticket, presented by node from the address from: it must be
// known, unused, unexpired, of that node, and from its address. The use is
// written before Redeem returns, so a ticket is good for one join only,
// also across restarts.
func (s *Store) Redeem(ticket, node string, from netip.Addr) (Ticket, error) {
	var t Ticket
	err := s.update(func(f *ticketsFile) error {
		i, err := find(f, ticket, node, from, s.now())
		if err != nil {
			return errNoWrite{err}
		}
		f.Tickets[i].Used = s.now().UTC()
		f.Tickets[i].UsedFrom = from.String()
		t = f.Tickets[i]
		return nil
	})
	return t, unwrapNoWrite(err)
}

// Tickets lists the recorded tickets (hashes only), by node.
func (s *Store) Tickets() ([]Ticket, error) {
	var out []Ticket
	err := s.update(func(f *ticketsFile) error {
		out = append(out, f.Tickets...)
		return errNoWrite{}
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, unwrapNoWrite(err)
}

func find(f *ticketsFile, ticket, node string, from netip.Addr, now time.Time) (int, error) {
	if !strings.HasPrefix(ticket, ticketPrefix) {
		return -1, &Refusal{Reason: Unknown}
	}
	h := hash(ticket)
	for i, t := range f.Tickets {
		if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(h)) != 1 {
			continue
		}
		switch {
		case t.Node != node:
			return -1, &Refusal{Reason: WrongNode, Node: t.Node, Detail: "presented as " + node}
		case !t.Used.IsZero():
			return -1, &Refusal{Reason: Reused, Node: t.Node, Detail: "used at " + t.Used.Format(time.RFC3339) + " from " + t.UsedFrom}
		case !now.Before(t.Expires):
			return -1, &Refusal{Reason: Expired, Node: t.Node, Detail: "expired at " + t.Expires.Format(time.RFC3339) + "; seed the node again (provision image seed)"}
		case from.Unmap().String() != t.Addr:
			return -1, &Refusal{Reason: WrongAddress, Node: t.Node, Detail: "from " + from.Unmap().String() + ", the node's address is " + t.Addr}
		}
		return i, nil
	}
	return -1, &Refusal{Reason: Unknown}
}

func hash(ticket string) string {
	s := sha256.Sum256([]byte(ticket))
	return hex.EncodeToString(s[:])
}

// errNoWrite carries an update's result without writing the file.
type errNoWrite struct{ err error }

func (e errNoWrite) Error() string {
	if e.err == nil {
		return "no write"
	}
	return e.err.Error()
}

func unwrapNoWrite(err error) error {
	var nw errNoWrite
	if errors.As(err, &nw) {
		return nw.err
	}
	return err
}

// update reads the tickets file under the lock, calls fn and writes the
// file back (atomically, 0600) unless fn returns an error.
func (s *Store) update(fn func(*ticketsFile) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	unlock, err := lockFile(s.Dir, "tickets.lock")
	if err != nil {
		return err
	}
	defer unlock()
	path := filepath.Join(s.Dir, TicketsFile)
	f := &ticketsFile{Version: 1}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(data, f); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if f.Version != 1 {
			return fmt.Errorf("%s: version %d, this provision reads version 1", path, f.Version)
		}
	}
	if err := fn(f); err != nil {
		return err
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(out, '\n'), 0o600)
}
