package chaos

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Dir is a direction of traffic on a proxied link A→B (A dials B).
type Dir int

const (
	// Up is the dialer's traffic: A's raft requests to B.
	Up Dir = iota
	// Down is the answering side's traffic: B's responses to A.
	Down
)

func (d Dir) String() string {
	if d == Up {
		return "up"
	}
	return "down"
}

// LinkFault is the state of one proxied link. The zero value is a healthy
// link.
type LinkFault struct {
	// Cut closes every connection on the link and holds new ones
	// (accepted, never connected onward) until the cut heals: a blackhole.
	Cut bool
	// Hold stops delivering the bytes of one direction while the other
	// flows, the way TCP behaves when the packets of one direction are lost:
	// the stream stalls (and resumes when the fault heals). Holding Down on
	// A→B lets A's requests reach B while B's answers never come back.
	Hold [2]bool
	// Delay is added to every chunk of the direction, plus a random
	// [0, Jitter).
	Delay  [2]time.Duration
	Jitter time.Duration
	// Lossy emulates a lossy link: TCP cannot lose bytes, so a lost packet
	// shows as a stall (retransmission) and, now and then, a reset
	// connection.
	Lossy bool
	// Rate, when positive, limits each direction of each connection to this
	// many bytes per second (a slow link; used to make snapshot installs
	// take long enough to be interrupted).
	Rate int
}

// Proxy relays one ordered pair's raft traffic: node From dials it to reach
// node To. It owns a listener and every connection through it; Close stops
// them all.
type Proxy struct {
	From, To string
	target   string
	ln       net.Listener

	mu      sync.Mutex
	fault   LinkFault
	changed chan struct{} // closed and replaced on every change of fault
	conns   map[*pconn]struct{}
	rng     *rand.Rand
	closed  bool

	wg sync.WaitGroup
}

// Lossy-link parameters: per chunk delivered.
const (
	lossyStallProb = 0.05
	lossyResetProb = 0.004
	lossyMaxStall  = 600 * time.Millisecond
	chunkSize      = 32 << 10
	queueChunks    = 16
)

// NewProxy listens on a free loopback port and relays every connection to
// target.
func NewProxy(from, to, target string, seed uint64) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy %s->%s: %w", from, to, err)
	}
	p := &Proxy{
		From: from, To: to, target: target, ln: ln,
		changed: make(chan struct{}),
		conns:   map[*pconn]struct{}{},
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address the dialing node uses to reach To.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Fault returns the link's current state.
func (p *Proxy) Fault() LinkFault {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault
}

// Set changes the link's state. Cutting closes the live connections;
// healing a cut closes the held ones, so the dialer reconnects.
func (p *Proxy) Set(f LinkFault) {
	p.mu.Lock()
	prev := p.fault
	p.fault = f
	close(p.changed)
	p.changed = make(chan struct{})
	var toClose []*pconn
	if f.Cut && !prev.Cut {
		for c := range p.conns {
			toClose = append(toClose, c)
		}
	}
	p.mu.Unlock()
	for _, c := range toClose {
		c.close(false)
	}
}

// Update applies fn to the link's state.
func (p *Proxy) Update(fn func(*LinkFault)) {
	f := p.Fault()
	fn(&f)
	p.Set(f)
}

// Heal returns the link to health.
func (p *Proxy) Heal() { p.Set(LinkFault{}) }

// Close stops the listener and every connection, and waits for the
// proxy's goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	var all []*pconn
	for c := range p.conns {
		all = append(all, c)
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, c := range all {
		c.close(false)
	}
	p.wg.Wait()
}

func (p *Proxy) state() (LinkFault, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault, p.changed
}

func (p *Proxy) random() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Float64()
}

func (p *Proxy) randomDuration(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Duration(p.rng.Int64N(int64(max)))
}

// register adds c to the live set; false when the proxy is closed.
func (p *Proxy) register(c *pconn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) unregister(c *pconn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		cl, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		c := &pconn{p: p, client: cl, done: make(chan struct{})}
		if !p.register(c) {
			_ = cl.Close()
			return
		}
		f, _ := p.state()
		p.wg.Add(1)
		if f.Cut {
			go c.hold()
		} else {
			go c.connect()
		}
	}
}

