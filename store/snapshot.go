package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/kv"
)

// A snapshot stream is a header, a consistent copy of kv.db, and a trailer:
//
//	magic "RAFTKVSN" | format uint32 | applied index uint64 | file length uint64
//	file bytes (length of them)
//	CRC-32C (Castagnoli) of the file bytes, uint32
//
// All integers are big-endian.
const (
	snapshotMagic   = "RAFTKVSN"
	snapshotFormat  = 1
	snapshotHdrSize = len(snapshotMagic) + 4 + 8 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot begins a bbolt read transaction and returns at once; the copy
// is made by Persist, off raft's apply path, while Apply goes on.
func (s *Store) Snapshot() (raft.FSMSnapshot, error) {
	sn, err := s.snapshot()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return sn, nil
}

// snapshot pins a read transaction over the state and reads its applied
// index and term from it (the meta bucket is written in the same
// transaction as the entries, so they describe exactly what tx holds).
// Any goroutine may call it: it takes only the read side of mu.
func (s *Store) snapshot() (*snapshot, error) {
	s.mu.RLock()
	if s.db == nil {
		err := s.unavailable()
		s.mu.RUnlock()
		return nil, err
	}
	if err := s.Err(); err != nil {
		// The file is behind the entries raft handed us: a snapshot of it
		// labelled with raft's index would lose them when the log is
		// compacted behind it.
		s.mu.RUnlock()
		return nil, fmt.Errorf("state machine stopped applying: %w", err)
	}
	if err := s.settle(); err != nil {
		s.mu.RUnlock()
		return nil, err
	}
	tx, err := s.db.Begin(false)
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	index, term, err := readMeta(tx)
	if err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	return &snapshot{tx: tx, index: index, term: term}, nil
}

// snapshot is a pinned read transaction: bbolt keeps its pages intact
// until Release.
type snapshot struct {
	tx    *bbolt.Tx
	index uint64
	term  uint64
}

// streamSize is the length of the stream writeTo writes.
func (sn *snapshot) streamSize() int64 { return int64(snapshotHdrSize) + sn.tx.Size() + 4 }

// Persist streams the snapshot into sink and closes it, or cancels it on
// error.
func (sn *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := sn.writeTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot at index %d: %w", sn.index, err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("persist snapshot at index %d: %w", sn.index, err)
	}
	return nil
}

func (sn *snapshot) writeTo(w io.Writer) error {
	size := sn.tx.Size()
	hdr := make([]byte, 0, snapshotHdrSize)
	hdr = append(hdr, snapshotMagic...)
	hdr = binary.BigEndian.AppendUint32(hdr, snapshotFormat)
	hdr = binary.BigEndian.AppendUint64(hdr, sn.index)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(size))
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	crc := crc32.New(castagnoli)
	n, err := sn.tx.WriteTo(io.MultiWriter(w, crc))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("wrote %d bytes of a %d-byte file", n, size)
	}
	_, err = w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	return err
}

// Release ends the read transaction.
func (sn *snapshot) Release() { _ = sn.tx.Rollback() }

// Export is a consistent copy of the state at one applied index, read out
// as the snapshot stream raft's snapshots carry (the format above): what
// GET /v1/snapshot sends and Restore and InspectSnapshot read. It pins a
// bbolt read transaction, like a raft snapshot being persisted: writes go
// on meanwhile, but the pages it holds are not reused until Close, so a
// long export lets the file grow. It takes no raft lock.
type Export struct{ sn *snapshot }

// Export pins the current state for WriteTo. The caller must Close it.
func (s *Store) Export() (*Export, error) {
	sn, err := s.snapshot()
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return &Export{sn: sn}, nil
}

// Info is the exported state's applied index and term, and the length of
// the stream WriteTo writes.
func (e *Export) Info() kv.SnapshotInfo {
	return kv.SnapshotInfo{Index: e.sn.index, Term: e.sn.term, Size: e.sn.streamSize()}
}

// WriteTo writes the snapshot stream to w: Info().Size bytes, ending with
// the checksum that Restore and InspectSnapshot verify.
func (e *Export) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	err := e.sn.writeTo(cw)
	return cw.n, err
}

