package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// goTool builds a program of a module in go.mod's tool block.
func goTool(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// freeUDP returns a loopback UDP address nothing listens on.
func freeUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// TestACMEWithPebble gets a certificate from a real ACME server, Let's
// Encrypt's Pebble, which validates the challenge against this node (its
// DNS, pebble-challtestsrv, points the test domain at loopback), then
// connects a client over wss:// that trusts only Pebble's root.
func TestACMEWithPebble(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	pebble := goTool(t, dir, "github.com/letsencrypt/pebble/v2/cmd/pebble")
	challsrv := goTool(t, dir, "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv")
	modDir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
	if err != nil {
		t.Fatal(err)
	}
	certs := filepath.Join(strings.TrimSpace(string(modDir)), "test", "certs")

	const domain = "tracker.peercdn.test"
	dns, acmeAddr, mgmt, challMgmt := freeUDP(t), freeAddr(t), freeAddr(t), freeAddr(t)
	tlsAddr, httpAddr := freeAddr(t), freeAddr(t)

	// The DNS answers every name with 127.0.0.1 and nothing else.
	cs := exec.Command(challsrv, "-dnsserver", dns, "-management", challMgmt, "-defaultIPv4", "127.0.0.1",
		"-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	start(t, cs)

	conf := map[string]any{"pebble": map[string]any{
		"listenAddress": acmeAddr, "managementListenAddress": mgmt,
		"certificate": filepath.Join(certs, "localhost", "cert.pem"), "privateKey": filepath.Join(certs, "localhost", "key.pem"),
		// Where Pebble checks the challenges: this node's two listeners.
		"httpPort": atoi(port(httpAddr)), "tlsPort": atoi(port(tlsAddr)),
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
	}}
	cb, _ := json.Marshal(conf)
	confFile := filepath.Join(dir, "pebble.json")
	os.WriteFile(confFile, cb, 0o600)
	pb := exec.Command(pebble, "-config", confFile, "-dnsserver", dns)
	pb.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	start(t, pb)

	// Pebble's API is HTTPS under its own test CA.
	caPEM, err := os.ReadFile(filepath.Join(certs, "pebble.minica.pem"))
	if err != nil {
		t.Fatal(err)
	}
	apiRoots := x509.NewCertPool()
	apiRoots.AppendCertsFromPEM(caPEM)
	api := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: apiRoots}}}
	directory := "https://" + acmeAddr + "/dir"
	waitFor(t, 20*time.Second, "pebble", func() bool {
		resp, err := api.Get(directory)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	// The node trusts Pebble's API through SSL_CERT_FILE, as a node behind
	// a private ACME CA would.
	env := []string{"SSL_CERT_FILE=" + filepath.Join(certs, "pebble.minica.pem")}
	node := exec.Command(bin, "serve", "--listen", tlsAddr, "--http-listen", httpAddr, "--stun-listen=",
		"--acme-domain", domain, "--acme-cache", filepath.Join(dir, "acme"), "--acme-directory", directory,
		"--log-format", "text")
	node.Env = append(os.Environ(), env...)
	logs := &lockedBuf{}
	node.Stderr = logs
	start(t, node)
	waitFor(t, 10*time.Second, "the node's listener", func() bool {
		c, err := net.Dial("tcp", tlsAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	// The certificate Pebble issues chains to a root it makes at start.
	var roots *x509.CertPool
	waitFor(t, 10*time.Second, "pebble's root", func() bool {
		resp, err := api.Get("https://" + mgmt + "/roots/0")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		roots = x509.NewCertPool()
		return resp.StatusCode == 200 && roots.AppendCertsFromPEM(b)
	})
	// The first handshake for the domain makes the node order, prove and
	// fetch its certificate.
	if id := wssWelcome(t, domain, tlsAddr, roots, 60*time.Second, logs); id == "" {
		t.Fatalf("no welcome over wss; node log:\n%s", logs)
	}
	files, _ := os.ReadDir(filepath.Join(dir, "acme"))
	var names []string
	for _, f := range files {
		names = append(names, f.Name())
	}
	if !strings.Contains(strings.Join(names, " "), domain) {
		t.Errorf("ACME cache holds %v, want the certificate for %s", names, domain)
	}
	// A name the node was not configured for gets no certificate.
	c, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: "other.peercdn.test", RootCAs: roots})
	if err == nil {
		c.Close()
		t.Error("a certificate for a name not in --acme-domain")
	}
	t.Logf("ACME certificate for %s from Pebble, wss:// welcome received", domain)
}

func atoi(s string) int { var n int; fmt.Sscan(s, &n); return n }

// start runs cmd until the end of the test.
func start(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if cmd.Stdout == nil && testing.Verbose() && os.Getenv("PEERCDN_TEST_LOGS") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

func waitFor(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lockedBuf collects a process's output for a failure message.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
