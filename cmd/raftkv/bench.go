package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/raftkv/raftkv/internal/loadgen"
)

const benchSummary = `Measures the throughput and latency of a cluster over HTTP keep-alive:
--connections workers, each with one request in flight at a time, send
requests for --duration (after --warmup, which is not counted), spread
round-robin over every --addr endpoint. Keys are --key-prefix and eight
digits, drawn uniformly from --keys; values are --value-size bytes.

Workloads:
  put        PUT of a random key
  get        linearizable GET of a random key (the keys are preloaded)
  get-stale  GET ?consistency=stale of a random key (preloaded)
  mixed      90% linearizable GET, 10% PUT (preloaded)
  txn        POST /v1/txn: compare the key's version, put it on success,
             get it on failure (preloaded); refused if the server lacks it

Only successful requests count as ops and enter the latency figures;
failures are counted by kind (HTTP status and error code, or the
transport error). --serve-null ADDR serves a do-nothing handler instead,
so that the same client can measure the machine's HTTP ceiling, and
--fsync DIR measures one durable write on DIR's file system instead (4 KiB
overwrites of a scratch file, each followed by fdatasync, for --duration).

Watch workloads (GET /v1/watch/{--key-prefix}?prefix, NDJSON):
  watch-idle   opens --watchers watches on one node (one --addr, started
               with --pprof) and reports its memory per open watcher:
               resident set and Go heap + stacks, each sampled after a
               forced garbage collection before, while open, after close
  watch-delay  opens --watchers watches spread over the nodes, then writes
               --rate puts a second (--connections writers, each write to a
               key of its own) for --warmup + --duration; reports the delay
               from each write's answer to its event at every watcher
               (an event that arrives first counts as 0), and events
               received against expected; exits 1 after the figures when
               a watcher missed an acknowledged write

Lease and lock workloads (each also reports, from the nodes' /metrics,
every node's CPU, the leader, and the raft entries committed meanwhile):
  leases-keepalive  grants --leases leases of --ttl, then keeps them all
                    alive from --connections workers (POST
                    /v1/lease/{id}/keepalive, each worker its own leases in
                    turn) as fast as the cluster answers; reports
                    keepalives a second and the leases lost (gone before
                    the run revoked them), exits 1 after the figures when
                    any was lost
  lock-uncontended  each worker loops acquire (POST /v1/lock with a --ttl
                    lease of its own) → release → revoke of that lease,
                    on a lock of its own; reports the cycle's latency
  lock-contended    the same cycle, every worker on one lock: handoffs a
                    second and the acquire latency (the wait in the queue
                    included); exits 1 after the figures when two workers
                    held the lock at once or a token did not increase`

// benchOptions is the parsed command line of raftkv bench.
type benchOptions struct {
	loadgen.Options
	preload     bool
	preloadOnly bool
	json        bool
	serveNull   string
	fsyncDir    string
}

