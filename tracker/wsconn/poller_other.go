//go:build !linux

package wsconn

// Poller parks nothing outside Linux: an idle connection keeps its
// goroutine, waiting for its socket.
type Poller struct{}

func NewPoller() *Poller            { return &Poller{} }
func (p *Poller) park(c *Conn) bool { return false }
func (p *Poller) kick(c *Conn)      {}
func (p *Poller) Close()            {}
func (p *Poller) Warm()             {}
