// Command npmpkg builds the npm package (web/npm/dist) from the same
// source as the tracker's script tag: web/static/peercdn.js, as an ES
// module and as a script, with the agent, wasm_exec.js and the type
// declarations. `make npm` runs it; nothing is published from here.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// scriptTail marks where the script-tag build's own ending starts.
const scriptTail = "//@script-tag"

// moduleTail replaces it in the ES module build.
const moduleTail = `const api = peercdnFactory({ moduleURL: import.meta.url });
export default api;
export const { version, release, ready, configure, hlsjs, shaka, dashjs, stats, on, off, destroy, consent } = api;
`

func main() {
	web := flag.String("web", "web", "the web folder of the repository")
	out := flag.String("out", "web/npm/dist", "the package folder to write")
	version := flag.String("version", "0.0.0-dev", "the package version (semver)")
	flag.Parse()
	if err := build(*web, *out, *version); err != nil {
		fmt.Fprintln(os.Stderr, "npmpkg:", err)
		os.Exit(1)
	}
}

func build(web, out, version string) error {
	src, err := os.ReadFile(filepath.Join(web, "static", "peercdn.js"))
	if err != nil {
		return err
	}
	i := bytes.Index(src, []byte(scriptTail))
	if i < 0 {
		return errors.New("peercdn.js lacks the " + scriptTail + " marker")
	}
	fill := func(b []byte) []byte {
		b = bytes.ReplaceAll(b, []byte("__PEERCDN_WASM__"), []byte("peercdn.wasm"))
		return bytes.ReplaceAll(b, []byte("__PEERCDN_RELEASE__"), []byte(version))
	}
	module := fill(append(append([]byte{}, src[:i]...), moduleTail...))
	script := fill(src)
	files := map[string][]byte{"index.mjs": module, "peercdn.js": script}
	for name, from := range map[string]string{
		"peercdn.wasm": filepath.Join(web, "dist", "peercdn.wasm"),
		"wasm_exec.js": filepath.Join(web, "dist", "wasm_exec.js"),
		"index.d.ts":   filepath.Join(web, "npm", "index.d.ts"),
		"README.md":    filepath.Join(web, "npm", "README.md"),
	} {
		b, err := os.ReadFile(from)
		if err != nil {
			return fmt.Errorf("%w (run make wasm first)", err)
		}
		files[name] = b
	}
	pkg := map[string]any{
		"name":        "peercdn",
		"version":     version,
		"description": "Peer-assisted segment delivery for hls.js and Shaka Player, with a peercdn tracker",
		"license":     "Apache-2.0",
		"type":        "module",
		"main":        "./index.mjs",
		"module":      "./index.mjs",
		"types":       "./index.d.ts",
		"exports": map[string]any{
			".":              map[string]string{"types": "./index.d.ts", "import": "./index.mjs", "default": "./index.mjs"},
			"./script":       "./peercdn.js",
			"./peercdn.wasm": "./peercdn.wasm",
			"./wasm_exec.js": "./wasm_exec.js",
			"./package.json": "./package.json",
		},
		// Importing it registers the agent's bridge on window.
		"sideEffects": true,
		"files":       []string{"index.mjs", "index.d.ts", "peercdn.js", "peercdn.wasm", "wasm_exec.js", "README.md"},
	}
	pj, _ := json.MarshalIndent(pkg, "", "  ")
	files["package.json"] = append(pj, '\n')
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(out, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
