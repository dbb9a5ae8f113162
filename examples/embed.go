// Package examples embeds the sample stream (made by make-stream.sh) so the
// binary can serve the demo with nothing else on disk.
package examples

import "embed"

// Stream holds stream/master.m3u8 and, per rendition, index.m3u8, init.mp4
// and the numbered .m4s segments.
//
//go:embed stream
var Stream embed.FS
