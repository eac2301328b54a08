// Package store is the state machine of raftkv: a raft.BatchingFSM that
// keeps the keys in a bbolt file, <data-dir>/kv.db, and serves reads
// straight from bbolt read transactions. It knows nothing of raft's
// wiring or of HTTP.
//
// # Basics
//
// The file has five buckets:
//
//   - kv: key → record, encoded as uvarint create_index, uvarint
//     mod_index, uvarint version, then the value.
//   - meta: format, applied_index and applied_term, each 8 bytes big-endian.
//   - nodes: raft server id → HTTP API address (host:port).
//   - idem: idempotency key → fingerprint of the command that used it and
//     its encoded Result; idem_exp: 8-byte index + key, for expiry after
//     IdempotencyWindow entries.
//
// Writes arrive as raft log entries whose data is a Command (see
// Command.Encode for the versioned binary encoding). Each Op has one row
// in a table (command.go) that gives its name and what the layers above
// branch on: Op.TouchesMany (the command may change keys other than its
// Key, so it must travel alone in its entry) and Op.Forwardable (a write of
// the public API, which a follower may forward to the leader). ApplyBatch applies a
// whole batch in a bbolt read-write transaction, which also records the
// applied index and term: the data and the index it reflects are always
// committed (and, fsync on, durable) together, and entries at or below the
// recorded applied index are skipped, because raft re-delivers committed
// entries after a restart. Apply is ApplyBatch of one entry. The
// transaction stays open for later batches to share its commit, up to
// Options.CommitInterval; every read commits it first (commit.go).
//
// The semantics of a command:
//
//   - ModIndex and CreateIndex are the raft log index of the entry that
//     made the change, so they are the same on every node. Version counts
//     the writes since the key was created: 1 on create; a put after a
//     delete starts again at 1 with a new CreateIndex.
//   - Cond.IfModIndex != 0 requires the key to exist with that ModIndex;
//     Cond.IfAbsent requires the key to be absent. Put and Delete honour
//     both. A failed condition writes nothing and returns Result.Err
//     wrapping kv.ErrPreconditionFailed, with Result.CurrentModIndex (0 when
//     the key is absent).
//   - Deleting an absent key without a condition succeeds with Deleted 0.
//     OpDeletePrefix removes every key with the prefix and reports the count.
//   - OpNoop and LogConfiguration entries only advance the applied index.
//
// Reads (Get, List, NodeAPIAddr, NodeAPIAddrs) may run on any goroutine,
// concurrently with Apply, Snapshot and Restore. Every byte slice they
// return is a copy: bbolt memory is only valid inside its transaction.
// WaitApplied blocks until an index is applied, woken by each advance
// (no polling).
//
// Snapshot only begins a read transaction; Persist streams a header
// (magic, format, applied index, length), the consistent file copy made by
// bbolt's Tx.WriteTo, and a CRC-32C trailer. Restore receives such a stream
// into a temp file next to kv.db, fsyncs and verifies it, then, under the
// write lock that readers hold, renames it over kv.db, fsyncs the directory
// and reopens: readers see the old state or the new one, never a mix.
//
// # Caveats
//
// Only ApplyBatch (and Apply) mutate the file, plus Restore, and
// SetAppliedFloor at start-up. Nothing else may write to kv.db.
//
// Apply is deterministic: it reads no clock, no randomness and depends on
// no map iteration order, so every node that applies the same entries holds the
// same bytes. A command that fails (bad encoding, failed condition) fails
// the same way everywhere and still advances the applied index. Nor does
// anything depend on where a batch ends: raft cuts the same log into
// different batches on the leader, on a follower catching up and on a node
// replaying its log. The state and results after entry i depend only on
// entries up to i. In particular an idempotency record answers a command
// at index r only if it was used at u with r-u <= IdempotencyWindow,
// whether or not the end-of-batch expiry has deleted it yet.
//
// Apply never panics on a bad command: an entry that does not decode (an
// unknown op from a newer version, corruption) gets a Result whose Err
// wraps ErrBadCommand. The leader validates writes (key size, value size)
// before raft.Apply; Apply re-checks what memory safety depends on.
//
// A failed bbolt commit (disk full, I/O error) is not deterministic: the
// store then stops applying (Err reports why, every later entry gets that
// error) rather than skip entries, and reads fail too, since the entries
// that commit held were applied and answered already. Restarting the
// process replays them; a Restore replaces the state.
//
// The applied index counts only the entries raft hands to the FSM
// (LogCommand and LogConfiguration), not raft's internal no-op and barrier
// entries; a caller waiting for a commit index must make sure an FSM entry
// is at or above it (the leader applies OpNoop after each election).
//
// Without fsync (Options.NoSync), kv.db's commits reach the disk when the
// kernel writes them back; a marker file beside it, kv.db.sync, lets Open
// tell whether they did (see sync.go). Open trusts kv.db when the marker
// says clean, or open in the current boot and an fsync of kv.db at Open
// succeeds (a failed writeback no one saw yet fails that fsync). It
// discards kv.db, for raft to rebuild from the newest snapshot and the
// log, when it was open in another boot, when the marker says dirty (an
// fsync failed in Close) or is unreadable, and when that fsync at Open
// fails. Close writes clean only after a successful fsync, dirty after a
// failed one (and removes kv.db if it cannot write dirty). Interrupted
// reports a kv.db that was open in this boot when its process died: it is
// trusted, but holds only its last commit, maybe less than was applied and
// served (commit.go).
//
// A snapshot pins a read transaction until Release. While it is open bbolt
// cannot grow its memory map, so writes that need a larger map would wait:
// Options.InitialMmapSize (default 1 GiB) should exceed the file's growth.
// A database replaced by Restore is closed in the background once its
// snapshots are released; Close waits for that.
package store
