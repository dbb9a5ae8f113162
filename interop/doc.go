// Package interop tests peercdn against clients nobody in this project
// wrote. It is its own module so that their dependencies never reach
// peercdn's own build.
package interop
