//go:build !linux

package tracker

// idlePoller is Linux-only; elsewhere an idle connection keeps its
// goroutine, waiting for its socket.
type idlePoller struct{}

func newIdlePoller() *idlePoller        { return &idlePoller{} }
func (p *idlePoller) park(c *conn) bool { return false }
func (p *idlePoller) kick(c *conn)      {}
func (p *idlePoller) close()            {}
func (p *idlePoller) warm()             {}