func parseBenchArgs(args []string, stderr io.Writer) (benchOptions, error) {
	c := newCommand("bench", "", benchSummary, stderr)
	fs := c.fs
	addr := os.Getenv("RAFTKV_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	fs.StringVar(&addr, "addr", addr, "comma-separated API endpoints; requests go round-robin over all of them ($RAFTKV_ADDR)")
	var tf tlsFlags
	tf.add(fs)
	var token string
	fs.StringVar(&token, "token", "", "the secret of an ACL `TOKEN` every request carries, for a cluster with ACLs (default $RAFTKV_TOKEN)")
	var o benchOptions
	names := make([]string, 0, len(loadgen.Workloads()))
	for _, w := range loadgen.Workloads() {
		names = append(names, string(w))
	}
	workload := string(loadgen.Put)
	fs.StringVar(&workload, "workload", workload, "`workload` to run: "+strings.Join(names, ", "))
	fs.IntVar(&o.Connections, "connections", 16, "concurrent workers, each with one request in flight")
	fs.IntVar(&o.ValueSize, "value-size", 256, "value size in `bytes`")
	fs.IntVar(&o.Keys, "keys", 10000, "size of the key space")
	fs.StringVar(&o.KeyPrefix, "key-prefix", "bench/", "prefix of every key")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long to measure")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "load before measuring, not counted")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Second, "deadline of one request")
	fs.BoolVar(&o.preload, "preload", true, "write every key once before a workload that reads keys")
	fs.BoolVar(&o.preloadOnly, "preload-only", false, "write every key once, report, and stop")
	fs.BoolVar(&o.json, "json", false, "print the result as one line of JSON")
	fs.StringVar(&o.serveNull, "serve-null", "", "serve a do-nothing handler on `host:port` until interrupted (the HTTP ceiling)")
	fs.StringVar(&o.fsyncDir, "fsync", "", "measure synced 4 KiB overwrites (write + fdatasync) of a scratch file in `DIR` for --duration, and report their latency; no cluster is needed")
	fs.IntVar(&o.Watchers, "watchers", 1000, "watches the watch workloads open")
	fs.IntVar(&o.Rate, "rate", 1000, "puts a second watch-delay sends")
	fs.IntVar(&o.Leases, "leases", 10000, "leases leases-keepalive grants and keeps alive")
	fs.DurationVar(&o.TTL, "ttl", 30*time.Second, "TTL of the leases the lease and lock workloads grant")
	if _, err := c.parse(args, 0, 0); err != nil {
		return o, err
	}
	o.Workload = loadgen.Workload(workload)
	if err := o.Validate(); err != nil {
		return o, &usageError{err: err}
	}
	switch {
	case o.Duration <= 0 && !o.preloadOnly && o.serveNull == "":
		return o, usagef("--duration must be positive")
	case o.preloadOnly && !o.preload:
		return o, usagef("--preload-only and --preload=false exclude each other")
	}
	if o.serveNull != "" {
		if _, _, err := net.SplitHostPort(o.serveNull); err != nil {
			return o, usagef("--serve-null: %q is not host:port", o.serveNull)
		}
		return o, nil
	}
	if o.fsyncDir != "" {
		return o, nil
	}
	tlsConf, err := tf.config()
	if err != nil {
		return o, err
	}
	o.TLS = tlsConf
	if o.Token, err = tokenFlag(token); err != nil {
		return o, err
	}
	eps, err := splitAddr(addr, o.TLS != nil)
	if err != nil {
		return o, err
	}
	if eps, err = loadgen.ParseEndpoints(strings.Join(eps, ",")); err != nil {
		return o, usagef("--addr: %w", err)
	}
	o.Endpoints = eps
	if o.Workload == loadgen.WatchIdle && len(eps) != 1 {
		return o, usagef("--workload watch-idle measures one node: give one --addr, not %d", len(eps))
	}
	return o, nil
}

// runBench runs raftkv bench: a load generator, or with --serve-null the
// do-nothing server that measures the ceiling.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseBenchArgs(args, stderr)
	if err != nil {
		return err
	}
	if o.serveNull != "" {
		ln, err := net.Listen("tcp", o.serveNull)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		fmt.Fprintf(stdout, "raftkv bench: do-nothing handler on http://%s\n", ln.Addr())
		if err := loadgen.ServeNull(ctx, ln, o.ValueSize); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		return nil
	}
	if o.fsyncDir != "" {
		res, err := loadgen.MeasureFsync(ctx, o.fsyncDir, o.Duration)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if o.json {
			return writeJSON(stdout, res)
		}
		_, err = fmt.Fprintf(stdout, "synced 4 KiB overwrites in %s: %d in %v, p50 %.3f ms, p99 %.3f ms, mean %.3f ms\n",
			res.Dir, res.Writes, o.Duration, res.Latency.P50, res.Latency.P99, res.Latency.Mean)
		return err
	}
	g, err := loadgen.New(o.Options)
	if err != nil {
		return &usageError{err: err}
	}
	defer g.Close()

	switch o.Workload {
	case loadgen.WatchIdle:
		res, err := g.RunWatchIdle(ctx)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if o.json {
			return writeJSON(stdout, res)
		}
		return printWatchIdleResult(stdout, res)
	case loadgen.WatchDelay:
		res, err := g.RunWatchDelay(ctx)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if o.json {
			err = writeJSON(stdout, res)
		} else {
			err = printWatchDelayResult(stdout, res)
		}
		if err != nil {
			return err
		}
		if err := res.Check(); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		return nil
	case loadgen.LeasesKeepalive:
		res, err := g.RunLeases(ctx)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if o.json {
			err = writeJSON(stdout, res)
		} else {
			err = printLeasesResult(stdout, res)
		}
		if err != nil {
			return err
		}
		if err := res.Check(); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		return nil
	case loadgen.LockUncontended, loadgen.LockContended:
		res, err := g.RunLocks(ctx)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if o.json {
			err = writeJSON(stdout, res)
		} else {
			err = printLockResult(stdout, res)
		}
		if err != nil {
			return err
		}
		if err := res.Check(); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		return nil
	}
	if err := g.Probe(ctx); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if o.preloadOnly || (o.preload && o.Workload.ReadsKeys()) {
		start := time.Now()
		if err := g.Preload(ctx); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		elapsed := time.Since(start)
		fmt.Fprintf(stderr, "raftkv bench: preloaded %d keys in %.2fs (%.0f puts/s)\n", o.Keys, elapsed.Seconds(), float64(o.Keys)/elapsed.Seconds())
		if o.preloadOnly {
			return nil
		}
	}
	res, err := g.Run(ctx)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if o.json {
		return writeJSON(stdout, res)
	}
	return printBenchResult(stdout, res)
}

