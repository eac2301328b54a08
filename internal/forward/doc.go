// Package forward carries a follower's writes to the leader in batches.
//
// Two thirds of the writes a three-node cluster receives land on a
// follower. Relaying each as its own HTTP request costs the leader one
// request to parse, route and answer per write; the Batcher instead gathers
// the writes that arrive while earlier batches are on their way and sends
// them as one POST of Path, in the state machine's own command encoding
// (no JSON inside the cluster). The leader hands the batch's commands to
// raft together (group commit may put them in one log entry) and answers
// with one outcome per command, in order; the follower answers each of its
// clients from its own outcome, exactly as the leader would have.
//
// The queue is an internal/writeq Queue, the same one the leader's group
// commit uses: it gathers the writes in arrival order, bounds a batch by
// MaxBatch commands and MaxBytes, keeps at most MaxInflight batches on
// their way, drops writes whose callers gave up, and closes. The Batcher
// supplies only its send: the round trip of one batch, which the queue
// runs on a goroutine of its own.
//
// The outcome of a write is never guessed: a batch that never reached the
// leader fails with kv.ErrNoLeader (nothing applied), one lost after it was
// sent fails with kv.ErrOutcomeUnknown, and a write whose caller gives up
// fails with kv.ErrTimeout if it had not been sent yet and
// kv.ErrOutcomeUnknown if it had. Close cancels the batches on their way
// (kv.ErrOutcomeUnknown) and fails the queued writes with kv.ErrClosed
// (never sent). Nothing is retried here; the node, which knows whether a
// leader exists, sends a kv.ErrNoLeader write again once one does.
//
// A batch on its way is bounded: its request ends at the latest deadline
// of its writes and at most Config.MaxWait after it left, and
// LeaderChanged, which the node calls on every change of leader it sees,
// abandons the batches sent to any other leader at once (their writes'
// outcome is unknown), so a leader cut off by a partition that drops
// packets holds no slot for long.
//
// The wire format (version 1, all integers unsigned varints, "bytes" a
// length and that many bytes):
//
//	request:  version byte | n | n timeouts in milliseconds (0: none) |
//	          store entry of the n commands (store.EncodeEntry)
//	response: version byte | n | n outcomes
//	outcome:  byte 0 | store result (store.AppendResult) | bytes error code
//	          of the result's own error ("" for none) | bytes its message
//	        | byte 1 | bytes error code | bytes message
//
// The error codes are kv's wire codes (kv.Code); a result's own error is a
// failed condition or a reused idempotency key, the outcome of the command
// itself, while an outcome of kind 1 is the error applying it returned.
package forward
