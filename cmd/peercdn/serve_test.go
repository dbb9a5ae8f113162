package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigPrecedence: flags over environment over file over defaults.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "peercdn.yaml")
	os.WriteFile(file, []byte("listen: 127.0.0.1:7000\nsuggestions: 3\nidle_timeout: 30s\nmax_conns_per_ip: 9\n"), 0o600)
	t.Setenv("PEERCDN_SUGGESTIONS", "4")
	t.Setenv("PEERCDN_IDLE_TIMEOUT", "40s")
	cfg, _, err := loadConfig("serve", []string{"--config", file, "--idle-timeout", "50s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7000" || cfg.MaxConnsPerIP != 9 {
		t.Errorf("file values lost: %+v", cfg)
	}
	if cfg.Suggestions != 4 {
		t.Errorf("env did not override file: suggestions %d", cfg.Suggestions)
	}
	if cfg.IdleTimeout != 50*time.Second {
		t.Errorf("flag did not override env: idle %v", cfg.IdleTimeout)
	}
	if cfg.MaxSwarmsPerConn != 16 {
		t.Errorf("default lost: %d", cfg.MaxSwarmsPerConn)
	}
}

func TestConfigUnknownKeyAndBadEnv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.yaml")
	os.WriteFile(file, []byte("listn: :1\n"), 0o600)
	if _, _, err := loadConfig("serve", []string{"--config", file}, nil); err == nil || !strings.Contains(err.Error(), "unknown key listn") {
		t.Errorf("unknown key: %v", err)
	}
	t.Setenv("PEERCDN_SUGGESTIONS", "many")
	if _, _, err := loadConfig("serve", nil, nil); err == nil || !strings.Contains(err.Error(), "PEERCDN_SUGGESTIONS") {
		t.Errorf("bad env: %v", err)
	}
}
