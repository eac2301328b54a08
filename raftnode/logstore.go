package raftnode

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/metrics"
	"go.etcd.io/bbolt"
)

// The kinds of raft log store (Config.LogStore). A data directory holds
// one kind for its whole life: the log and the stable store (the node's
// current term and vote) live in it, so opening the other kind would start
// the member with an empty log and no memory of its vote.
const (
	// LogStoreBoltDB is raft-boltdb/v2 in DataDir/raft.db, the default.
	LogStoreBoltDB = "boltdb"
	// LogStoreWAL is hashicorp/raft-wal in DataDir/wal/ (segment files
	// and wal-meta.db, a small bbolt file with the stable store and the
	// segment list).
	LogStoreWAL = "wal"
)

// ErrLogStoreMismatch: the data directory holds the state of one kind of
// raft log store and the other kind was asked for. Nothing was opened or
// changed.
var ErrLogStoreMismatch = errors.New("data directory holds another kind of raft log store")

// logFile is the boltdb log and stable store in the data directory; walDir
// the directory of the WAL, whose metadata file walMeta marks it as made.
const (
	logFile = "raft.db"
	walDir  = "wal"
	walMeta = metadb.FileName
)

// logStore is what raft needs of the log store of either kind: the log,
// the stable store, and a Close once raft has shut down.
type logStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// ParseLogStore checks a log store kind: "" (LogStoreBoltDB), "boltdb" or
// "wal".
func ParseLogStore(s string) (string, error) {
	switch s {
	case "", LogStoreBoltDB:
		return LogStoreBoltDB, nil
	case LogStoreWAL:
		return LogStoreWAL, nil
	}
	return "", fmt.Errorf("raftnode: unknown raft log store %q (want %s or %s)", s, LogStoreBoltDB, LogStoreWAL)
}

// DetectLogStore reports which kind of raft log store dir holds:
// LogStoreBoltDB (a raft.db), LogStoreWAL (a wal/wal-meta.db), or "" for
// none. A directory holding both is an error: it cannot tell which one is
// the member's.
func DetectLogStore(dir string) (string, error) {
	bolt, err := exists(filepath.Join(dir, logFile))
	if err != nil {
		return "", err
	}
	w, err := exists(filepath.Join(dir, walDir, walMeta))
	if err != nil {
		return "", err
	}
	switch {
	case bolt && w:
		return "", fmt.Errorf("raftnode: %w: %s holds both %s and %s/: only one is the member's log (remove the one that is not)",
			ErrLogStoreMismatch, dir, logFile, walDir)
	case bolt:
		return LogStoreBoltDB, nil
	case w:
		return LogStoreWAL, nil
	}
	return "", nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("raftnode: %w", err)
	}
	return true, nil
}

// logStorePath is where kind keeps its state in dir, for messages.
func logStorePath(kind string) string {
	if kind == LogStoreWAL {
		return walDir + "/"
	}
	return logFile
}

// openLogStore opens (creating if needed) dir's raft log store of kind
// (segmentSize: Config.WALSegmentSize). It refuses, with
// ErrLogStoreMismatch, a directory that holds the other kind's state.
func openLogStore(dir, kind string, segmentSize int, hlog hclog.Logger) (logStore, error) {
	kind, err := ParseLogStore(kind)
	if err != nil {
		return nil, err
	}
	have, err := DetectLogStore(dir)
	if err != nil {
		return nil, err
	}
	if have != "" && have != kind {
		return nil, fmt.Errorf("raftnode: %w: %s holds a %s raft log (%s) and the %s log store (%s) was asked for: "+
			"start it with the %s log store; a member changes kinds only by leaving the cluster and joining again with an empty data directory",
			ErrLogStoreMismatch, dir, have, logStorePath(have), kind, logStorePath(kind), have)
	}
	if kind == LogStoreWAL {
		return openWAL(dir, segmentSize, hlog)
	}
	return openBolt(dir)
}

// openBolt opens dir's raft.db: log and stable store. The log is appended
// at one end and truncated at the other, so its free pages churn: bbolt's
// default array freelist is searched linearly and written out on every
// commit, while the map freelist is not written at all (NoFreelistSync;
// bbolt rebuilds it by scanning at open), which keeps commits cheap as the
// file grows. The log itself is always fsynced.
func openBolt(dir string) (logStore, error) {
	logs, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(dir, logFile),
		BoltOptions: &bbolt.Options{
			Timeout:        time.Second,
			NoFreelistSync: true,
			FreelistType:   bbolt.FreelistMapType,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("raftnode: open %s: %w", logFile, err)
	}
	return logs, nil
}

// walStore is raft-wal's WAL with a Close that also closes its metadata
// file. wal.(*WAL).Close closes the segment files but leaves the metadata
// database (wal-meta.db, a bbolt file) open, and with it bbolt's file
// lock: a second Open in the same process (a node restarted in a test, an
// embedder, Recover after a node) would wait on that lock for ever.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

// openWAL opens dir's wal/, creating it if needed: segment files of
// segmentSize bytes (0: the default, 64 MiB; preallocated) and
// wal-meta.db. Every append is fsynced. Its metrics go nowhere.
func openWAL(dir string, segmentSize int, hlog hclog.Logger) (logStore, error) {
	path := filepath.Join(dir, walDir)
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(path,
		wal.WithLogger(hlog.Named("wal")),
		wal.WithMetaStore(meta),
		wal.WithSegmentSize(segmentSize), // 0 keeps the default
		wal.WithMetricsCollector(&metrics.NoOpCollector{}))
	if err != nil {
		_ = meta.Close()
		return nil, fmt.Errorf("raftnode: open %s/: %w", walDir, err)
	}
	return &walStore{WAL: w, meta: meta}, nil
}

// Close closes the WAL, then its metadata file. Raft must have shut down:
// nothing may use the store any more.
func (s *walStore) Close() error {
	return errors.Join(s.WAL.Close(), s.meta.Close())
}

var (
	_ logStore               = (*walStore)(nil)
	_ logStore               = (*raftboltdb.BoltStore)(nil)
	_ raft.MonotonicLogStore = (*walStore)(nil)
)
