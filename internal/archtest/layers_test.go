package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/peercdn/peercdn"

// TestLayers: the wire protocols import nothing of the services; the
// shared store imports only the signaling protocol; the WebTorrent wire
// nothing of the module; and only the binary (and the test kit that
// starts trackers for other packages' tests) imports the tracker.
func TestLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", mod+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var own []string
		for _, i := range p.Imports {
			if strings.HasPrefix(i, mod+"/") {
				own = append(own, strings.TrimPrefix(i, mod+"/"))
			}
		}
		imports[strings.TrimPrefix(p.ImportPath, mod+"/")] = own
	}
	if len(imports) < 15 {
		t.Fatalf("go list found %d packages", len(imports))
	}
	allowed := map[string][]string{
		"signaling":       {"internal/jspromise"},
		"peerwire":        {},
		"hashfile":        {},
		"tracker/cluster": {"signaling"},
		"tracker/wtwire":  {},
	}
	for pkg, ok := range allowed {
		for _, i := range imports[pkg] {
			if !slices.Contains(ok, i) {
				t.Errorf("%s imports %s; it may import only %v of this module", pkg, i, ok)
			}
		}
	}
	for pkg, imps := range imports {
		if slices.Contains(imps, "tracker") && pkg != "cmd/peercdn" && pkg != "internal/trackertest" {
			t.Errorf("%s imports tracker: only the binary does", pkg)
		}
	}
}
