package main

import (
	"fmt"
	"time"

	metrics "github.com/armon/go-metrics"
	metricsprom "github.com/armon/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftkv/raftkv"
)

// raftMetricsRegistry makes the registry of a node whose /metrics also
// shows hashicorp/raft's own measurements (--raft-metrics): a node's own
// registry (raftkv.NewRegistry) and a sink for the go-metrics calls raft
// makes (raft_commitTime, raft_leader_dispatchLog,
// raft_rpc_appendEntries_storeLogs, raft_replication_appendEntries_rpc,
// raft_fsm_applyBatch, ...: summaries in milliseconds, quantiles over the
// last ten seconds; one not measured for a minute drops off). raft reports
// to go-metrics' process-wide sink, so this is for a process that runs
// one node, as raftkv serve does.
func raftMetricsRegistry() (*prometheus.Registry, error) {
	reg := raftkv.NewRegistry()
	sink, err := metricsprom.NewPrometheusSinkFrom(metricsprom.PrometheusOpts{
		Expiration: time.Minute,
		Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("serve: --raft-metrics: %w", err)
	}
	cfg := metrics.DefaultConfig("")
	cfg.EnableHostname = false
	cfg.EnableRuntimeMetrics = false // the Go collector has them
	if _, err := metrics.NewGlobal(cfg, sink); err != nil {
		return nil, fmt.Errorf("serve: --raft-metrics: %w", err)
	}
	return reg, nil
}
