package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/peercdn/peercdn/signaling"
)

// A PEERCDN_ variable that names no setting stops the node with its name;
// a bad value is reported with the value.
func TestEnvUnknownAndBadValue(t *testing.T) {
	t.Setenv("PEERCDN_ALLOWED_ORIGIN", "https://example.com") // ALLOWED_ORIGINS misspelt
	_, _, err := loadConfig("serve", nil, serveFlags(new(demoFlags), new(string), new(string), new(time.Duration)))
	if err == nil || !strings.Contains(err.Error(), "PEERCDN_ALLOWED_ORIGIN") {
		t.Fatalf("misspelt variable: %v", err)
	}
	os.Unsetenv("PEERCDN_ALLOWED_ORIGIN")
	t.Setenv("PEERCDN_LOG_LEVEL", "debug") // serve's own flags count as known
	t.Setenv("PEERCDN_MAX_CONNS", "lots")
	_, _, err = loadConfig("serve", nil, serveFlags(new(demoFlags), new(string), new(string), new(time.Duration)))
	if err == nil || !strings.Contains(err.Error(), `PEERCDN_MAX_CONNS="lots"`) {
		t.Fatalf("bad value: %v", err)
	}
}

// --log-format text|json, --log-level, and durations an operator reads.
func TestLogFlags(t *testing.T) {
	for format, want := range map[string]string{"json": `"took":"1.5s"`, "text": "took=1.5s"} {
		var b bytes.Buffer
		log, err := logFlags{level: "warn", format: format}.newLogger(&b)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("hidden")
		log.Warn("shown", "took", 1500*time.Millisecond)
		if out := b.String(); !strings.Contains(out, want) || strings.Contains(out, "hidden") {
			t.Errorf("%s: %q, want %s and no info lines", format, out, want)
		}
	}
	if _, err := (logFlags{level: "loud", format: "json"}).newLogger(&bytes.Buffer{}); err == nil {
		t.Error("a bad level was accepted")
	}
	if _, err := (logFlags{level: "info", format: "xml"}).newLogger(&bytes.Buffer{}); err == nil {
		t.Error("a bad format was accepted")
	}
}

// `peercdn version` names the Go that built it, the protocol and the
// embedded agent, which a plain `go build` includes.
func TestVersion(t *testing.T) {
	out, err := exec.Command(binary(t), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, re := range []string{`(?m)^peercdn \S+$`, `(?m)^go +go1\.\d+`, `(?m)^protocol v\d+`, `(?m)^agent +peercdn\.[0-9a-f]{12}\.wasm \(\d+\.\d MB`} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("version output lacks %s:\n%s", re, out)
		}
	}
}

