package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// Locks and elections (/v1/lock/{name}, /v1/election/{name}). Lock and
// Campaign are long POSTs: the server answers once the lock is held, so
// no attempt timeout cuts them short (only ctx, and the ?wait sent). They
// take no idempotency key: resent only when certainly not applied (the
// connection was never made, 503 no_leader); a connection lost while the
// server waited leaves the outcome unknown (the error wraps
// kv.ErrOutcomeUnknown): the lease may hold the lock, or a place in its
// queue, until it is revoked or expires. Unlock and Resign are writes
// without a key too.

// Lock acquires lock name (POST /v1/lock/{name}) on opts.Lease, or on a
// lease of opts.TTL granted for it (Hold.OwnLease), waiting behind the
// holders before it (first come, first served). The wait ends at
// opts.Wait, or at nine tenths of what is left of ctx's deadline when that
// comes first: the server then removes the waiter and the error wraps
// kv.ErrTimeout. Without either it waits as long as ctx allows. The
// Hold's Token is the lock's fencing token (kv.WithFence).
func (c *Client) Lock(ctx context.Context, name string, opts kv.LockOptions) (kv.Hold, error) {
	return c.acquire(ctx, lockPath(name), name, nil, opts)
}

// Unlock releases lock name if token holds it (DELETE
// /v1/lock/{name}?token=T), returning the index of the entry that deleted
// the holder's key; a *kv.PreconditionError (kv.ErrPreconditionFailed)
// when token does not hold it. A lease the lock granted for itself
// (Hold.OwnLease) is left to expire: revoke it to end it at once.
func (c *Client) Unlock(ctx context.Context, name string, token uint64) (uint64, error) {
	return c.release(ctx, lockPath(name), name, token)
}

// Campaign runs for election name with value (POST
// /v1/election/{name}), as Lock acquires a lock: it returns once the
// candidate leads, with the Hold (Value included) whose Token fences the
// leader's writes.
func (c *Client) Campaign(ctx context.Context, name string, value []byte, opts kv.LockOptions) (kv.Hold, error) {
	if value == nil {
		value = []byte{}
	}
	return c.acquire(ctx, electionPath(name), name, value, opts)
}

// Resign ends the leadership token holds in election name (DELETE
// /v1/election/{name}?token=T), as Unlock releases a lock.
func (c *Client) Resign(ctx context.Context, name string, token uint64) (uint64, error) {
	return c.release(ctx, electionPath(name), name, token)
}

// ElectionLeader returns the leader of election name (GET
// /v1/election/{name}), its value included; the error wraps
// kv.ErrNoElectionLeader when there is none.
func (c *Client) ElectionLeader(ctx context.Context, name string) (kv.Hold, error) {
	if err := kv.ValidateLockName(name); err != nil {
		return kv.Hold{}, err
	}
	var resp kv.HoldJSON
	if err := c.call(ctx, request{method: http.MethodGet, path: electionPath(name)}, &resp); err != nil {
		return kv.Hold{}, err
	}
	return decodeHold(resp)
}

// ObserveElection follows the leader of election name (GET
// /v1/election/{name}?observe=true, NDJSON): it yields the current leader
// at once (a zero Hold, Token 0, when there is none), then each change.
// Like Watch it outlives its connections: a lost stream (a failed
// connection, a node that shuts down) reopens on another endpoint, with the client's backoff, and the sequence yields
// only changes (a leader it yielded last is not yielded again, and a
// line older than the last one yielded is skipped), so a change that
// came and went while no stream was open is missed, never reordered. The
// sequence ends on ctx (yielding its error), on an error that ends it
// (kv.ErrBadRequest for a bad name, a malformed stream, an error line
// other than shutting_down, Config.MaxAttempts failed attempts to
// reopen), or when the caller stops ranging. The stream has no progress
// lines: a node that is paused or cut off, its connection still open,
// holds the observation until the connection fails.
func (c *Client) ObserveElection(ctx context.Context, name string) iter.Seq2[kv.Hold, error] {
	return func(yield func(kv.Hold, error) bool) {
		if err := kv.ValidateLockName(name); err != nil {
			yield(kv.Hold{}, err)
			return
		}
		o := &observer{chain: chain{c: c}, name: name}
		if err := o.follow(ctx, o.open, func(ctx context.Context, st *stream) (error, error) {
			return o.read(ctx, st, yield)
		}, nil); err != nil {
			yield(kv.Hold{}, err)
		}
	}
}

// observer is one call of ObserveElection: its streams, one after
// another.
type observer struct {
	chain
	name string
	// token is the Token of the leader yielded last (0: none), index the
	// index of its line; started reports that one was yielded.
	token, index uint64
	started      bool
}

