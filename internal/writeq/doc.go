// Package writeq is the write queue both of raftkv's write paths use: the
// leader's group committer (raftnode), which gathers concurrent writes into
// one raft entry, and a follower's batcher (internal/forward), which gathers
// them into one request to the leader.
//
// A Queue takes writes from many callers (Apply, ApplyMany), gathers them
// in arrival order into batches, and hands each batch on with its user's
// Send; each caller gets its own command's outcome. The user supplies only
// what differs: where a batch must end (Config.Split, besides the queue's
// own count and byte bounds) and how a batch is sent (Config.Send).
//
// One gatherer goroutine owns the queue's order. It calls Send for one
// batch at a time, in the order the batches were formed, and Send returns a
// Wait, which yields the batch's outcomes: the queue runs each Wait on a
// goroutine of its own, or, with Config.InOrder, all of them one after
// another on one completer goroutine in send order. At most
// Config.MaxInflight rounds are between Send and the end of their Waits,
// where a round is one batch or, with Config.PerRound, as many batches as
// the queue held when the round was formed (up to PerRound); while they
// are, new writes queue up and form the next, larger, round.
// Batches are answered in the order their Waits return (in send order with
// InOrder).
//
// # Invariants
//
//   - A write is handed on at most once, and its caller is answered exactly
//     once.
//   - The two "not applied" answers and the "maybe applied" one never blur
//     (State): a write whose caller gives up (its context ends) while it is
//     still queued is dropped and its caller gets kv.ErrTimeout; once it is
//     handed to Send, a caller who gives up gets kv.ErrOutcomeUnknown. The
//     decision is one compare-and-swap, so a write is never both.
//   - A batch is a prefix of the queue (after dropping abandoned writes):
//     at most MaxBatch commands, at most MaxBytes of Config.Size (a larger
//     command travels alone), and cut wherever Split says.
//   - Close fails every write still queued with kv.ErrClosed (never handed
//     on), cancels the context given to Send, and returns once every Wait
//     has returned; Apply after Close (or racing it) fails with
//     kv.ErrClosed or is answered, never left waiting: the check for closed
//     and the append happen under the queue's lock.
//   - Nothing is retried: a batch's outcome is what its Wait says.
package writeq