// printBenchResult prints r as a table, the output of raftkv bench without
// --json.
func printBenchResult(w io.Writer, r *loadgen.Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\t%s\n", r.Workload)
	fmt.Fprintf(tw, "endpoints\t%s\n", strings.Join(r.Endpoints, ", "))
	fmt.Fprintf(tw, "connections\t%d\n", r.Connections)
	fmt.Fprintf(tw, "values\t%d bytes, key space %d\n", r.ValueSize, r.Keys)
	fmt.Fprintf(tw, "measured\t%.2fs after %.2fs of warm-up\n", r.Seconds, r.Warmup)
	fmt.Fprintf(tw, "throughput\t%.0f ops/s (%d ops)\n", r.OpsPerSec, r.Ops)
	l := r.Latency
	fmt.Fprintf(tw, "latency\tmean %.3fms  p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms\n", l.Mean, l.P50, l.P90, l.P99, l.Max)
	fmt.Fprintf(tw, "errors\t%d\n", r.ErrorsTotal)
	for _, e := range r.Errors {
		fmt.Fprintf(tw, "  %s\t%d  e.g. %s\n", e.Kind, e.Count, e.Example)
	}
	return tw.Flush()
}

// printWatchIdleResult prints r as a table, the output of raftkv bench
// --workload watch-idle without --json.
func printWatchIdleResult(w io.Writer, r *loadgen.WatchIdleResult) error {
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\t%s\n", r.Workload)
	fmt.Fprintf(tw, "endpoint\t%s\n", r.Endpoint)
	fmt.Fprintf(tw, "watchers\t%d opened of %d, in %.2fs\n", r.Opened, r.Watchers, r.OpenSeconds)
	fmt.Fprintf(tw, "node memory\tresident\theap in use\tstacks\tgoroutines\twatchers\n")
	for _, m := range []struct {
		name string
		s    loadgen.MemorySample
	}{{"  before", r.Before}, {"  open", r.Open}, {"  closed", r.Closed}} {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", m.name, mib(m.s.RSSBytes), mib(m.s.HeapInuseBytes), mib(m.s.StackInuseBytes), m.s.Goroutines, m.s.Watchers)
	}
	p := r.PerWatcher
	fmt.Fprintf(tw, "per watcher\tresident %.1f KiB  heap+stacks %.1f KiB (heap %.1f KiB, stacks %.1f KiB)  goroutines %.2f\n",
		p.RSSBytes/1024, p.HeapStackBytes/1024, p.HeapBytes/1024, p.StackBytes/1024, p.Goroutines)
	fmt.Fprintf(tw, "events\t%d\n", r.Events)
	fmt.Fprintf(tw, "errors\t%d\n", r.ErrorsTotal)
	for _, e := range r.Errors {
		fmt.Fprintf(tw, "  %s\t%d  e.g. %s\n", e.Kind, e.Count, e.Example)
	}
	return tw.Flush()
}

