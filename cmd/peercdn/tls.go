package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// tlsFlags are serve's TLS options: a certificate from files, or one from
// an ACME CA (Let's Encrypt by default), and a plain-HTTP listener that
// answers ACME challenges and redirects everything else to HTTPS.
type tlsFlags struct {
	cert, key     string
	acmeDomains   listFlag
	acmeCache     string
	acmeEmail     string
	acmeDirectory string
	httpListen    string
}

func (t *tlsFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&t.cert, "tls-cert", "", "serve HTTPS and wss:// with this PEM certificate chain (reread when the file changes)")
	fs.StringVar(&t.key, "tls-key", "", "the PEM private key of --tls-cert")
	fs.Var(&t.acmeDomains, "acme-domain", "comma-separated domains to get certificates for from an ACME CA (Let's Encrypt unless --acme-directory): serve HTTPS and wss:// with them")
	fs.StringVar(&t.acmeCache, "acme-cache", "", "directory that keeps the ACME account key and certificates across restarts (needed with --acme-domain)")
	fs.StringVar(&t.acmeEmail, "acme-email", "", "contact address given to the ACME CA for expiry notices")
	fs.StringVar(&t.acmeDirectory, "acme-directory", "", "ACME directory URL (default: Let's Encrypt's production directory)")
	fs.StringVar(&t.httpListen, "http-listen", "", "also serve plain HTTP here: ACME http-01 challenges, and a redirect to HTTPS for everything else (e.g. :80)")
}

func (t *tlsFlags) on() bool { return t.cert != "" || t.key != "" || len(t.acmeDomains) > 0 }

// setup returns the main listener's TLS configuration and the plain-HTTP
// listener's handler (nil if --http-listen is not set). httpsPort is the
// port the redirect names (none for 443).
func (t *tlsFlags) setup(httpsPort string, log *slog.Logger) (*tls.Config, http.Handler, error) {
	var cfg *tls.Config
	var challenges func(http.Handler) http.Handler
	switch {
	case len(t.acmeDomains) > 0 && (t.cert != "" || t.key != ""):
		return nil, nil, errors.New("--acme-domain and --tls-cert/--tls-key: choose one")
	case len(t.acmeDomains) > 0:
		if t.acmeCache == "" {
			return nil, nil, errors.New("--acme-domain needs --acme-cache, a directory that outlives restarts (the CA rate-limits new certificates)")
		}
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(t.acmeDomains...),
			Cache:      autocert.DirCache(t.acmeCache),
			Email:      t.acmeEmail,
		}
		if t.acmeDirectory != "" {
			m.Client = &acme.Client{DirectoryURL: t.acmeDirectory}
		}
		cfg = m.TLSConfig()
		challenges = m.HTTPHandler
		log.Info("tls: certificates from ACME", "domains", []string(t.acmeDomains), "cache", t.acmeCache,
			"directory", orDefault(t.acmeDirectory, acme.LetsEncryptURL))
	case t.cert == "" || t.key == "":
		return nil, nil, errors.New("--tls-cert and --tls-key go together")
	default:
		r := &certReloader{cert: t.cert, key: t.key, log: log}
		if _, err := r.get(nil); err != nil {
			return nil, nil, err
		}
		cfg = &tls.Config{GetCertificate: r.get}
		log.Info("tls: certificate from files", "cert", t.cert)
	}
	// WebSocket upgrades are HTTP/1.1: without h2 in ALPN a browser never
	// tries WebSocket over HTTP/2, which the tracker does not serve.
	protos := []string{"http/1.1"}
	if len(t.acmeDomains) > 0 {
		protos = append(protos, acme.ALPNProto) // tls-alpn-01 challenges
	}
	cfg.NextProtos = protos
	cfg.MinVersion = tls.VersionTLS12
	if t.httpListen == "" {
		return cfg, nil, nil
	}
	var h http.Handler = httpsRedirect(httpsPort)
	if challenges != nil {
		h = challenges(h)
	}
	return cfg, h, nil
}

func orDefault(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// httpsRedirect sends a plain-HTTP request to the same URL over HTTPS.
func httpsRedirect(port string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if host == "" {
			http.Error(w, "no Host header", http.StatusBadRequest)
			return
		}
		if port != "" && port != "443" {
			host = net.JoinHostPort(host, port)
		} else if net.ParseIP(host) != nil && net.ParseIP(host).To4() == nil {
			host = "[" + host + "]"
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

// certReloader serves a certificate from files and rereads them when they
// change (a renewal by certbot or cert-manager), checking at most every
// reloadEvery.
type certReloader struct {
	cert, key string
	log       *slog.Logger

	mu      sync.Mutex
	current *tls.Certificate
	mtime   time.Time
	checked time.Time
}

const reloadEvery = 10 * time.Second

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.current != nil && now.Sub(r.checked) < reloadEvery {
		return r.current, nil
	}
	r.checked = now
	st, err := os.Stat(r.cert)
	if err == nil && r.current != nil && !st.ModTime().After(r.mtime) {
		return r.current, nil
	}
	c, lerr := tls.LoadX509KeyPair(r.cert, r.key)
	switch {
	case lerr != nil && r.current == nil:
		return nil, fmt.Errorf("tls: %w", lerr)
	case lerr != nil:
		// Mid-renewal: the old pair still serves.
		r.log.Warn("tls: certificate files changed but do not load; serving the previous one", "err", lerr)
		return r.current, nil
	}
	if r.current != nil {
		r.log.Info("tls: certificate reloaded", "cert", r.cert)
	}
	r.current = &c
	if err == nil {
		r.mtime = st.ModTime()
	}
	return r.current, nil
}
