package raftkv

import (
	"context"
	"fmt"
	"io"

	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/kv"
)

// WriteSnapshot writes a consistent copy of this node's state machine to w,
// as the snapshot stream GET /v1/snapshot sends (a header, the state file,
// a checksum; `raftkv snapshot inspect` and store.Restore read it), and
// returns its index, term and size. With opts.Consistency linearizable (the
// default) the copy follows a read barrier, as a linearizable read does:
// it holds every write acknowledged before the call. Stale skips the
// barrier. ctx bounds the barrier and the copy.
//
// Writes go on during the copy (it pins a bbolt read transaction, as a raft
// snapshot does, and takes no raft lock).
func (n *Node) WriteSnapshot(ctx context.Context, w io.Writer, opts kv.ReadOptions) (kv.SnapshotInfo, error) {
	ex, err := n.openSnapshot(ctx, opts)
	if err != nil {
		return kv.SnapshotInfo{}, err
	}
	defer func() { _ = ex.Close() }()
	info := ex.Info()
	if err := ctx.Err(); err != nil {
		return info, err
	}
	written, err := ex.WriteTo(&ctxWriter{ctx: ctx, w: w})
	if err != nil {
		return info, fmt.Errorf("raftkv: snapshot at index %d: %w", info.Index, err)
	}
	if written != info.Size {
		return info, fmt.Errorf("raftkv: snapshot at index %d: wrote %d of %d bytes", info.Index, written, info.Size)
	}
	return info, nil
}

// openSnapshot passes the read barrier of opts and pins the state.
func (n *Node) openSnapshot(ctx context.Context, opts kv.ReadOptions) (httpapi.Snapshot, error) {
	if err := n.readBarrier(ctx, opts); err != nil {
		return nil, err
	}
	ex, err := n.store.Export()
	if err != nil {
		return nil, fmt.Errorf("raftkv: %w", err)
	}
	return ex, nil
}

// ctxWriter fails writes once ctx has ended, so a cancelled copy stops.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
