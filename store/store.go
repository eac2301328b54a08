package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/raftkv/raftkv/kv"
)

// Options tune Open. The zero value is usable.
type Options struct {
	// InitialMmapSize is the initial size of bbolt's memory map, in bytes;
	// zero means 1 GiB. A long read transaction (a snapshot being streamed)
	// blocks the map from growing, and with it every write, so make it
	// larger than the database is expected to grow.
	InitialMmapSize int
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// NoSync skips fsync on kv.db's commits (bbolt's NoSync): the raft log
	// is the durable record. A marker file beside kv.db (kv.db.sync), and
	// an fsync at Open, let Open tell a process that died (its writes are
	// safe in the kernel) from a machine that stopped while kv.db had
	// unsynced writes, or a kernel that failed to write them back; then
	// Open discards kv.db, and raft rebuilds it from the newest snapshot
	// and the log. See sync.go.
	NoSync bool
	// BootID returns the id of the running boot (default ReadBootID); a
	// marker written under another boot id means the machine stopped.
	BootID func() string
	// ObserveBatch, if set, is called after each applied batch with the
	// number of raft log entries it applied and the time it took (its
	// commit included, when the batch ended the transaction). It runs on
	// the apply path and must be cheap.
	ObserveBatch func(entries int, took time.Duration)
	// WatchHistory is how many raft indexes of change history the store
	// keeps for watches: the events of the last WatchHistory indexes. Zero
	// keeps none (watches then see only the changes applied while they
	// are open). Nodes that share a cluster should keep the same.
	WatchHistory uint64
	// WatchWindow bounds the memory of recent events shared by watchers,
	// in bytes; zero means DefaultWatchWindow.
	WatchWindow int
	// OnLeases, if set, is called after each committed batch that
	// recorded anything of a lease, with its changes in log order, and
	// after a Restore with reset true and every lease of the restored
	// state (each as a change at the restored index). It runs on the
	// apply path: it must be quick and must not call into the Store's
	// write path. The node's lease timers follow it.
	OnLeases func(changes []LeaseChange, reset bool)

	// CommitInterval is how long applied entries may wait in an open bbolt
	// transaction for later batches to share its commit (commit.go). Zero
	// means DefaultCommitInterval; a negative value commits every batch
	// as it is applied. Reads commit the open transaction first: it never
	// makes a read miss what was applied. Only with NoSync: a store that
	// syncs commits every batch (its marker cannot tell a process that
	// died with a transaction open, see Interrupted).
	CommitInterval time.Duration

	// syncDB, when set, replaces (*bbolt.DB).Sync wherever the store
	// syncs kv.db: tests of package store make it fail, as fsync does
	// after the kernel failed to write pages back.
	syncDB func(*bbolt.DB) error
	// commitTx, when set, replaces (*bbolt.Tx).Commit where the store
	// commits applied entries: tests make it fail (it must end tx).
	commitTx func(*bbolt.Tx) error
}

// Bucket and meta key names: part of the kv.db format.
var (
	bucketKV    = []byte("kv")
	bucketMeta  = []byte("meta")
	bucketNodes = []byte("nodes")
	// bucketIdem maps an idempotency key to the fingerprint and result of
	// the command that used it; bucketIdemExp orders them by log index
	// (8-byte big-endian index, then the key) for expiry.
	bucketIdem    = []byte("idem")
	bucketIdemExp = []byte("idem_exp")

	keyFormat       = []byte("format")
	keyAppliedIndex = []byte("applied_index")
	keyAppliedTerm  = []byte("applied_term")
	// keyClusterID holds the cluster's identity (OpSetCluster); absent
	// until the first leader commits it.
	keyClusterID = []byte("cluster_id")
)

// fileFormat is the version of the kv.db layout, stored in the meta bucket.
const fileFormat = 1

