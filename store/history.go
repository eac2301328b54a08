package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/kv"
)

// The change history (bucket history): one record per raft index that
// changed keys, keyed by the 8-byte big-endian index, holding every event
// of that entry in the order applied (uvarint count, then each event as
// uvarint length and its encoding), so a cursor walks the events in the
// order they were applied. Applying an entry writes its record in the same
// transaction as the change; compaction, at the end of each batch,
// deletes the records of indexes below the history floor. (One record
// per index, not per event: an entry of group commit holds many writes,
// and one B-tree insert and one delete for all of them cost less.)
//
// The floor (meta history_floor) is the oldest index whose events are all
// kept: after applying index A with retention H it is at least A+1-H, and
// never below the first index applied after history began (a file from a
// version without history, or one restored from such a snapshot, begins
// at its applied index + 1). Retention 0 keeps no events: the floor is
// then always applied+1. Both depend only on the log and the retention,
// never on a clock or on where batches end.
//
// An event is: a type byte (1 put, 2 delete), uvarint key length and the
// key, uvarint create_index, mod_index and version, a byte that is 1 when
// the previous record's indexes follow (uvarint create_index, mod_index,
// version), then, for a put, the value. The previous value is not stored
// again: it is the value of the key's put at the previous mod_index, which
// a reader looks up (lookupPrev) while the history still holds it. Storing
// it doubled the history's bytes, and cost a put with history on a fifth
// of its throughput at 256 connections.

var (
	bucketHistory   = []byte("history")
	keyHistoryFloor = []byte("history_floor")
)

const (
	eventPut    = 1
	eventDelete = 2
)

// recorder collects the events of the entries a batch applies, and writes
// each entry's to the history bucket (nil when retention is 0).
type recorder struct {
	hist  *bbolt.Bucket
	index uint64
	// events of the current entry; out, every entry's with events.
	events []kv.Event
	out    []kv.WatchResponse
	// leases: what the batch's entries recorded of leases (Options.OnLeases).
	leases []LeaseChange
	// acl: an entry of the batch applied an ACL op (Store.ACL reloads).
	acl bool
	// nodes: an entry of the batch applied an OpSetNode (the cached API
	// addresses reload).
	nodes bool
}

// begin starts the entry at index.
func (r *recorder) begin(index uint64) {
	r.index, r.events = index, nil
}

// end closes the current entry and writes its history record.
func (r *recorder) end() error {
	if len(r.events) == 0 {
		return nil
	}
	r.out = append(r.out, kv.WatchResponse{Index: r.index, Events: r.events})
	events := r.events
	r.events = nil
	if r.hist == nil {
		return nil
	}
	size := binary.MaxVarintLen64
	for _, e := range events {
		size += 2*binary.MaxVarintLen64 + 64 + len(e.Key) + len(e.Value)
	}
	// A new buffer each time: bbolt keeps the slices it is given until the
	// transaction commits.
	buf := make([]byte, 0, size)
	buf = binary.AppendUvarint(buf, uint64(len(events)))
	var ev []byte
	for _, e := range events {
		ev = appendEvent(ev[:0], e)
		buf = binary.AppendUvarint(buf, uint64(len(ev)))
		buf = append(buf, ev...)
	}
	return r.hist.Put(u64(r.index), buf)
}

// historyEvents calls fn with each encoded event of a history record, in
// order; it stops at fn's first error.
func historyEvents(v []byte, fn func(ev []byte) error) error {
	d := decoder{b: v}
	n := d.count("events", len(v))
	for range n {
		ev := d.bytes("event")
		if d.err != nil {
			break
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes after the events", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("corrupt history record: %w", d.err)
	}
	return nil
}

// historyCount returns how many events a history record holds.
func historyCount(v []byte) int {
	n, k := binary.Uvarint(v)
	if k <= 0 {
		return 0
	}
	return int(n)
}

// put records that key now holds value at the record's indexes; prev is
// the record it replaced, if any. The event owns copies of every slice.
func (r *recorder) put(key, value []byte, create, mod, version uint64, prev *kv.Record) {
	e := kv.Event{Type: kv.EventPut, Record: kv.Record{Key: bytes.Clone(key), Value: bytes.Clone(value), CreateIndex: create, ModIndex: mod, Version: version}, Prev: prev}
	if e.Value == nil {
		e.Value = []byte{}
	}
	r.add(e)
}

// del records that key was removed; prev is the record removed.
func (r *recorder) del(key []byte, prev *kv.Record) {
	r.add(kv.Event{Type: kv.EventDelete, Record: kv.Record{Key: bytes.Clone(key), ModIndex: r.index}, Prev: prev})
}

func (r *recorder) add(e kv.Event) {
	if e.Prev != nil {
		e.Prev.Key = e.Key
	}
	r.events = append(r.events, e)
}

// added is how many events the batch recorded.
func (r *recorder) added() int {
	n := 0
	for _, resp := range r.out {
		n += len(resp.Events)
	}
	return n
}

func appendEvent(dst []byte, e kv.Event) []byte {
	t := byte(eventPut)
	if e.Type == kv.EventDelete {
		t = eventDelete
	}
	dst = append(dst, t)
	dst = binary.AppendUvarint(dst, uint64(len(e.Key)))
	dst = append(dst, e.Key...)
	dst = binary.AppendUvarint(dst, e.CreateIndex)
	dst = binary.AppendUvarint(dst, e.ModIndex)
	dst = binary.AppendUvarint(dst, e.Version)
	if e.Prev == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 1)
		dst = binary.AppendUvarint(dst, e.Prev.CreateIndex)
		dst = binary.AppendUvarint(dst, e.Prev.ModIndex)
		dst = binary.AppendUvarint(dst, e.Prev.Version)
	}
	if e.Type == kv.EventPut {
		dst = append(dst, e.Value...)
	}
	return dst
}

