// Package chartcheck renders the Helm chart in ../peercdn with Helm's own
// engine and decodes every object strictly into its Kubernetes API type.
// It is its own module, as interop/ is, so that Helm and the Kubernetes
// API modules stay out of the binary's module graph.
package chartcheck