// Store is the bbolt state machine. It implements raft.BatchingFSM; its
// read methods may be called from any goroutine. See the package
// documentation for its invariants.
type Store struct {
	path string
	opts Options
	log  *slog.Logger

	// idemWindow is IdempotencyWindow; tests of package store shrink it
	// to reach expiry in a few entries, through the same code.
	idemWindow uint64
	// historyKeep is Options.WatchHistory.
	historyKeep uint64
	history     historyStats
	hub         *hub

	// mu guards the db pointer: reads, applies and snapshots take RLock
	// around their bbolt transaction, Restore and Close take Lock to swap it.
	mu     sync.RWMutex
	db     *bbolt.DB // nil once closed, or after a failed restore
	closed bool

	applied atomic.Uint64 // mirrors meta/applied_index
	// clusterID mirrors meta/cluster_id (nil or "" while it has none).
	clusterID atomic.Pointer[string]
	// nodes mirrors the nodes bucket: replaced after each batch that
	// applied an OpSetNode, at Open and at Restore. A follower looks up
	// the leader's address for every batch it forwards; a read of the file
	// would commit the transaction ApplyBatch keeps open (commit.go).
	nodes atomic.Pointer[map[string]string]
	// acl mirrors the ACL buckets (acl.go): replaced after each batch
	// that applied an ACL op, at Open and at Restore.
	acl atomic.Pointer[ACLState]

	waitMu sync.Mutex
	waitCh chan struct{} // closed and replaced whenever applied changes
	done   chan struct{} // closed by Close

	failMu sync.Mutex
	failed error // sticky: a failed commit or reopen stops applying

	// The transaction applied entries wait in for their commit (commit.go).
	// txMu guards tx and its counts; it is taken under mu's read side.
	txMu      sync.Mutex
	tx        *bbolt.Tx
	txEntries int         // new entries applied in tx
	txBytes   int         // their log data
	txBegan   time.Time   // when tx took its first entry
	timer     *time.Timer // commits tx when nothing else did in time
	pending   atomic.Bool // tx is open: a read commits it first
	stale     atomic.Bool // a failed commit lost applied entries: reads fail

	wg sync.WaitGroup // background closes of databases replaced by Restore

	discarded   bool // Open discarded an untrusted kv.db
	interrupted bool // Open found kv.db left open by a process that died
}

// Open opens (creating if needed) the state machine file at path,
// normally <data-dir>/kv.db. It fails after a second if another process
// holds the file.
func Open(path string, opts Options) (*Store, error) {
	if opts.InitialMmapSize == 0 {
		opts.InitialMmapSize = 1 << 30
	}
	s := &Store{
		path:        path,
		opts:        opts,
		log:         opts.Logger,
		idemWindow:  IdempotencyWindow,
		historyKeep: opts.WatchHistory,
		waitCh:      make(chan struct{}),
		done:        make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.BootID == nil {
		s.opts.BootID = ReadBootID
	}
	bootID := s.opts.BootID()
	verdict, reason, err := trustState(path, bootID)
	if err != nil {
		return nil, err
	}
	if verdict == trustNo {
		// Not open yet: a process of this boot holding it would be a second
		// node on one data directory, which the node's LOCK file refuses.
		if err := s.discard(reason); err != nil {
			return nil, err
		}
		s.discarded = true
	}
	db, err := openDB(path, s.opts)
	if err != nil {
		return nil, err
	}
	if verdict == trustIfSynced {
		// The process before did not close kv.db: an open transaction of
		// applied entries went with it (commit.go).
		s.interrupted = true
		// kv.db ran without fsync in this boot: what the kernel failed to
		// write back since (an error no one saw yet) this fsync reports.
		if serr := s.sync(db); serr != nil {
			_ = db.Close()
			if err := s.discard(fmt.Sprintf("it ran without fsync, and an fsync of it failed: %v", serr)); err != nil {
				return nil, err
			}
			if db, err = openDB(path, s.opts); err != nil {
				return nil, err
			}
		}
	}
	// From here on the marker must describe kv.db: what the fsync above
	// covered, or a new file, is durable.
	marker := "clean"
	if opts.NoSync {
		marker = "open " + orNone(bootID)
	}
	if err := writeMarker(path, marker); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// Only now that we hold the file lock is a leftover temp file ours.
	if err := os.Remove(restorePath(path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = db.Close()
		return nil, fmt.Errorf("remove leftover restore file: %w", err)
	}
	var index uint64
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketKV, bucketMeta, bucketNodes, bucketIdem, bucketIdemExp} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keyFormat) == nil {
			if err := meta.Put(keyFormat, u64(fileFormat)); err != nil {
				return err
			}
		}
		var err error
		if index, _, err = readMeta(tx); err != nil {
			return err
		}
		if _, err := s.historyBucket(tx, index); err != nil {
			return err
		}
		s.loadHistoryStats(tx)
		s.loadClusterID(tx)
		s.loadNodes(tx)
		acl, err := loadACL(tx)
		if err != nil {
			return err
		}
		s.acl.Store(acl)
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.db = db
	s.applied.Store(index)
	window := opts.WatchWindow
	if window <= 0 {
		window = DefaultWatchWindow
	}
	s.hub = newHub(index, window)
	return s, nil
}