func (o *observer) open(ctx context.Context) (*stream, error) {
	var q query
	q.set("observe", "true")
	var st stream
	req := request{method: http.MethodGet, path: electionPath(o.name), query: q, header: http.Header{"Accept": {"application/x-ndjson"}}}
	if err := o.c.call(ctx, req, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// read yields st's changes of leader, as ObserveElection says.
func (o *observer) read(ctx context.Context, st *stream, yield func(kv.Hold, error) bool) (lost, _ error) {
	return o.lines(ctx, st, 0, func(line []byte) (error, error) {
		var l struct {
			kv.ElectionLineJSON
			Error *kv.ErrorBody `json:"error"`
		}
		if err := json.Unmarshal(line, &l); err != nil {
			return nil, fmt.Errorf("observe %s: %s sent a malformed line %.80q: %w", o.name, st.base, line, err)
		}
		if l.Error != nil { // the line that ends a stream
			err := kv.ErrorFromBody(*l.Error)
			if errors.Is(err, kv.ErrClosed) {
				return fmt.Errorf("%s: %w", st.base, err), nil // it shuts down: resume elsewhere
			}
			return nil, fmt.Errorf("observe %s: %s: %w", o.name, st.base, err)
		}
		var h kv.Hold
		if l.Leader != nil {
			var err error
			if h, err = decodeHold(*l.Leader); err != nil {
				return nil, fmt.Errorf("observe %s: %s sent a malformed line %.80q: %w", o.name, st.base, line, err)
			}
		}
		if o.started && (l.Index < o.index || h.Token == o.token) {
			return nil, nil // older than, or the same leader as, the last one yielded
		}
		o.token, o.index, o.started = h.Token, l.Index, true
		if !yield(h, nil) {
			return nil, errStopped
		}
		return nil, nil
	})
}

// acquire is Lock (value nil) and Campaign.
func (c *Client) acquire(ctx context.Context, path, name string, value []byte, opts kv.LockOptions) (kv.Hold, error) {
	if err := kv.ValidateLockName(name); err != nil {
		return kv.Hold{}, err
	}
	if err := opts.Validate(); err != nil {
		return kv.Hold{}, err
	}
	body := holdRequest{Lease: opts.Lease}
	if opts.TTL != 0 {
		d := kv.Duration(opts.TTL)
		body.TTL = &d
	}
	if value != nil {
		s, b := kv.EncodeBytes(value)
		if b != "" {
			body.ValueBase64 = &b
		} else {
			body.Value = &s
		}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return kv.Hold{}, fmt.Errorf("%s: %w", path, err)
	}
	req := request{method: http.MethodPost, path: path, header: jsonHeader(), body: raw, class: unkeyedWrite}
	var until time.Time
	if opts.Wait > 0 {
		until = time.Now().Add(opts.Wait)
	}
	if dl, ok := ctx.Deadline(); ok && (until.IsZero() || dl.Before(until)) {
		until = dl // blockFor sends nine tenths of what is left of it
	}
	if !until.IsZero() {
		req.class, req.blockUntil = waitWrite, until
	}
	var resp kv.HoldJSON
	if err := c.call(ctx, req, &resp); err != nil {
		return kv.Hold{}, err
	}
	return decodeHold(resp)
}

// holdRequest is the body of POST /v1/lock/{name} and
// /v1/election/{name}.
type holdRequest struct {
	TTL         *kv.Duration `json:"ttl,omitempty"`
	Lease       kv.LeaseID   `json:"lease,omitempty"`
	Value       *string      `json:"value,omitempty"`
	ValueBase64 *string      `json:"value_base64,omitempty"`
}

// release is Unlock and Resign.
func (c *Client) release(ctx context.Context, path, name string, token uint64) (uint64, error) {
	if err := kv.ValidateLockName(name); err != nil {
		return 0, err
	}
	if token == 0 {
		return 0, fmt.Errorf("%w: a fencing token is positive", kv.ErrBadRequest)
	}
	var q query
	q.set("token", strconv.FormatUint(token, 10))
	var resp struct {
		Index uint64 `json:"index"`
	}
	if err := c.call(ctx, request{method: http.MethodDelete, path: path, query: q, class: unkeyedWrite}, &resp); err != nil {
		return 0, err
	}
	return resp.Index, nil
}

func decodeHold(h kv.HoldJSON) (kv.Hold, error) {
	out, err := h.Hold()
	if err != nil {
		return kv.Hold{}, fmt.Errorf("hold response: %w", err)
	}
	return out, nil
}

func lockPath(name string) string     { return "/v1/lock/" + url.PathEscape(name) }
func electionPath(name string) string { return "/v1/election/" + url.PathEscape(name) }