// Close releases the read transaction; it is idempotent.
func (e *Export) Close() error {
	e.sn.Release()
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// SnapshotSummary describes a verified snapshot stream (InspectSnapshot).
type SnapshotSummary struct {
	// Index and Term are the applied index and term of the state.
	Index, Term uint64
	// Keys is the number of keys; SHA256 the digest of the key space,
	// the one Digest (GET /v1/debug/hash) gives for this state.
	Keys   int64
	SHA256 string
	// Bytes is the length of the stream.
	Bytes int64
	// ClusterID is the identity of the cluster the state belongs to
	// ("" if it had none yet).
	ClusterID string
}

// InspectSnapshot reads a snapshot stream from r and verifies it as
// Restore does (header, length, checksum, a raftkv state file at the
// header's index), refusing trailing data too, then summarises the state
// it carries. The state file is unpacked at scratch, a path that must not
// exist, and removed before it returns. Errors for a bad stream wrap
// ErrBadSnapshot.
func InspectSnapshot(r io.Reader, scratch string) (SnapshotSummary, error) {
	b, err := OpenBackup(r, scratch)
	if err != nil {
		return SnapshotSummary{}, err
	}
	sum := b.Summary()
	return sum, b.Close()
}

// Backup is a snapshot stream (a backup file) received and verified, with
// its state file unpacked at a scratch path. InspectSnapshot summarises
// one; a restore into a new cluster gives it the new cluster's identity
// (Reseed) and writes it out again as a stream (WriteTo).
type Backup struct {
	path string
	db   *bbolt.DB
	sum  SnapshotSummary
}

// OpenBackup reads a snapshot stream from r and verifies it as
// InspectSnapshot does, unpacking its state file at scratch (a path that
// must not exist; Close removes it). Errors for a bad stream wrap
// ErrBadSnapshot.
func OpenBackup(r io.Reader, scratch string) (_ *Backup, err error) {
	defer func() {
		if err != nil {
			_ = os.Remove(scratch)
		}
	}()
	cr := &countReader{r: r}
	index, err := receive(cr, scratch)
	if err != nil {
		return nil, err
	}
	var one [1]byte
	if n, _ := io.ReadFull(cr, one[:]); n > 0 {
		return nil, fmt.Errorf("%w: trailing data after the checksum", ErrBadSnapshot)
	}
	db, err := bbolt.Open(scratch, 0o600, &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	b := &Backup{path: scratch, db: db, sum: SnapshotSummary{Index: index, Bytes: cr.n}}
	err = db.View(func(tx *bbolt.Tx) error {
		d, term, err := digestTx(tx)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
		}
		b.sum.Term, b.sum.Keys, b.sum.SHA256 = term, d.Keys, d.SHA256
		b.sum.ClusterID = string(tx.Bucket(bucketMeta).Get(keyClusterID))
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return b, nil
}

// Summary describes the backup's state (after Reseed, with the new
// identity and term; Bytes stays the length of the stream read).
func (b *Backup) Summary() SnapshotSummary { return b.sum }

// Reseed prepares the state for a new cluster: clusterID becomes its
// identity, term its applied term (the term its raft snapshot is labelled
// with), and it forgets the old members' API addresses (the nodes bucket;
// the new members register theirs). The key space, its indexes, leases,
// idempotency records and change history stay as they are, and so does
// the applied index: the digest is the backup's.
func (b *Backup) Reseed(clusterID string, term uint64) error {
	if err := kv.ValidateClusterID(clusterID); err != nil {
		return err
	}
	err := b.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyClusterID, []byte(clusterID)); err != nil {
			return err
		}
		if err := meta.Put(keyAppliedTerm, u64(term)); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketNodes); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bucketNodes)
		return err
	})
	if err != nil {
		return fmt.Errorf("reseed backup: %w", err)
	}
	b.sum.ClusterID, b.sum.Term = clusterID, term
	return nil
}

// WriteTo writes the backup's state as a snapshot stream (the format
// Restore reads) to w.
func (b *Backup) WriteTo(w io.Writer) (int64, error) {
	tx, err := b.db.Begin(false)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	index, term, err := readMeta(tx)
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: w}
	err = (&snapshot{tx: tx, index: index, term: term}).writeTo(cw)
	return cw.n, err
}

