//go:build linux

// Package netlab builds a small internet out of network namespaces for
// tests: one "internet" segment (203.0.113.0/24) where the tracker and the
// CDN live, and households and offices, each a LAN (198.51.100.0/24, the
// same in every home, as 192.168.1.0/24 is in real ones) behind its own NAT
// router. Nothing routes out of the lab: it has no default route to the
// machine's network. It needs root, iproute2 and nftables.
package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// NAT is how a router maps and filters.
type NAT int

const (
	// Home is a port-preserving NAT with a stateful firewall: unsolicited
	// packets from the WAN are dropped, as home routers do. Two viewers
	// behind such routers meet through STUN (hole punching).
	Home NAT = iota
	// NoFirewall is the same NAT without the firewall: the router takes
	// a peer's early check for traffic to itself and later maps its own
	// check to another port than STUN advertised.
	NoFirewall
	// Symmetric maps every flow to a random port (masquerade
	// fully-random) behind the same firewall: STUN's address is useless to
	// peers, and only a relay connects two of them.
	Symmetric
)

func (n NAT) String() string {
	return [...]string{"home", "no-firewall", "symmetric"}[n]
}

// Internet is where the lab's servers listen.
const Internet = "203.0.113.1"

// Lab is one test's namespaces.
type Lab struct {
	t      testing.TB
	prefix string
	inet   *Host

	mu      sync.Mutex
	routers int
}

// Host is a network namespace with one address.
type Host struct {
	NS string // namespace name, for ip netns exec
	IP string
}

// Available reports why the lab cannot run here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("netlab needs root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("netlab needs %s (make deps)", tool)
		}
	}
	return nil
}

// New builds the internet segment; everything is removed when the test
// ends. Tests that need the lab fail (not skip) where it cannot run, unless
// NETLAB_SKIP is set: make test installs what it needs and runs as root.
func New(t testing.TB) *Lab {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("NETLAB_SKIP") != "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	l := &Lab{t: t, prefix: "nl" + hex.EncodeToString(b)}
	l.inet = &Host{NS: l.prefix + "-inet", IP: Internet}
	t.Cleanup(l.remove)
	l.addNS(l.inet.NS)
	l.ip(l.inet.NS, "link add br0 type bridge")
	l.ip(l.inet.NS, "addr add "+Internet+"/24 dev br0")
	l.ip(l.inet.NS, "link set br0 up")
	return l
}

// Internet is the host on the internet segment, for the tracker and CDN.
func (l *Lab) Internet() *Host { return l.inet }

// Household is a LAN of n hosts behind one router of the given kind: one
// host for a home, several for an office (one public address, one LAN).
// uplinkKbit, if positive, caps the router's upload to the internet (tc
// tbf), as a home's uplink is capped.
func (l *Lab) Household(nat NAT, n, uplinkKbit int) []*Host {
	l.mu.Lock()
	l.routers++
	k := l.routers
	l.mu.Unlock()
	r := fmt.Sprintf("%s-r%d", l.prefix, k)
	wan := fmt.Sprintf("203.0.113.%d", 10+k)
	l.addNS(r)
	l.ip(r, fmt.Sprintf("link add wan type veth peer name r%d netns %s", k, l.inet.NS))
	l.ip(l.inet.NS, fmt.Sprintf("link set r%d master br0 up", k))
	l.ip(r, "addr add "+wan+"/24 dev wan")
	l.ip(r, "link set wan up")
	l.ip(r, "link add lan type bridge")
	l.ip(r, "addr add 198.51.100.1/24 dev lan")
	l.ip(r, "link set lan up")
	l.run("ip", "netns", "exec", r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	if uplinkKbit > 0 {
		l.run("ip", "netns", "exec", r, "tc", "qdisc", "add", "dev", "wan", "root", "tbf",
			"rate", fmt.Sprintf("%dkbit", uplinkKbit), "burst", "16kb", "latency", "100ms")
	}
	l.nft(r, rules(nat))
	var hosts []*Host
	for j := range n {
		h := &Host{NS: fmt.Sprintf("%s-h%d-%d", l.prefix, k, j), IP: fmt.Sprintf("198.51.100.%d", 10+j)}
		l.addNS(h.NS)
		l.ip(r, fmt.Sprintf("link add p%d type veth peer name eth0 netns %s", j, h.NS))
		l.ip(r, fmt.Sprintf("link set p%d master lan up", j))
		l.ip(h.NS, "addr add "+h.IP+"/24 dev eth0")
		l.ip(h.NS, "link set eth0 up")
		l.ip(h.NS, "route add default via 198.51.100.1")
		hosts = append(hosts, h)
	}
	return hosts
}

// rules is a router's nftables ruleset.
func rules(nat NAT) string {
	masq := "masquerade"
	if nat == Symmetric {
		masq = "masquerade fully-random"
	}
	fw := `
	chain forward { type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan" accept
	}
	chain input { type filter hook input priority filter; policy accept;
		iifname "wan" ct state new drop
	}`
	if nat == NoFirewall {
		fw = ""
	}
	return `table ip lab {
	chain postrouting { type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" ` + masq + `
	}` + fw + `
}
`
}

// Command runs name in h's namespace.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Dial connects to addr from inside h's namespace; the connection then
// works from any goroutine.
func (h *Host) Dial(network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.do(func() error {
		var err error
		c, err = net.Dial(network, addr)
		return err
	})
	return c, err
}

// Listen listens inside h's namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := h.do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket listens for datagrams inside h's namespace.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.do(func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// do runs f on an OS thread switched into h's namespace. A socket belongs
// to the namespace it was made in, whatever thread uses it later. The
// thread is switched back; if that fails it is never unlocked, and the
// runtime retires it.
func (h *Host) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + h.NS)
		if err != nil {
			errc <- err
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			runtime.UnlockOSThread()
			return
		}
		errc <- f()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return <-errc
}

func (l *Lab) addNS(name string) {
	l.run("ip", "netns", "add", name)
	l.ip(name, "link set lo up")
}

func (l *Lab) ip(ns, args string) {
	l.run("ip", append([]string{"-n", ns}, strings.Fields(args)...)...)
}

func (l *Lab) nft(ns, ruleset string) {
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("nft in %s: %v\n%s\n%s", ns, err, out, ruleset)
	}
}

func (l *Lab) run(name string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// remove deletes the lab's namespaces (their interfaces go with them).
func (l *Lab) remove() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range bytes.Split(out, []byte("\n")) {
		name, _, _ := strings.Cut(string(line), " ")
		if strings.HasPrefix(name, l.prefix+"-") {
			exec.Command("ip", "netns", "del", name).Run()
		}
	}
}
