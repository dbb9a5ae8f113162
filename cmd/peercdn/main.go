// Command peercdn is the peercdn binary: the tracker service and its tools.
//
//	peercdn serve   run a tracker node
//	peercdn swarm   run native load-test viewers
//	peercdn bench   load-test a tracker (bench tracker)
//	peercdn token   mint a join token for a content id
//	peercdn hash    write segment hash manifests for an origin's folders
//	peercdn health  check a tracker's /healthz (the container's HEALTHCHECK)
//	peercdn version print the version, commit, protocol and agent
package main

import (
	"fmt"
	"os"
)

const usage = `usage: peercdn <command> [flags]

commands:
  serve      run a tracker node (peercdn serve --help)
  swarm      run N native viewers against a tracker and a stream (peercdn swarm --help)
  bench      load-test a tracker, either protocol (peercdn bench tracker --help)
  token      mint a signed join token (peercdn token --help)
  hash       write peercdn-hashes.json for segment folders or playlists (peercdn hash --help)
  cdn-check  check what peercdn needs of the CDN serving a segment (CORS, ranges, digests)
  health     exit 0 if a tracker answers /healthz (the image's HEALTHCHECK)
  version    print the version, commit, Go, protocol and browser agent
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = serve(args)
	case "swarm":
		err = swarmCmd(args)
	case "bench":
		err = bench(args, os.Stdout)
	case "token":
		err = token(args)
	case "hash":
		err = hashCmd(args, os.Stdout)
	case "version":
		err = versionCmd(args, os.Stdout)
	case "health":
		err = healthCmd(args)
	case "cdn-check":
		err = cdnCheckCmd(args, os.Stdout)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "peercdn: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "peercdn %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
