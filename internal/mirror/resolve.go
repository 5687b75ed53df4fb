package mirror

import (
	"fmt"
	"sort"
	"strings"
)

// Candidate is a package that can go into the repository: a .deb on disk,
// or an installed package that will be repacked.
type Candidate struct {
	Control   *Stanza
	Deb       string // path of the .deb; "" for an installed package not repacked yet
	Installed bool
}

func (c *Candidate) Name() string    { return c.Control.Get("Package") }
func (c *Candidate) Version() string { return c.Control.Get("Version") }
func (c *Candidate) Arch() string    { return c.Control.Get("Architecture") }

// Pool is every candidate by name, for one architecture (arch: all
// packages are in every architecture's pool).
type Pool struct {
	Arch     string
	byName   map[string]*Candidate
	provides map[string][]*Candidate
}

// NewPool keeps the candidates of arch (and arch: all); of two with the
// same name, the .deb file wins over the installed package (no repack).
func NewPool(arch string, cands []*Candidate) *Pool {
	p := &Pool{Arch: arch, byName: map[string]*Candidate{}, provides: map[string][]*Candidate{}}
	for _, c := range cands {
		if c.Arch() != arch && c.Arch() != "all" {
			continue
		}
		if old, ok := p.byName[c.Name()]; ok && (old.Deb != "" || c.Deb == "") {
			continue
		}
		p.byName[c.Name()] = c
	}
	for _, c := range p.byName {
		for _, pr := range splitList(c.Control.Get("Provides")) {
			name, _ := relation(pr)
			p.provides[name] = append(p.provides[name], c)
		}
	}
	return p
}

// Closure is the wanted packages and everything they Depend or
// Pre-Depend on, transitively, less the base every Debian system has: the
// Essential packages and what they depend on (dpkg never leaves those
// unsatisfied, so a host has them). Of alternatives (a | b), the first the
// pool has is taken. Version constraints are not compared: the sources
// are one distribution's. A dependency the pool cannot satisfy is an error
// naming the package that needs it.
func (p *Pool) Closure(wanted []string) ([]*Candidate, error) {
	base := map[string]*Candidate{}
	var essential []string
	for name, c := range p.byName {
		if c.Control.Get("Essential") == "yes" {
			essential = append(essential, name)
		}
	}
	sort.Strings(essential)
	p.walk(essential, base, map[string]*Candidate{}, nil)
	picked := map[string]*Candidate{}
	var missing []string
	p.walk(wanted, picked, base, &missing)
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("%s: no package in the sources for %s", p.Arch, strings.Join(missing, ", "))
	}
	out := make([]*Candidate, 0, len(picked))
	for _, c := range picked {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// walk adds roots and their dependencies to picked, stopping at packages
// in stop; unresolvable names go to missing (when not nil).
func (p *Pool) walk(roots []string, picked, stop map[string]*Candidate, missing *[]string) {
	var visit func(name, why string)
	visit = func(name, why string) {
		c := p.find(name)
		if c == nil {
			if missing != nil {
				*missing = append(*missing, fmt.Sprintf("%s (needed by %s)", name, why))
			}
			return
		}
		if picked[c.Name()] != nil || stop[c.Name()] != nil {
			return
		}
		picked[c.Name()] = c
		for _, field := range []string{"Pre-Depends", "Depends"} {
			for _, group := range splitList(c.Control.Get(field)) {
				alts := strings.Split(group, "|")
				choice, _ := relation(alts[0])
				for _, a := range alts {
					n, _ := relation(a)
					if c := p.find(n); c != nil && stop[c.Name()] != nil {
						choice = "" // the base has one of them already
						break
					}
				}
				if choice != "" {
					for _, a := range alts {
						if n, _ := relation(a); p.find(n) != nil {
							choice = n
							break
						}
					}
					visit(choice, c.Name())
				}
			}
		}
	}
	for _, r := range roots {
		visit(r, "the inventory")
	}
}

func (p *Pool) find(name string) *Candidate {
	if c := p.byName[name]; c != nil {
		return c
	}
	if cs := p.provides[name]; len(cs) > 0 {
		return cs[0]
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// relation splits "libc6:any (>= 2.34)" into the name and the rest.
func relation(s string) (name, constraint string) {
	s = strings.TrimSpace(s)
	name, constraint, _ = strings.Cut(s, " ")
	name, _, _ = strings.Cut(name, ":")
	name, _, _ = strings.Cut(name, "(")
	return name, strings.TrimSpace(constraint)
}
