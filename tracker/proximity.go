package tracker

import (
	"net/netip"
	"slices"
)

// Matching prefers nearby peers: a newcomer is suggested peers of its own
// network group first (Config.Networks, else its /24 or /48), where
// segments travel fastest and cross no transit link. Free slots still come
// first: a nearby peer with none is no use.

// groupPrefix is one prefix of a named network group.
type groupPrefix struct {
	prefix netip.Prefix
	name   string
}

// parseNetworks lists the groups' prefixes, longest first, so the first
// match is the longest. Validate checked them.
func parseNetworks(groups []NetworkGroup) []groupPrefix {
	var out []groupPrefix
	for _, g := range groups {
		for _, c := range g.CIDRs {
			p, _ := netip.ParsePrefix(c)
			out = append(out, groupPrefix{p.Masked(), g.Name})
		}
	}
	slices.SortStableFunc(out, func(a, b groupPrefix) int { return b.prefix.Bits() - a.prefix.Bits() })
	return out
}

// groupOf names the network group of a client IP: a configured group's
// name, else its /24 (IPv4) or /48 (IPv6), else "" (no group).
func (s *Server) groupOf(ip string) string {
	a, ok := clientAddr(ip)
	if !ok {
		return ""
	}
	for _, g := range s.groups {
		if g.prefix.Contains(a) {
			return "group:" + g.name
		}
	}
	return "net:" + networkOf(a).String()
}

// clientAddr parses a client IP, IPv4-mapped addresses as IPv4.
func clientAddr(ip string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(ip)
	return a.Unmap().WithZone(""), err == nil
}

// networkOf is the first address of a's /24 (IPv4) or /48 (IPv6): one
// household's or office's network. It groups viewers for matching and
// counts hash reporters once per network (hub.network).
func networkOf(a netip.Addr) netip.Addr {
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits) // a valid address without a zone: no error
	return p.Addr()
}

// nearBonus is what sharing a group adds to a candidate's score: it
// outweighs the free-slot count and up to ~100 recent suggestions (the
// load that spreads newcomers over seeders), and less than having free
// slots at all (see candidate.score).
const nearBonus = 100

// nearIndex lists a swarm's members by network group, so that a newcomer
// finds its group's peers in a swarm too big to consider every member.
type nearIndex[P comparable] map[string][]P

func (n *nearIndex[P]) add(group string, p P) {
	if group == "" {
		return
	}
	if *n == nil {
		*n = make(nearIndex[P])
	}
	(*n)[group] = append((*n)[group], p)
}

func (n nearIndex[P]) remove(group string, p P) {
	g := n[group]
	i := slices.Index(g, p)
	if i < 0 {
		return
	}
	last := len(g) - 1
	var zero P
	g[i], g[last] = g[last], zero
	if last == 0 {
		delete(n, group)
		return
	}
	n[group] = g[:last]
}
