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
	external := map[string][]string{} // the imports from outside the module
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
			} else {
				external[strings.TrimPrefix(p.ImportPath, mod+"/")] = append(external[strings.TrimPrefix(p.ImportPath, mod+"/")], i)
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
		"tracker/wsconn":  {},
	}
	for pkg, ok := range allowed {
		for _, i := range imports[pkg] {
			if !slices.Contains(ok, i) {
				t.Errorf("%s imports %s; it may import only %v of this module", pkg, i, ok)
			}
		}
	}
	// Each library behind one package: the WebSocket framing library behind
	// the transport, the Redis client behind the shared store.
	owners := map[string]string{
		"github.com/gobwas/ws":         "tracker/wsconn",
		"github.com/redis/go-redis/v9": "tracker/cluster",
	}
	for pkg, imps := range external {
		for _, i := range imps {
			if owner, ok := owners[i]; ok && owner != pkg {
				t.Errorf("%s imports %s: only %s does", pkg, i, owner)
			}
		}
	}
	for pkg, imps := range imports {
		if slices.Contains(imps, "tracker") && pkg != "cmd/peercdn" && pkg != "internal/trackertest" {
			t.Errorf("%s imports tracker: only the binary does", pkg)
		}
	}
}
