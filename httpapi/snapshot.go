package httpapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/kv"
)

// Headers of GET /v1/snapshot.
const (
	// HeaderTerm is the raft term of the snapshot's applied index.
	HeaderTerm = "X-Raft-Term"
	// HeaderSnapshotSize is the length of the snapshot stream in bytes.
	HeaderSnapshotSize = "X-Snapshot-Size"
)

// getSnapshot streams a consistent copy of this node's state machine: the
// snapshot stream of store (header, state file, CRC-32C trailer), after a
// read barrier unless ?consistency=stale. The barrier is bounded like a
// read (DefaultReadWait); the copy only by the client. The length is known
// before the first byte (Content-Length, X-Snapshot-Size), so a cut-off
// download is seen by HTTP as well as by the stream's own checksum.
func (h *Handler) getSnapshot(w http.ResponseWriter, r *http.Request) {
	p, err := queryOf(r, "consistency")
	if err != nil {
		writeError(w, err)
		return
	}
	c, err := kv.ParseConsistency(p.Get("consistency"))
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), DefaultReadWait)
	snap, err := h.b.Snapshot(ctx, kv.ReadOptions{Consistency: c})
	cancel()
	if err != nil {
		writeError(w, err)
		return
	}
	defer func() { _ = snap.Close() }()
	info := snap.Info()
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Length", strconv.FormatInt(info.Size, 10))
	hd.Set("Content-Disposition", `attachment; filename="raftkv-`+strconv.FormatUint(info.Index, 10)+`.snap"`)
	hd.Set("Cache-Control", "no-store")
	hd.Set(HeaderIndex, strconv.FormatUint(info.Index, 10))
	hd.Set(HeaderTerm, strconv.FormatUint(info.Term, 10))
	hd.Set(HeaderSnapshotSize, strconv.FormatInt(info.Size, 10))
	w.WriteHeader(http.StatusOK)
	if n, err := snap.WriteTo(w); err != nil {
		// The status is sent: the client sees a body shorter than
		// Content-Length, and the stream's checksum missing.
		h.log.Warn("snapshot stream cut off", "index", info.Index, "sent", n, "size", info.Size, "err", err)
	}
}
