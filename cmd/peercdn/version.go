package main

import (
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/peercdn/peercdn/signaling"
	"github.com/peercdn/peercdn/web"
)

// version prints what an operator quotes in a bug report: the module
// version, the commit it was built from, the Go that built it, the
// protocol it speaks and the browser agent it serves.
func version(w io.Writer) error {
	mod, commit, when, modified := "(unknown)", "", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		mod = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	fmt.Fprintf(w, "peercdn %s\n", mod)
	if commit != "" {
		dirty := ""
		if modified {
			dirty = " (with uncommitted changes)"
		}
		fmt.Fprintf(w, "commit   %s %s%s\n", commit, when, dirty)
	}
	fmt.Fprintf(w, "go       %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "protocol v%d (accepts v%d..v%d)\n", signaling.Version, signaling.MinVersion, signaling.Version)
	if name, size, ok := web.Agent(); ok {
		fmt.Fprintf(w, "agent    %s (%.1f MB, protocol v%d)\n", name, float64(size)/1e6, signaling.Version)
	} else {
		fmt.Fprintln(w, "agent    none embedded: pages fall back to the CDN (build with `make build`)")
	}
	return nil
}

// versionCmd is `peercdn version`.
func versionCmd(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return version(w)
}
