package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/peercdn/peercdn/tracker"
)

// healthCmd is `peercdn health`: the container image's HEALTHCHECK, so the
// image needs no curl. It exits 0 when the tracker answers 200.
func healthCmd(args []string) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	def, tlsOn := defaultHealthURL()
	url := fs.String("url", def, "the endpoint to check: /healthz (alive) or /readyz (taking viewers); default: this container's tracker, from PEERCDN_LISTEN")
	insecure := fs.Bool("insecure", tlsOn, "accept any certificate (a loopback https URL, a name the certificate does not carry; default with PEERCDN_TLS_CERT or PEERCDN_ACME_DOMAIN set)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: *insecure}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", *url, resp.Status)
	}
	return nil
}

// defaultHealthURL is the /healthz of a `peercdn serve` configured by the
// same environment (the container's), on loopback; https says it serves
// HTTPS.
func defaultHealthURL() (url string, https bool) {
	addr := os.Getenv("PEERCDN_LISTEN")
	if addr == "" {
		addr = tracker.DefaultConfig().Listen
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = "", "8080"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	if os.Getenv("PEERCDN_TLS_CERT") != "" || os.Getenv("PEERCDN_ACME_DOMAIN") != "" {
		scheme, https = "https", true
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/healthz", https
}
