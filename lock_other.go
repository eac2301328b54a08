//go:build !unix

package raftkv

// lockDir is a no-op where flock is not available; bbolt's own file locks
// still refuse a second opener of raft.db and kv.db.
func lockDir(string) (func() error, error) { return func() error { return nil }, nil }
