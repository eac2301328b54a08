package store

import (
	"fmt"
	"time"
)

// Deferred commits. A bbolt commit costs about the same whether it holds
// one entry or many: it writes every page the transaction dirtied, and a
// put dirties its whole leaf page. Under load a node applies an entry every
// few milliseconds, each touching pages the next ones touch again, so
// ApplyBatch leaves its transaction open for the next batches to join,
// and commits it once it is CommitInterval old, holds maxTxEntries
// entries or maxTxBytes of them, or something needs the file to hold what
// was applied:
//
//   - every read (view, snapshot, SetAppliedFloor) commits the open
//     transaction first, under the same lock ApplyBatch holds: a read sees
//     everything applied before it began, as when each batch committed;
//   - a timer commits a transaction that no later batch or read came for;
//   - Close commits it, and so does Restore before it swaps the file (the
//     old file's Close would wait for an open transaction forever).
//
// Writes are answered once applied, before their commit: durability is
// the raft log's (the entry is on a quorum's disks before it is applied),
// and kv.db runs without fsync anyway (deferral is only for Options.NoSync:
// a store that syncs commits every batch). A process that dies with a
// transaction open loses only what raft replays at start, but its state
// then starts older than what it served: Open tells from the marker
// (sync.go) that the process before died, and Interrupted says so, for the
// node to hold reads until the replay is done. A commit that fails stops
// the store (Err), as before, and since the entries it held were already
// answered and their index published, the file is now behind what readers
// were told: reads fail too until a Restore or a restart replays them.
//
// A bbolt transaction may be used by one goroutine at a time: txMu guards
// it, and is taken under mu's read side (mu, then txMu), so Close and
// Restore, which take mu's write side, find no one using it.

// DefaultCommitInterval is Options.CommitInterval's default.
const DefaultCommitInterval = 100 * time.Millisecond

// Bounds of an open transaction besides its age: entries, and the bytes of
// their log data (what the transaction's dirty pages and the log entries
// they point into keep in memory).
const (
	maxTxEntries = 1024
	maxTxBytes   = 16 << 20
)

// commitInterval is how long applied entries may wait in an open
// transaction; zero commits every batch.
func (s *Store) commitInterval() time.Duration {
	switch {
	case !s.opts.NoSync, s.opts.CommitInterval < 0:
		return 0
	case s.opts.CommitInterval == 0:
		return DefaultCommitInterval
	}
	return s.opts.CommitInterval
}

// commitDue reports whether the open transaction must commit now, at the
// end of a batch applied at now. The caller holds txMu.
func (s *Store) commitDue(now time.Time) bool {
	return now.Sub(s.txBegan) >= s.commitInterval() || s.txEntries >= maxTxEntries || s.txBytes >= maxTxBytes
}

// holdLocked leaves the transaction open, and makes sure the timer will
// commit it if no batch or read does first. The caller holds txMu.
func (s *Store) holdLocked() {
	if !s.pending.Swap(true) {
		wait := s.commitInterval() - time.Since(s.txBegan)
		if s.timer == nil {
			s.timer = time.AfterFunc(wait, s.commitLate)
		} else {
			s.timer.Reset(wait)
		}
	}
}

// commitLocked commits the open transaction, if any. Whether or not the
// commit succeeds, no transaction is open afterwards (bbolt rolls back a
// failed commit); a failed commit stops the store (Err) and makes reads
// fail (the file is behind what was applied). The caller holds mu (either
// side) and txMu.
func (s *Store) commitLocked() error {
	tx := s.tx
	if tx == nil {
		return nil
	}
	entries := s.txEntries
	var err error
	if s.opts.commitTx != nil {
		err = s.opts.commitTx(tx)
	} else {
		err = tx.Commit()
	}
	if err != nil {
		err = fmt.Errorf("commit of %d applied entries: %w", entries, err)
		s.setErr(err)
		s.stale.Store(true)
	}
	// Only now: a read that finds pending unset reads the file without
	// waiting for txMu, so it must not be unset while the commit runs, nor
	// before stale is set when it failed.
	s.resetTx()
	return err
}

// dropLocked rolls the open transaction back. The caller holds mu (either
// side) and txMu, and has set stale if the entries it held were published.
func (s *Store) dropLocked() {
	if s.tx != nil {
		_ = s.tx.Rollback()
		s.resetTx()
	}
}

func (s *Store) resetTx() {
	s.tx, s.txEntries, s.txBytes = nil, 0, 0
	s.pending.Store(false)
	if s.timer != nil {
		s.timer.Stop()
	}
}

// settle commits the transaction ApplyBatch left open, so that a read
// that follows sees all that was applied; it fails when the file is behind
// what was applied (a failed commit). The caller holds mu's read side and
// has checked s.db.
func (s *Store) settle() error {
	if s.pending.Load() {
		s.txMu.Lock()
		if err := s.commitLocked(); err != nil {
			s.log.Error("state machine stopped applying", "err", err)
		}
		s.txMu.Unlock()
	}
	return s.staleErr()
}

// staleErr is the error of a read after a failed commit lost applied
// entries, or nil.
func (s *Store) staleErr() error {
	if s.stale.Load() {
		return fmt.Errorf("store unavailable: applied entries were lost with a failed commit: %w", s.Err())
	}
	return nil
}

// commitLate is the timer's: it commits a transaction that waited its
// interval without a batch or a read coming to commit it.
func (s *Store) commitLate() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return
	}
	s.txMu.Lock()
	if err := s.commitLocked(); err != nil {
		s.log.Error("state machine stopped applying", "err", err)
	}
	s.txMu.Unlock()
}
