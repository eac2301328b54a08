package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"

	"go.etcd.io/bbolt"
)

// Digest summarizes the whole key space at one applied index. Two nodes
// that applied the same entries have the same Digest: it covers every
// key, value, create_index, mod_index and version, in key order.
type Digest struct {
	AppliedIndex uint64
	Keys         int64
	// SHA256 is the hex SHA-256 of the key space.
	SHA256 string
}

// Digest reads the key space in one read transaction and hashes it.
func (s *Store) Digest() (Digest, error) {
	var d Digest
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		d, _, err = digestTx(tx)
		return err
	})
	return d, err
}

// digestTx hashes the key space tx holds; it returns the applied term too.
func digestTx(tx *bbolt.Tx) (Digest, uint64, error) {
	var d Digest
	var term uint64
	var err error
	if d.AppliedIndex, term, err = readMeta(tx); err != nil {
		return d, 0, err
	}
	h := sha256.New()
	var buf []byte
	err = tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
		rec, err := decodeRecord(k, v, true)
		if err != nil {
			return err
		}
		buf = binary.AppendUvarint(buf[:0], uint64(len(k)))
		buf = append(buf, k...)
		buf = binary.AppendUvarint(buf, rec.CreateIndex)
		buf = binary.AppendUvarint(buf, rec.ModIndex)
		buf = binary.AppendUvarint(buf, rec.Version)
		buf = binary.AppendUvarint(buf, uint64(len(rec.Value)))
		buf = append(buf, rec.Value...)
		h.Write(buf)
		d.Keys++
		return nil
	})
	d.SHA256 = hex.EncodeToString(h.Sum(nil))
	return d, term, err
}
