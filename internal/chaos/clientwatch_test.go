//go:build unix

package chaos

import (
	"context"
	"sync"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

// clientWatcher is one watch through the Go client (client.Client.Watch
// over every node's URL), which reopens its streams on other nodes by
// itself; it records what the client delivered.
type clientWatcher struct {
	cl   *client.Client
	logf func(format string, args ...any)

	mu sync.Mutex
	s  WatchStream
}

func newClientWatcher(cl *client.Client, opts kv.WatchOptions, logf func(string, ...any)) *clientWatcher {
	return &clientWatcher{cl: cl, logf: logf, s: WatchStream{Name: "client (" + describeWatch(opts) + ")", Opts: opts}}
}

// run watches until ctx ends or the client's watch ends with an error.
func (w *clientWatcher) run(ctx context.Context) {
	for resp, err := range w.cl.Watch(ctx, w.s.Opts) {
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.mu.Lock()
			w.s.End = err
			w.mu.Unlock()
			w.logf("watch %s ended: %v", w.s.Name, err)
			return
		}
		w.mu.Lock()
		w.s.Responses = append(w.s.Responses, resp)
		w.mu.Unlock()
	}
}

// reached is the highest index delivered, and whether the watch ended.
func (w *clientWatcher) reached() (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.s.Reached(), w.s.End != nil
}

// stream returns a copy of the record.
func (w *clientWatcher) stream() *WatchStream {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.s
	s.Responses = append([]kv.WatchResponse(nil), w.s.Responses...)
	return &s
}