// eventKey returns the key of a stored event without decoding the rest.
func eventKey(v []byte) ([]byte, error) {
	d := decoder{b: v}
	d.byte("type")
	key := d.bytes("key")
	return key, d.err
}

// decodeEvent parses a stored event into one that owns its memory.
func decodeEvent(v []byte) (kv.Event, error) {
	d := decoder{b: v}
	var e kv.Event
	switch t := d.byte("type"); t {
	case eventPut:
		e.Type = kv.EventPut
	case eventDelete:
		e.Type = kv.EventDelete
	default:
		if d.err == nil {
			return kv.Event{}, fmt.Errorf("corrupt event: type %d", t)
		}
	}
	e.Key = bytes.Clone(d.bytes("key"))
	e.CreateIndex = d.uvarint("create_index")
	e.ModIndex = d.uvarint("mod_index")
	e.Version = d.uvarint("version")
	if d.byte("prev") == 1 {
		e.Prev = &kv.Record{Key: e.Key}
		e.Prev.CreateIndex = d.uvarint("prev create_index")
		e.Prev.ModIndex = d.uvarint("prev mod_index")
		e.Prev.Version = d.uvarint("prev version")
	}
	if d.err != nil {
		return kv.Event{}, fmt.Errorf("corrupt event: %w", d.err)
	}
	if e.Type == kv.EventPut {
		e.Value = append([]byte{}, d.b...)
	} else if len(d.b) != 0 {
		return kv.Event{}, fmt.Errorf("corrupt event: %d bytes after a delete", len(d.b))
	}
	return e, nil
}

// historyFloor reads the floor of tx's history: the oldest index whose
// events are all kept. A file without history (a version before it, a
// snapshot from one) keeps none: the floor is applied+1.
func historyFloor(tx *bbolt.Tx, applied uint64) uint64 {
	if tx.Bucket(bucketHistory) == nil {
		return applied + 1
	}
	f, ok := getU64(tx.Bucket(bucketMeta), keyHistoryFloor)
	if !ok {
		return applied + 1
	}
	return f
}

// compactHistory raises the floor to applied+1-keep (applied+1 with keep
// 0) and deletes the records below it. It returns the new floor and how
// many events it deleted.
func compactHistory(tx *bbolt.Tx, applied, keep uint64) (uint64, int, error) {
	meta := tx.Bucket(bucketMeta)
	floor := historyFloor(tx, applied)
	want := uint64(1)
	if applied+1 > keep {
		want = applied + 1 - keep
	}
	if want <= floor {
		return floor, 0, nil
	}
	n := 0
	if hist := tx.Bucket(bucketHistory); hist != nil {
		c := hist.Cursor()
		// Seek again after each delete: a bbolt cursor may skip the key
		// that follows a deleted one.
		for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) < want; k, v = c.First() {
			n += historyCount(v)
			if err := c.Delete(); err != nil {
				return floor, n, err
			}
		}
	}
	return want, n, meta.Put(keyHistoryFloor, u64(want))
}

// lookupPrev fills in the value of e.Prev from hist: the value of e.Key's
// last put in the record at e.Prev.ModIndex. It leaves it nil when the
// history no longer holds that record (below floor).
func lookupPrev(hist *bbolt.Bucket, floor uint64, e *kv.Event) error {
	if e.Prev == nil || e.Prev.ModIndex < floor {
		return nil
	}
	v := hist.Get(u64(e.Prev.ModIndex))
	if v == nil {
		return nil
	}
	return historyEvents(v, func(ev []byte) error {
		key, err := eventKey(ev)
		if err != nil || !bytes.Equal(key, e.Key) {
			return err
		}
		pe, err := decodeEvent(ev)
		if err == nil && pe.Type == kv.EventPut {
			e.Prev.Value = pe.Value
		}
		return err
	})
}
