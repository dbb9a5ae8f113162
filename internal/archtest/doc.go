// Package archtest holds the test that keeps the module's layering: which
// packages may import which (docs/architecture.md).
package archtest
