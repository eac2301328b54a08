package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// errStopped: the caller broke out of the range loop.
var errStopped = errors.New("stream stopped by its caller")

// chain is a sequence of streams that resume one another (Watch,
// ObserveElection): when one is lost, the next opens on another endpoint,
// through the same endpoint choice as every call, after a pause that grows
// with the streams lost in a row before they delivered a line.
type chain struct {
	c *Client
	// lost counts the streams in a row lost before they delivered a line.
	lost int
}

// follow opens streams with open and reads each with read until one ends
// the chain. read returns (lost, nil) when its stream was lost and the
// chain goes on (lost says why), or (nil, err) to end the chain: follow
// returns err, or nil for errStopped (the caller stopped). resumed, when
// not nil, runs after each lost stream, before the next one opens.
func (ch *chain) follow(ctx context.Context, open func(context.Context) (*stream, error),
	read func(context.Context, *stream) (lost, err error), resumed func()) error {
	for {
		st, err := open(ctx)
		if err != nil {
			return err
		}
		lost, err := read(ctx, st)
		st.close()
		switch {
		case errors.Is(err, errStopped):
			return nil
		case err != nil:
			return err
		}
		if resumed != nil {
			resumed()
		}
		ch.c.eps.failed(st.base, ch.c.maxBackoff, 0)
		ch.c.maybeRefresh(true)
		if ch.lost > 0 {
			if err := sleep(ctx, ch.c.backoff(ch.lost)); err != nil {
				return fmt.Errorf("%w (reopening after: %v)", err, lost)
			}
		}
	}
}

// lines reads st's NDJSON lines and hands each non-blank one to fn, until
// fn returns a non-nil lost or err (which lines returns) or the stream
// ends: then it returns (why, nil) when the stream was lost (it failed,
// the server ended it, or, with idle > 0, it stayed silent that long), or
// (nil, ctx's error) when ctx ended. A partial last line is dropped. A
// stream lost before it delivered a line counts in ch.lost; one that
// delivered a line resets it.
func (ch *chain) lines(ctx context.Context, st *stream, idle time.Duration, fn func(line []byte) (lost, err error)) (lost, _ error) {
	var (
		silent atomic.Bool
		body   io.Reader = st.resp.Body
	)
	if idle > 0 {
		timer := time.AfterFunc(idle, func() { silent.Store(true); st.cancel() })
		defer timer.Stop()
		body = &activity{r: body, timer: timer, idle: idle}
	}
	r := bufio.NewReader(body)
	delivered := false
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil, ctx.Err()
			case silent.Load():
				err = fmt.Errorf("no byte from %s in %s", st.base, idle)
			case errors.Is(err, io.EOF):
				err = fmt.Errorf("%s ended the stream", st.base)
			}
			if !delivered {
				ch.lost++
			}
			return err, nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !delivered {
			delivered, ch.lost = true, 0
		}
		// A stream can last longer than the members it was opened with:
		// it keeps the member list as fresh as calls do, so that it can
		// resume on members that joined while it ran.
		ch.c.maybeRefresh(false)
		if lost, err := fn(line); lost != nil || err != nil {
			return lost, err
		}
	}
}

// activity re-arms timer for idle at every read that returns bytes.
type activity struct {
	r     io.Reader
	timer *time.Timer
	idle  time.Duration
}

func (a *activity) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.timer.Reset(a.idle)
	}
	return n, err
}
