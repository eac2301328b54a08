package loadgen

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/raftkv/raftkv/client"
)

// Workload is the request mix of a run.
type Workload string

// The workloads.
const (
	// Put is a PUT of a random key.
	Put Workload = "put"
	// Get is a linearizable GET of a random key.
	Get Workload = "get"
	// GetStale is a GET ?consistency=stale of a random key.
	GetStale Workload = "get-stale"
	// Mixed is 90% Get and 10% Put, drawn per request.
	Mixed Workload = "mixed"
	// Txn is a POST /v1/txn: compare the key's version, put it on success,
	// get it on failure.
	Txn Workload = "txn"
	// WatchIdle opens Watchers watches that receive nothing and measures
	// what they cost the node in memory (Generator.RunWatchIdle).
	WatchIdle Workload = "watch-idle"
	// WatchDelay opens Watchers watches over the endpoints and writes at
	// Rate puts a second; it measures the delay from each write's
	// acknowledgement to its event at every watcher (Generator.RunWatchDelay).
	WatchDelay Workload = "watch-delay"
	// LeasesKeepalive grants Leases leases of TTL and keeps them all alive
	// from Connections workers as fast as the cluster answers; it measures
	// the keepalives a second acknowledged and counts the leases lost
	// (Generator.RunLeases).
	LeasesKeepalive Workload = "leases-keepalive"
	// LockUncontended has every worker loop acquire (POST /v1/lock with a
	// TTL) → release (DELETE /v1/lock) → revoke the lock's own lease, each
	// worker on a lock of its own (Generator.RunLocks).
	LockUncontended Workload = "lock-uncontended"
	// LockContended has every worker loop the same cycle on one lock, so
	// the workers hand it to each other (Generator.RunLocks).
	LockContended Workload = "lock-contended"
)

// Workloads returns every workload, in the order raftkv bench lists them.
func Workloads() []Workload {
	return []Workload{Put, Get, GetStale, Mixed, Txn, WatchIdle, WatchDelay, LeasesKeepalive, LockUncontended, LockContended}
}

// ReadsKeys reports whether the workload reads keys, which should then be
// written first (see Generator.Preload).
func (w Workload) ReadsKeys() bool { return w == Get || w == GetStale || w == Mixed || w == Txn }

// Watches reports whether the workload is a watch measurement, run by
// RunWatchIdle or RunWatchDelay rather than Run.
func (w Workload) Watches() bool { return w == WatchIdle || w == WatchDelay }

// Locks reports whether the workload is a lock measurement, run by RunLocks
// rather than Run.
func (w Workload) Locks() bool { return w == LockUncontended || w == LockContended }

// UsesLeases reports whether the workload grants leases (its TTL option
// applies): leases-keepalive and the lock workloads.
func (w Workload) UsesLeases() bool { return w == LeasesKeepalive || w.Locks() }

// ErrUnsupported marks a workload the server does not implement.
var ErrUnsupported = errors.New("workload not supported by the server")

// Options configure a Generator. The comments name each option's raftkv
// bench flag.
type Options struct {
	// Endpoints are the base URLs requests go to, round-robin (--addr);
	// each is parsed as client.ParseEndpoint does.
	Endpoints []string
	// Workload is the request mix (--workload).
	Workload Workload
	// Connections is the number of workers, each with one request in
	// flight (--connections); at least 1.
	Connections int
	// ValueSize is the size of every value written, in bytes
	// (--value-size); not negative.
	ValueSize int
	// Keys is the size of the key space (--keys); at least 1.
	Keys int
	// KeyPrefix starts every key (--key-prefix).
	KeyPrefix string
	// Duration is how long Run measures (--duration); Run needs it
	// positive, Preload and Probe do not look at it.
	Duration time.Duration
	// Warmup is how long Run sends load before it measures (--warmup);
	// not negative.
	Warmup time.Duration
	// Timeout is the deadline of one request (--timeout); positive. A
	// watch stream has no deadline, but opening it (its answer's header)
	// must come within Timeout, and so must the last events after the
	// writes of RunWatchDelay stop.
	Timeout time.Duration
	// Watchers is the number of watches the watch workloads open
	// (--watchers); at least 1 for them, ignored by the others.
	Watchers int
	// Rate is the puts a second RunWatchDelay sends (--rate); at least 1
	// for it, ignored by the others.
	Rate int
	// Leases is the number of leases leases-keepalive grants and keeps
	// alive (--leases); at least Connections for it, ignored by the others.
	Leases int
	// TTL is the TTL of every lease a lease or lock workload grants
	// (--ttl); positive for them (the node checks its bounds), ignored by
	// the others.
	TTL time.Duration
	// TLS configures the connections to https endpoints (--cacert, --cert,
	// --key); nil: Go's defaults. It is cloned.
	TLS *tls.Config
	// Token is the secret of the ACL token every request carries
	// (Authorization: Bearer; --token); empty: none.
	Token string
}

// Validate checks every option but Endpoints (see New) and Duration (see
// Run), in the order of raftkv bench's flags; the error names the flag.
func (o Options) Validate() error {
	switch {
	case !slices.Contains(Workloads(), o.Workload):
		names := make([]string, 0, len(Workloads()))
		for _, w := range Workloads() {
			names = append(names, string(w))
		}
		return fmt.Errorf("--workload must be one of %s, not %q", strings.Join(names, ", "), o.Workload)
	case o.Connections < 1:
		return errors.New("--connections must be at least 1")
	case o.ValueSize < 0:
		return errors.New("--value-size must not be negative")
	case o.Keys < 1:
		return errors.New("--keys must be at least 1")
	case o.Warmup < 0:
		return errors.New("--warmup must not be negative")
	case o.Timeout <= 0:
		return errors.New("--timeout must be positive")
	case o.Workload.Watches() && o.Watchers < 1:
		return fmt.Errorf("--watchers must be at least 1 for %s", o.Workload)
	case o.Workload == WatchDelay && o.Rate < 1:
		return fmt.Errorf("--rate must be at least 1 for %s", o.Workload)
	case o.Workload == LeasesKeepalive && o.Leases < o.Connections:
		return fmt.Errorf("--leases must be at least --connections (%d) for %s: every worker keeps leases of its own", o.Connections, o.Workload)
	case o.Workload.UsesLeases() && o.TTL <= 0:
		return fmt.Errorf("--ttl must be positive for %s", o.Workload)
	}
	return nil
}

// ParseEndpoints parses a comma-separated list of endpoints, like
// "127.0.0.1:8001,http://h:8002", into base URLs: each entry as
// client.ParseEndpoint does, empty entries skipped; at least one is needed.
func ParseEndpoints(s string) ([]string, error) {
	var out []string
	for e := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(e) == "" {
			continue
		}
		base, err := client.ParseEndpoint(e)
		if err != nil {
			return nil, err
		}
		out = append(out, base)
	}
	if len(out) == 0 {
		return nil, errors.New("no endpoint given")
	}
	return out, nil
}