// printWatchDelayResult prints r as a table, the output of raftkv bench
// --workload watch-delay without --json.
func printWatchDelayResult(w io.Writer, r *loadgen.WatchDelayResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\t%s\n", r.Workload)
	fmt.Fprintf(tw, "endpoints\t%s\n", strings.Join(r.Endpoints, ", "))
	fmt.Fprintf(tw, "watchers\t%d opened of %d, %d ended early\n", r.Opened, r.Watchers, r.WatchersEnded)
	fmt.Fprintf(tw, "writes\t%d at %.0f/s (asked %d/s, %d late, %d not sent), %d connections, %d-byte values\n",
		r.Writes, r.WritesPerSec, r.Rate, r.WritesLate, r.WritesUnsent, r.Connections, r.ValueSize)
	fmt.Fprintf(tw, "measured\t%.2fs after %.2fs of warm-up\n", r.Seconds, r.Warmup)
	l := r.WriteLatency
	fmt.Fprintf(tw, "write latency\tmean %.3fms  p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms\n", l.Mean, l.P50, l.P90, l.P99, l.Max)
	d := r.Delay
	fmt.Fprintf(tw, "event delay\tmean %.3fms  p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms\n", d.Mean, d.P50, d.P90, d.P99, d.Max)
	fmt.Fprintf(tw, "events\t%d received of %d expected, %d missing, %d before their answer (delay 0)\n",
		r.EventsReceived, r.EventsExpected, r.EventsMissing, r.EventsEarly)
	fmt.Fprintf(tw, "  other\t%d duplicated, %d mismatched, %d of unanswered writes, %d of other keys\n",
		r.EventsDuplicate, r.EventsMismatched, r.EventsUnacknowledged, r.EventsForeign)
	fmt.Fprintf(tw, "load process\t%.2f CPUs\n", r.LoadCPU)
	fmt.Fprintf(tw, "errors\t%d\n", r.ErrorsTotal)
	for _, e := range r.Errors {
		fmt.Fprintf(tw, "  %s\t%d  e.g. %s\n", e.Kind, e.Count, e.Example)
	}
	return tw.Flush()
}

// printClusterFigures prints what the nodes' /metrics said about a run's
// window; ops names the run's operations.
func printClusterFigures(tw io.Writer, c loadgen.ClusterFigures, ops string) {
	cpu := make([]string, len(c.NodeCPU))
	for i, v := range c.NodeCPU {
		cpu[i] = fmt.Sprintf("%.2f", v)
	}
	leader := c.Leader
	if leader == "" {
		leader = "none"
	}
	if c.LeaderChanged {
		leader += " (changed during the run)"
	}
	fmt.Fprintf(tw, "leader\t%s, %.2f CPUs\n", leader, c.LeaderCPU)
	fmt.Fprintf(tw, "node CPUs\t%s\n", strings.Join(cpu, "  "))
	fmt.Fprintf(tw, "raft entries\t%d committed, %.2f %s per entry, %.2f entries per apply batch on the leader\n",
		c.Entries, c.OpsPerEntry, ops, c.ApplyBatchEntries)
	fmt.Fprintf(tw, "forwarded\t%d batches from the followers, %.2f writes each\n", c.ForwardBatches, c.ForwardBatchWrites)
	fmt.Fprintf(tw, "lease timers\t%d checkpoints, %d expiries by the leader\n", c.LeaseCheckpoints, c.LeasesExpired)
}