// pconn is one relayed connection: client is the dialer's side, server
// the connection onward to the target (nil while held by a cut).
type pconn struct {
	p      *Proxy
	client net.Conn

	mu     sync.Mutex
	server net.Conn

	once sync.Once
	done chan struct{}
}

func (c *pconn) close(reset bool) {
	c.once.Do(func() {
		c.mu.Lock()
		srv := c.server
		c.mu.Unlock()
		for _, conn := range []net.Conn{c.client, srv} {
			if conn == nil {
				continue
			}
			if tc, ok := conn.(*net.TCPConn); ok && reset {
				_ = tc.SetLinger(0) // close with RST
			}
			_ = conn.Close()
		}
		close(c.done)
		c.p.unregister(c)
	})
}

// hold keeps a connection accepted during a cut open without relaying it,
// and closes it once the cut heals (the dialer then reconnects).
func (c *pconn) hold() {
	defer c.p.wg.Done()
	for {
		f, changed := c.p.state()
		if !f.Cut {
			c.close(false)
			return
		}
		select {
		case <-changed:
		case <-c.done:
			return
		}
	}
}

func (c *pconn) connect() {
	defer c.p.wg.Done()
	srv, err := net.DialTimeout("tcp", c.p.target, 2*time.Second)
	if err != nil {
		c.close(false)
		return
	}
	c.mu.Lock()
	c.server = srv
	c.mu.Unlock()
	select {
	case <-c.done: // closed (cut, proxy closed) while dialing
		_ = srv.Close()
		return
	default:
	}
	up := make(chan chunk, queueChunks)
	down := make(chan chunk, queueChunks)
	c.p.wg.Add(4)
	go c.read(c.client, up)
	go c.write(srv, up, Up)
	go c.read(srv, down)
	go c.write(c.client, down, Down)
}

type chunk struct {
	data []byte
	at   time.Time
}

// read moves bytes from src into q as they arrive; it never waits for a
// fault (so latency does not cost throughput), only for room in q.
func (c *pconn) read(src net.Conn, q chan<- chunk) {
	defer c.p.wg.Done()
	defer close(q)
	for {
		buf := make([]byte, chunkSize)
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case q <- chunk{data: buf[:n], at: time.Now()}:
			case <-c.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// write delivers the chunks of one direction to dst, applying the link's
// faults: hold, delay, lossy stalls and resets, rate.
func (c *pconn) write(dst net.Conn, q <-chan chunk, d Dir) {
	defer c.p.wg.Done()
	var nextFree time.Time // rate limiting
	for {
		var ch chunk
		var ok bool
		select {
		case ch, ok = <-q:
		case <-c.done:
			return
		}
		if !ok {
			c.close(false) // the source side closed
			return
		}
		if !c.waitUnheld(d) {
			return
		}
		f, _ := c.p.state()
		delay := f.Delay[d] + c.p.randomDuration(f.Jitter)
		if f.Lossy {
			r := c.p.random()
			switch {
			case r < lossyResetProb:
				c.close(true)
				return
			case r < lossyResetProb+lossyStallProb:
				delay += c.p.randomDuration(lossyMaxStall)
			}
		}
		due := ch.at.Add(delay)
		if f.Rate > 0 {
			if nextFree.Before(time.Now()) {
				nextFree = time.Now()
			}
			nextFree = nextFree.Add(time.Duration(float64(len(ch.data)) / float64(f.Rate) * float64(time.Second)))
			if nextFree.After(due) {
				due = nextFree
			}
		}
		if !c.sleepUntil(due) {
			return
		}
		if _, err := dst.Write(ch.data); err != nil {
			c.close(false)
			return
		}
	}
}

// waitUnheld blocks while direction d is held; false when the connection
// closed meanwhile.
func (c *pconn) waitUnheld(d Dir) bool {
	for {
		f, changed := c.p.state()
		if f.Cut {
			c.close(false)
			return false
		}
		if !f.Hold[d] {
			return true
		}
		select {
		case <-changed:
		case <-c.done:
			return false
		}
	}
}

// sleepUntil waits until t (the fault's delay) or the connection's end.
func (c *pconn) sleepUntil(t time.Time) bool {
	wait := time.Until(t)
	if wait <= 0 {
		return true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-c.done:
		return false
	}
}
