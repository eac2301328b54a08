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
	s.mu.RLock()
	if s.db == nil {
		err := s.unavailable()
		s.mu.RUnlock()
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := s.Err(); err != nil {
		// The file is behind the entries raft handed us: a snapshot of it
		// labelled with raft's index would lose them when the log is
		// compacted behind it.
		s.mu.RUnlock()
		return nil, fmt.Errorf("snapshot: state machine stopped applying: %w", err)
	}
	tx, err := s.db.Begin(false)
	s.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	index, _, err := readMeta(tx)
	if err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &snapshot{tx: tx, index: index}, nil
}

// snapshot is a pinned read transaction: bbolt keeps its pages intact
// until Release.
type snapshot struct {
	tx    *bbolt.Tx
	index uint64
}

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
		var leases []LeaseChange
		_ = db.View(func(tx *bbolt.Tx) error {
			s.loadHistoryStats(tx)
			leases = leaseChanges(tx, index)
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