// printErrors prints a run's errors by kind.
func printErrors(tw io.Writer, total int64, errs []loadgen.ErrorCount) {
	fmt.Fprintf(tw, "errors\t%d\n", total)
	for _, e := range errs {
		fmt.Fprintf(tw, "  %s\t%d  e.g. %s\n", e.Kind, e.Count, e.Example)
	}
}

func printLatency(tw io.Writer, name string, l loadgen.LatencyMS) {
	fmt.Fprintf(tw, "%s\tmean %.3fms  p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms\n", name, l.Mean, l.P50, l.P90, l.P99, l.Max)
}

// printLeasesResult prints r as a table, the output of raftkv bench
// --workload leases-keepalive without --json.
func printLeasesResult(w io.Writer, r *loadgen.LeasesResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\t%s\n", r.Workload)
	fmt.Fprintf(tw, "endpoints\t%s\n", strings.Join(r.Endpoints, ", "))
	fmt.Fprintf(tw, "leases\t%d of TTL %gs, granted in %.2fs; %d connections\n", r.Leases, r.TTL, r.GrantSeconds, r.Connections)
	fmt.Fprintf(tw, "measured\t%.2fs after %.2fs of warm-up\n", r.Seconds, r.Warmup)
	fmt.Fprintf(tw, "throughput\t%.0f keepalives/s (%d)\n", r.KeepalivesPerSec, r.Keepalives)
	printLatency(tw, "latency", r.Latency)
	fmt.Fprintf(tw, "leases lost\t%d (longest gap between keepalives of a lease %.0fms)\n", r.LeasesLost, r.MaxGapMS)
	if r.LostExample != "" {
		fmt.Fprintf(tw, "  e.g.\t%s\n", r.LostExample)
	}
	printClusterFigures(tw, r.Cluster, "keepalives")
	fmt.Fprintf(tw, "load process\t%.2f CPUs\n", r.LoadCPU)
	printErrors(tw, r.ErrorsTotal, r.Errors)
	if r.RevokeErrors > 0 {
		fmt.Fprintf(tw, "revokes failed\t%d (the clean-up after the run)\n", r.RevokeErrors)
	}
	return tw.Flush()
}

// printLockResult prints r as a table, the output of raftkv bench
// --workload lock-uncontended or lock-contended without --json.
func printLockResult(w io.Writer, r *loadgen.LockResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "workload\t%s\n", r.Workload)
	fmt.Fprintf(tw, "endpoints\t%s\n", strings.Join(r.Endpoints, ", "))
	fmt.Fprintf(tw, "lock\t%s, %d workers, leases of TTL %gs\n", r.Lock, r.Connections, r.TTL)
	fmt.Fprintf(tw, "measured\t%.2fs after %.2fs of warm-up\n", r.Seconds, r.Warmup)
	fmt.Fprintf(tw, "throughput\t%.0f acquisitions/s (%d, %d whole cycles)\n", r.AcquisitionsPerSec, r.Acquisitions, r.Cycles)
	printLatency(tw, "acquire", r.Acquire)
	printLatency(tw, "release+revoke", r.Release)
	printLatency(tw, "cycle", r.Cycle)
	fmt.Fprintf(tw, "violations\t%d overlapping holds, %d tokens not above the one before\n", r.Overlaps, r.TokenRegressions)
	printClusterFigures(tw, r.Cluster, "acquisitions")
	fmt.Fprintf(tw, "load process\t%.2f CPUs\n", r.LoadCPU)
	printErrors(tw, r.ErrorsTotal, r.Errors)
	return tw.Flush()
}
