package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/kv"
)

// Snapshot writes a consistent copy of one node's state machine to w (GET
// /v1/snapshot, from whichever endpoint the client picks: any node serves
// it) and returns its index, term and size. The copy follows a read
// barrier, like a linearizable read: it holds every write acknowledged
// before the call. The bytes are the snapshot stream of package store
// (header, state file, checksum), which `raftkv snapshot inspect` and
// store.InspectSnapshot verify.
//
// The call is retried, as a read is, until the answer's header arrives;
// once bytes have gone to w it is not. A stream that ends short of its
// announced size is an error; ctx bounds the whole copy.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) (kv.SnapshotInfo, error) {
	return c.SnapshotWith(ctx, w, kv.ReadOptions{})
}

// SnapshotWith is Snapshot with read options: only Consistency applies
// (kv.Stale skips the read barrier).
func (c *Client) SnapshotWith(ctx context.Context, w io.Writer, opts kv.ReadOptions) (kv.SnapshotInfo, error) {
	var q query
	if opts.Consistency != "" {
		q.set("consistency", string(opts.Consistency))
	}
	req := request{
		method: http.MethodGet,
		path:   "/v1/snapshot",
		query:  q,
		header: http.Header{"Accept": {"application/octet-stream"}},
	}
	var st stream
	if err := c.call(ctx, req, &st); err != nil {
		return kv.SnapshotInfo{}, err
	}
	defer st.close()
	info, err := snapshotInfo(st.resp.Header)
	if err != nil {
		return info, fmt.Errorf("snapshot from %s: %w", st.base, err)
	}
	n, err := io.Copy(w, st.resp.Body)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return info, fmt.Errorf("snapshot from %s: cut off after %d of %d bytes: %w", st.base, n, info.Size, err)
	}
	if n != info.Size {
		return info, fmt.Errorf("snapshot from %s: cut off after %d of %d bytes", st.base, n, info.Size)
	}
	return info, nil
}

// snapshotInfo reads the headers of GET /v1/snapshot.
func snapshotInfo(h http.Header) (kv.SnapshotInfo, error) {
	var info kv.SnapshotInfo
	var err error
	if info.Index, err = strconv.ParseUint(h.Get("X-Raft-Index"), 10, 64); err != nil {
		return info, fmt.Errorf("no valid X-Raft-Index (%q)", h.Get("X-Raft-Index"))
	}
	if info.Term, err = strconv.ParseUint(h.Get("X-Raft-Term"), 10, 64); err != nil {
		return info, fmt.Errorf("no valid X-Raft-Term (%q)", h.Get("X-Raft-Term"))
	}
	if info.Size, err = strconv.ParseInt(h.Get("X-Snapshot-Size"), 10, 64); err != nil || info.Size < 0 {
		return info, fmt.Errorf("no valid X-Snapshot-Size (%q)", h.Get("X-Snapshot-Size"))
	}
	return info, nil
}