func openDB(path string, opts Options) (*bbolt.DB, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:         time.Second,
		NoFreelistSync:  true,
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: opts.InitialMmapSize,
		NoSync:          opts.NoSync,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: in use by another process: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// Close closes the store. It waits for snapshots still being persisted
// to be released. Further calls return nil; reads then fail with
// kv.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	db := s.db
	s.db = nil
	// No one else holds txMu under the write lock. A failed commit leaves
	// the file at its last commit, below what was applied: the next start
	// replays the rest from the raft log.
	cerr := s.commitLocked()
	s.mu.Unlock()
	close(s.done)
	s.hub.close()

	var err error
	if db != nil {
		if s.opts.NoSync {
			// Once synced, kv.db needs no rebuild: say so only then.
			err = s.sync(db)
			if clerr := db.Close(); err == nil {
				err = clerr
			}
			if err == nil {
				err = writeMarker(s.path, "clean")
			} else {
				err = s.markDirty(err)
			}
		} else {
			err = db.Close()
		}
	}
	s.wg.Wait()
	if err = errors.Join(cerr, err); err != nil {
		return fmt.Errorf("close %s: %w", s.path, err)
	}
	return nil
}

// discard removes kv.db, for the reason given; Open then creates an empty
// one, and raft rebuilds it from the newest snapshot and the log.
func (s *Store) discard(reason string) error {
	s.log.Warn("discarding the state file: the newest snapshot and the raft log rebuild it", "path", s.path, "reason", reason)
	if err := os.Remove(s.path); err != nil {
		return fmt.Errorf("discard %s: %w", s.path, err)
	}
	return nil
}

// markDirty records that syncing or closing kv.db failed with err, so
// the next start rebuilds it: the kernel may have dropped pages it could
// not write back, and it reports that to one fsync only, the one that just
// failed. If the marker cannot be written, kv.db is removed instead.
func (s *Store) markDirty(err error) error {
	s.log.Error("kv.db may not be on disk: the next start rebuilds it", "path", s.path, "err", err)
	if merr := writeMarker(s.path, "dirty"); merr != nil {
		err = errors.Join(err, merr)
		if rerr := os.Remove(s.path); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove %s: %w", s.path, rerr))
		}
	}
	return err
}

// sync flushes db's writes to disk (fdatasync), or runs Options.syncDB.
func (s *Store) sync(db *bbolt.DB) error {
	if s.opts.syncDB != nil {
		return s.opts.syncDB(db)
	}
	return db.Sync()
}

// view runs fn in a bbolt read transaction, holding the read lock that
// keeps Restore from swapping the database underneath.
func (s *Store) view(fn func(*bbolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return s.unavailable()
	}
	if err := s.settle(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// unavailable explains why s.db is nil; the caller holds mu.
func (s *Store) unavailable() error {
	if s.closed {
		return fmt.Errorf("store: %w", kv.ErrClosed)
	}
	return fmt.Errorf("store unavailable: %w", s.Err())
}

// Err returns the error that stopped the store from applying entries (a
// failed bbolt commit, or a failed reopen after Restore), or nil. Once set,
// every later entry fails with it until a Restore succeeds or the process
// restarts and raft replays the log; the applied index does not move past
// the failure, so no entry is silently skipped.
func (s *Store) Err() error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failed
}

func (s *Store) setErr(err error) {
	s.failMu.Lock()
	s.failed = err
	s.failMu.Unlock()
}

// Get returns the record of key. It fails with an error wrapping
// kv.ErrNotFound when the key does not exist.
func (s *Store) Get(key []byte) (kv.Record, error) {
	var rec kv.Record
	err := s.view(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketKV).Get(key)
		if v == nil {
			return fmt.Errorf("key %q: %w", key, kv.ErrNotFound)
		}
		var err error
		rec, err = decodeRecord(key, v, true)
		rec.Lease = leaseOf(tx, key)
		return err
	})
	return rec, err
}