// freeAddr returns a loopback TCP address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runServe starts the binary with args and env, and stops it at the end.
func runServe(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	if testing.Verbose() && os.Getenv("PEERCDN_TEST_LOGS") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// health runs `peercdn health` with args and env until it passes.
func waitHealth(t *testing.T, env []string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		cmd := exec.Command(binary(t), append([]string{"health"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("peercdn health %v: %v %s", args, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The image's command lines, read from the Dockerfile, run as they are:
// the entrypoint with its default command starts a node with production
// defaults, and the healthcheck finds it through the same environment.
func TestImageCommandLines(t *testing.T) {
	df, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var entry, cmdLine, check []string
	var env []string
	stage := 0
	for _, line := range strings.Split(string(df), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "FROM ") {
			stage++
		}
		if stage < 2 {
			continue
		}
		arg := func(prefix string) []string {
			var v []string
			if err := json.Unmarshal([]byte(strings.TrimSpace(line[strings.Index(line, prefix)+len(prefix):])), &v); err != nil {
				t.Fatalf("%q: want the exec (JSON) form: %v", line, err)
			}
			return v
		}
		switch {
		case strings.HasPrefix(line, "ENTRYPOINT "):
			entry = arg("ENTRYPOINT ")
		case strings.HasPrefix(line, "CMD "):
			cmdLine = arg("CMD ")
		case strings.HasPrefix(line, "HEALTHCHECK "):
			check = arg(" CMD ")
		case strings.HasPrefix(line, "ENV "):
			env = append(env, strings.TrimPrefix(line, "ENV "))
		case strings.HasPrefix(line, "USER "):
			if u := strings.TrimPrefix(line, "USER "); strings.HasPrefix(u, "0") || strings.HasPrefix(u, "root") {
				t.Errorf("the image runs as %s", u)
			}
		}
	}
	if len(entry) != 1 || entry[0] != "peercdn" || len(check) < 2 || check[0] != "peercdn" {
		t.Fatalf("entrypoint %v, healthcheck %v", entry, check)
	}
	if strings.Contains(strings.Join(cmdLine, " "), "--demo") {
		t.Fatalf("the image's default command %v runs the demo", cmdLine)
	}
	// Only the port differs from the image: this machine's 8080 may be taken.
	addr := freeAddr(t)
	for i, e := range env {
		if strings.HasPrefix(e, "PEERCDN_LISTEN=") {
			env[i] = "PEERCDN_LISTEN=" + addr
		}
	}
	env = append(env, "PEERCDN_STUN_LISTEN=127.0.0.1:0")
	runServe(t, env, cmdLine...)
	waitHealth(t, env, check[1:]...)
	resp, err := http.Get("http://" + addr + "/demo/live/master.m3u8")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the image's default command serves the demo")
		}
	}
	// And the check fails when nothing answers.
	down := exec.Command(binary(t), check[1:]...)
	down.Env = append(os.Environ(), "PEERCDN_LISTEN="+freeAddr(t))
	if err := down.Run(); err == nil {
		t.Error("health passed with no tracker")
	}
}

// selfSigned writes a certificate and key for 127.0.0.1 and returns their
// paths and a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "peercdn test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

// wssWelcome dials wss://host/ws, resolving host to addr, trusting roots,
// and returns the welcome's peer id.
func wssWelcome(t *testing.T, host, addr string, roots *x509.CertPool, timeout time.Duration, logs ...fmt.Stringer) string {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := signaling.Dial(ctx, "wss://"+host+"/ws", &signaling.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		for _, l := range logs {
			t.Logf("node log:\n%s", l)
		}
		t.Fatalf("wss dial: %v", err)
	}
	defer c.CloseNow()
	return c.Welcome().PeerID
}

// --tls-cert/--tls-key serve wss://; --http-listen redirects to HTTPS; the
// health command checks an HTTPS node.
func TestTLSFromFiles(t *testing.T) {
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir)
	addr, plain := freeAddr(t), freeAddr(t)
	env := []string{"PEERCDN_LISTEN=" + addr, "PEERCDN_TLS_CERT=" + cert, "PEERCDN_TLS_KEY=" + key}
	runServe(t, env, "serve", "--stun-listen=", "--http-listen", plain)
	waitHealth(t, env) // https, from the environment alone
	if id := wssWelcome(t, addr, addr, pool, 5*time.Second); id == "" {
		t.Fatal("no welcome over wss")
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get("http://" + plain + "/peercdn.js?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, port, _ := net.SplitHostPort(addr)
	if want := "https://127.0.0.1:" + port + "/peercdn.js?x=1"; resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Fatalf("plain HTTP: %d %q, want 308 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	// No HTTP/2: WebSocket upgrades need HTTP/1.1.
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Fatal("negotiated h2")
	}
}

// A flag renamed in this release still works under its old name, and its
// usage names the new one (serve warns of it).
func TestDeprecatedFlag(t *testing.T) {
	var demo demoFlags
	var vendor, pprofAddr string
	var trim time.Duration
	var lf logFlags
	var tf tlsFlags
	cfg, fs, err := loadConfig("serve", []string{"--notary-origins", "https://cdn.example/live/"}, serveFlagsAll(&demo, &vendor, &pprofAddr, &trim, &lf, &tf))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.NotaryCDNs) != 1 || cfg.NotaryCDNs[0] != "https://cdn.example/live/" {
		t.Fatalf("notary_cdns %v", cfg.NotaryCDNs)
	}
	if f := fs.Lookup("notary-origins"); f == nil || f.Usage != "deprecated: --notary-cdns" {
		t.Fatalf("--notary-origins: %+v", f)
	}
}