// Close closes and removes the unpacked state file.
func (b *Backup) Close() error {
	err := b.db.Close()
	if rerr := os.Remove(b.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

func restorePath(path string) string { return path + ".restore" }

// Restore replaces the state with the snapshot read from rc, and closes rc.
// The stream is checked (header, length, checksum, and that the file opens
// as a raftkv state file) before anything is replaced; on any error the
// old state stays in place and the error wraps ErrBadSnapshot when the
// stream is at fault. Readers block only while the files are swapped, and
// never see a half-restored file.
func (s *Store) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := restorePath(s.path)
	index, err := receive(rc, tmp)
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	if err := s.swap(tmp, index); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	s.log.Info("restored snapshot", "index", index, "bytes", s.FileSize())
	return nil
}

// receive writes the file carried by the stream r to tmp, fsyncs it, checks
// it, and returns its applied index.
func receive(r io.Reader, tmp string) (uint64, error) {
	hdr := make([]byte, snapshotHdrSize)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, fmt.Errorf("%w: header: %w", ErrBadSnapshot, err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return 0, fmt.Errorf("%w: not a raftkv snapshot", ErrBadSnapshot)
	}
	rest := hdr[len(snapshotMagic):]
	if v := binary.BigEndian.Uint32(rest); v != snapshotFormat {
		return 0, fmt.Errorf("%w: unknown format %d", ErrBadSnapshot, v)
	}
	index := binary.BigEndian.Uint64(rest[4:])
	size := binary.BigEndian.Uint64(rest[12:])
	if size > 1<<62 {
		return 0, fmt.Errorf("%w: absurd length %d", ErrBadSnapshot, size)
	}

	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	crc := crc32.New(castagnoli)
	n, err := io.CopyN(io.MultiWriter(f, crc), r, int64(size))
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: truncated after %d of %d bytes", ErrBadSnapshot, n, size)
	}
	var sum [4]byte
	if err == nil {
		if _, err = io.ReadFull(r, sum[:]); err != nil {
			err = fmt.Errorf("%w: checksum: %w", ErrBadSnapshot, err)
		} else if binary.BigEndian.Uint32(sum[:]) != crc.Sum32() {
			err = fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return index, verify(tmp, index)
}

// verify opens the file at path as bbolt and checks that it is a raftkv
// state file at the given applied index.
func verify(path string, index uint64) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		got, _, err := readMeta(tx)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
		}
		if got != index {
			return fmt.Errorf("%w: header says index %d, file says %d", ErrBadSnapshot, index, got)
		}
		return nil
	})
	return errors.Join(err, db.Close())
}

// swap renames tmp over kv.db and reopens it, under the write lock that
// readers hold. The old database is closed in the background: bbolt's
// Close waits for snapshots of it still being persisted, and they keep
// reading the old (now unlinked) file through its open handle.
func (s *Store) swap(tmp string, index uint64) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("store: %w", kv.ErrClosed)
	}
	// The old file's Close below would wait for an open transaction
	// forever; committing it (rather than dropping what the restored
	// state replaces anyway) keeps the old file true to the applied index
	// should the swap fail. No one else holds txMu under the write lock.
	if err := s.commitLocked(); err != nil {
		s.log.Error("state machine stopped applying", "err", err)
	}
	old := s.db
	if err := os.Rename(tmp, s.path); err != nil {
		s.mu.Unlock()
		return err
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		s.log.Error("fsync of the data directory failed after restore", "err", err)
	}
	db, err := openDB(s.path, s.opts)
	if err != nil {
		err = fmt.Errorf("reopen after restore: %w", err)
		s.log.Error("state machine unavailable", "err", err)
		s.setErr(err)
	} else {
		s.setErr(nil)
		s.stale.Store(false)
		var leases []LeaseChange
		_ = db.View(func(tx *bbolt.Tx) error {
			s.loadHistoryStats(tx)
			s.loadClusterID(tx)
			s.loadNodes(tx)
			leases = leaseChanges(tx, index)
			acl, err := loadACL(tx)
			if err != nil {
				// The restored file was verified: only a bug gets here.
				s.log.Error("reading the restored ACL state", "err", err)
				acl = &ACLState{}
			}
			s.acl.Store(acl)
			return nil
		})
		if s.opts.OnLeases != nil {
			s.opts.OnLeases(leases, true)
		}
		// Watchers behind the restored index read its history.
		s.hub.reset(index)
		// Under the lock: ApplyBatch's replay check must never pair the
		// new file with the old index.
		s.setApplied(index)
	}
	s.db = db
	s.mu.Unlock()

	if old != nil {
		s.wg.Go(func() {
			if err := old.Close(); err != nil {
				s.log.Warn("closing the replaced database", "err", err)
			}
		})
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