// List returns a page of records: the keys that start with opts.Prefix,
// strictly after opts.After, in byte order, at most opts.Limit of them
// (zero means kv.DefaultListLimit; more than kv.MaxListLimit is capped).
// Index is the applied index the page reflects, read in the same
// transaction.
func (s *Store) List(opts kv.ListOptions) (kv.ListResult, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = kv.DefaultListLimit
	}
	limit = min(limit, kv.MaxListLimit)
	start := opts.Prefix
	if bytes.Compare(opts.After, start) > 0 {
		start = opts.After
	}

	var res kv.ListResult
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		if res.Index, _, err = readMeta(tx); err != nil {
			return err
		}
		c := tx.Bucket(bucketKV).Cursor()
		kl := tx.Bucket(bucketKeyLease)
		if kl != nil {
			if k, _ := kl.Cursor().First(); k == nil {
				kl = nil // no key has a lease: skip the lookups
			}
		}
		k, v := c.Seek(start)
		if k != nil && len(opts.After) > 0 && bytes.Equal(k, opts.After) {
			k, v = c.Next()
		}
		for ; k != nil && bytes.HasPrefix(k, opts.Prefix); k, v = c.Next() {
			if len(res.Items) == limit {
				res.More = true
				break
			}
			rec, err := decodeRecord(k, v, !opts.KeysOnly)
			if err != nil {
				return err
			}
			if kl != nil {
				rec.Lease = leaseOf(tx, k)
			}
			res.Items = append(res.Items, rec)
		}
		return nil
	})
	if err != nil {
		return kv.ListResult{}, err
	}
	if n := len(res.Items); n > 0 {
		res.Next = res.Items[n-1].Key
	}
	return res, nil
}

// Discarded reports whether Open discarded kv.db because it could not be
// trusted (see sync.go). The store then starts empty, or from the newest
// snapshot, below the index it had applied before: raft's replay of the
// log brings it back, and until then its state is older than what it may
// have served before the stop.
func (s *Store) Discarded() bool { return s.discarded }

// Interrupted reports whether Open found kv.db left open by a process of
// this boot that did not close it (it died). The file then holds what its
// last commit held, and the entries applied after that commit, answered
// and maybe read, were lost with the transaction they waited in
// (commit.go): its state may be older than what it served, until raft's
// replay of the log brings it back. (Discarded, too, starts older.)
func (s *Store) Interrupted() bool { return s.interrupted || s.discarded }

// AppliedIndex returns the raft index of the last entry applied.
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// WaitApplied blocks until AppliedIndex() >= index. It fails with an error
// wrapping ctx.Err() when ctx ends first, or kv.ErrClosed when the store
// closes.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	for {
		s.waitMu.Lock()
		ch := s.waitCh
		s.waitMu.Unlock()
		if s.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for applied index %d (at %d): %w", index, s.applied.Load(), ctx.Err())
		case <-s.done:
			return fmt.Errorf("wait for applied index %d: %w", index, kv.ErrClosed)
		}
	}
}

// setApplied publishes a new applied index and wakes every waiter.
func (s *Store) setApplied(index uint64) {
	s.applied.Store(index)
	s.waitMu.Lock()
	close(s.waitCh)
	s.waitCh = make(chan struct{})
	s.waitMu.Unlock()
}

