package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// MemorySample is one node's memory as its /metrics reports it, read right
// after a forced garbage collection (see Generator.sampleMemory).
type MemorySample struct {
	// RSSBytes is process_resident_memory_bytes: every page of the
	// process in RAM, Go heap, stacks, the runtime's own and memory the
	// runtime has not returned to the system yet.
	RSSBytes int64 `json:"rss_bytes"`
	// HeapInuseBytes is go_memstats_heap_inuse_bytes: spans of the Go heap
	// holding objects.
	HeapInuseBytes int64 `json:"heap_inuse_bytes"`
	// StackInuseBytes is go_memstats_stack_inuse_bytes: goroutine stacks.
	StackInuseBytes int64 `json:"stack_inuse_bytes"`
	// Goroutines is go_goroutines.
	Goroutines int64 `json:"goroutines"`
	// Watchers is raftkv_watchers: the watches (and blocking reads) the
	// node serves.
	Watchers int64 `json:"watchers"`
}

// memoryMetrics maps the metric names to MemorySample's fields.
var memoryMetrics = map[string]func(*MemorySample) *int64{
	"process_resident_memory_bytes": func(m *MemorySample) *int64 { return &m.RSSBytes },
	"go_memstats_heap_inuse_bytes":  func(m *MemorySample) *int64 { return &m.HeapInuseBytes },
	"go_memstats_stack_inuse_bytes": func(m *MemorySample) *int64 { return &m.StackInuseBytes },
	"go_goroutines":                 func(m *MemorySample) *int64 { return &m.Goroutines },
	"raftkv_watchers":               func(m *MemorySample) *int64 { return &m.Watchers },
}

// parseMemoryMetrics reads a sample from a Prometheus text exposition; it
// fails when one of the metrics is missing.
func parseMemoryMetrics(r io.Reader) (MemorySample, error) {
	var m MemorySample
	found := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		field, ok := memoryMetrics[name]
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return m, fmt.Errorf("metric %s: %w", name, err)
		}
		*field(&m) = int64(v)
		found[name] = true
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	for name := range memoryMetrics {
		if !found[name] {
			return m, fmt.Errorf("the node's /metrics has no %s", name)
		}
	}
	return m, nil
}

// sampleMemory forces two garbage collections on the node at ep (GET
// /debug/pprof/heap?gc=1, which needs raftkv serve --pprof) and then reads
// its /metrics: the live heap, not garbage waiting for the next cycle.
// Two, because what sync.Pools hold (net/http's buffers of closed
// connections) survives the first.
func (g *Generator) sampleMemory(ctx context.Context, ep string) (MemorySample, error) {
	for range 2 {
		if err := g.get(ctx, ep+"/debug/pprof/heap?gc=1", io.Discard); err != nil {
			return MemorySample{}, fmt.Errorf("forcing a garbage collection (does the node run with --pprof?): %w", err)
		}
	}
	return g.metrics(ctx, ep)
}

// metrics reads the memory metrics of the node at ep, without forcing a
// garbage collection.
func (g *Generator) metrics(ctx context.Context, ep string) (MemorySample, error) {
	var body strings.Builder
	if err := g.get(ctx, ep+"/metrics", &body); err != nil {
		return MemorySample{}, err
	}
	m, err := parseMemoryMetrics(strings.NewReader(body.String()))
	if err != nil {
		return MemorySample{}, fmt.Errorf("GET %s/metrics: %w", ep, err)
	}
	return m, nil
}

// get copies the body of a 200 answer to GET target into w.
func (g *Generator) get(ctx context.Context, target string, w io.Writer) error {
	req, err := g.newRequest(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("GET %s answered %s", target, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
