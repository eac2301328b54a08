package chaos

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func newTestProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := NewProxy("a", "b", echoServer(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// roundTrip sends a line and waits up to wait for the echo.
func roundTrip(c net.Conn, r *bufio.Reader, msg string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	line, err := r.ReadString('\n')
	_ = c.SetReadDeadline(time.Time{})
	return line, err
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestProxyRelays(t *testing.T) {
	p := newTestProxy(t)
	c, r := dial(t, p)
	if got, err := roundTrip(c, r, "hello", 5*time.Second); err != nil || got != "hello\n" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestProxyCut(t *testing.T) {
	p := newTestProxy(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "one", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Update(func(f *LinkFault) { f.Cut = true })
	// The live connection is closed.
	if _, err := roundTrip(c, r, "two", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("a cut link kept its connection: %v", err)
	}
	// A new one is accepted but goes nowhere.
	c2, r2 := dial(t, p)
	if _, err := roundTrip(c2, r2, "three", 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("a connection made during a cut answered: %v", err)
	}
	p.Heal()
	// The held connection is closed once the cut heals; a new one works.
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r2.ReadString('\n'); err == nil || isTimeout(err) {
		t.Fatalf("held connection not closed at heal: %v", err)
	}
	c3, r3 := dial(t, p)
	if got, err := roundTrip(c3, r3, "four", 5*time.Second); err != nil || got != "four\n" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
}

// Holding Down: requests arrive, answers do not, until the fault heals;
// then the stream resumes where it stopped.
func TestProxyHoldOneDirection(t *testing.T) {
	p := newTestProxy(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "one", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Update(func(f *LinkFault) { f.Hold[Down] = true })
	if _, err := roundTrip(c, r, "two", 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("answer came back through a held direction: %v", err)
	}
	p.Heal()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "two\n" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
}

func TestProxyDelayAndRate(t *testing.T) {
	p := newTestProxy(t)
	c, r := dial(t, p)
	p.Set(LinkFault{Delay: [2]time.Duration{100 * time.Millisecond, 100 * time.Millisecond}})
	start := time.Now()
	if _, err := roundTrip(c, r, "slow", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < 200*time.Millisecond {
		t.Fatalf("round trip %s with 100ms each way", rtt)
	}
	p.Set(LinkFault{Rate: 64 << 10})
	buf := make([]byte, 32<<10)
	start = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		<-ctx.Done()
		_ = c.SetDeadline(time.Now())
	}()
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	// 32 KiB at 64 KiB/s each way.
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Fatalf("32 KiB each way at 64 KiB/s took %s", took)
	}
}

func TestProxyLossyStillDelivers(t *testing.T) {
	p := newTestProxy(t)
	p.Set(LinkFault{Lossy: true})
	delivered := 0
	for range 5 {
		c, r := dial(t, p)
		for range 10 {
			got, err := roundTrip(c, r, "x", 3*time.Second)
			if err != nil {
				break // reset, or stalled past the wait: a lossy link
			}
			if got != "x\n" {
				t.Fatalf("corrupted: %q", got)
			}
			delivered++
		}
	}
	if delivered == 0 {
		t.Fatal("nothing got through a lossy link")
	}
}