// SetAppliedFloor raises the applied index to index if it is lower, and
// persists it. It is the one mutation outside Apply and Restore, meant for
// start-up: after raft restored a snapshot whose index is above what the
// file recorded (raft counts entries it does not hand to the FSM, such as
// barriers).
func (s *Store) SetAppliedFloor(index uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return s.unavailable()
	}
	// Commit what is open, and hold txMu so that no batch opens another
	// meanwhile: db.Update would wait for it with mu held, and a commit by
	// the timer would wait behind a Close or Restore queued for mu.
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if err := s.commitLocked(); err != nil {
		return fmt.Errorf("set applied floor %d: %w", index, err)
	}
	if err := s.staleErr(); err != nil {
		return err
	}
	raised := false
	err := s.db.Update(func(tx *bbolt.Tx) error {
		cur, _, err := readMeta(tx)
		if err != nil || cur >= index {
			return err
		}
		raised = true
		return tx.Bucket(bucketMeta).Put(keyAppliedIndex, u64(index))
	})
	if err != nil {
		return fmt.Errorf("set applied floor %d: %w", index, err)
	}
	if raised {
		s.setApplied(index)
	}
	return nil
}

// ClusterID returns the cluster's identity as the applied state records
// it, or "" before an OpSetCluster has been applied (a new cluster before
// its first leader, a joining node before it caught up).
func (s *Store) ClusterID() string {
	if id := s.clusterID.Load(); id != nil {
		return *id
	}
	return ""
}

// loadClusterID sets the cached identity from the state tx holds.
func (s *Store) loadClusterID(tx *bbolt.Tx) {
	id := string(tx.Bucket(bucketMeta).Get(keyClusterID))
	s.clusterID.Store(&id)
}

// loadNodes sets the cached API addresses from the state tx holds.
func (s *Store) loadNodes(tx *bbolt.Tx) {
	m := readNodes(tx)
	s.nodes.Store(&m)
}

// readNodes returns the API addresses tx holds, by raft server id.
func readNodes(tx *bbolt.Tx) map[string]string {
	m := make(map[string]string)
	_ = tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
		m[string(k)] = string(v)
		return nil
	})
	return m
}

// NodeAPIAddr returns the API address (host:port) registered for the raft
// server id in the applied state.
func (s *Store) NodeAPIAddr(id string) (string, bool) {
	addr := (*s.nodes.Load())[id]
	return addr, addr != ""
}

// NodeAPIAddrs returns every registered raft server id and its API address.
func (s *Store) NodeAPIAddrs() (map[string]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, s.unavailable()
	}
	return maps.Clone(*s.nodes.Load()), nil
}

// FileSize returns the size of kv.db in bytes, or 0 if it cannot be read.
func (s *Store) FileSize() int64 {
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readMeta returns the applied index and term recorded in tx, checking the
// file format on the way.
func readMeta(tx *bbolt.Tx) (index, term uint64, err error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil || tx.Bucket(bucketKV) == nil || tx.Bucket(bucketNodes) == nil {
		return 0, 0, errors.New("not a raftkv state file: buckets missing")
	}
	if f, ok := getU64(meta, keyFormat); !ok || f != fileFormat {
		return 0, 0, fmt.Errorf("unsupported state file format %d", f)
	}
	index, _ = getU64(meta, keyAppliedIndex)
	term, _ = getU64(meta, keyAppliedTerm)
	return index, term, nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b *bbolt.Bucket, key []byte) (uint64, bool) {
	v := b.Get(key)
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// A record in the kv bucket is uvarint create_index, uvarint mod_index,
// uvarint version, then the value.

func appendRecord(dst []byte, create, mod, version uint64, value []byte) []byte {
	dst = binary.AppendUvarint(dst, create)
	dst = binary.AppendUvarint(dst, mod)
	dst = binary.AppendUvarint(dst, version)
	return append(dst, value...)
}

// decodeRecord parses v, the stored record of key, into a Record that owns
// its memory (copies of key and, if withValue, of the value).
func decodeRecord(key, v []byte, withValue bool) (kv.Record, error) {
	d := decoder{b: v}
	rec := kv.Record{
		CreateIndex: d.uvarint("create_index"),
		ModIndex:    d.uvarint("mod_index"),
		Version:     d.uvarint("version"),
	}
	if d.err != nil {
		return kv.Record{}, fmt.Errorf("corrupt record for key %q: %w", key, d.err)
	}
	rec.Key = bytes.Clone(key)
	if withValue {
		rec.Value = append([]byte{}, d.b...)
	}
	return rec, nil
}
