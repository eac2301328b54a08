package store

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/raftkv/raftkv/kv"
)

var errSyncFailed = errors.New("injected fsync failure")

// failSync is an Options.syncDB whose fsync always fails, as fsync does
// after the kernel failed to write kv.db's pages back.
func failSync(*bbolt.DB) error { return errSyncFailed }

// How the previous run left kv.db, and whether Open may trust it with the
// boot id the machine has now. Losing the process keeps the kernel's page
// cache (same boot); a different boot id is a machine that stopped, whose
// unsynced writes may be lost and kv.db torn: it is discarded, and raft
// rebuilds it from the newest snapshot and the log.
func TestOpenTrustsStateFileOnlyWhenItCan(t *testing.T) {
	tests := []struct {
		name   string
		noSync bool // how the previous run opened kv.db
		// "close", "close, sync fails" (fsync fails in Close), "die"
		// (process killed), or "tear" (die, then garbage in kv.db)
		stop     string
		marker   string // replaces the marker afterwards when set ("-": remove it)
		boot     string // boot id at the next open
		reopen   bool   // the next open's NoSync
		syncFail bool   // every fsync of kv.db fails at the next open (a writeback failed unseen)
		keeps    bool
		discard  bool
	}{
		{name: "nosync closed cleanly, other boot", noSync: true, stop: "close", boot: "B", reopen: true, keeps: true},
		{name: "nosync process died, same boot", noSync: true, stop: "die", boot: "A", reopen: true, keeps: true},
		{name: "nosync process died, machine rebooted", noSync: true, stop: "die", boot: "B", reopen: true, discard: true},
		{name: "nosync torn by a machine stop", noSync: true, stop: "tear", boot: "B", reopen: true, discard: true},
		{name: "nosync died, reopened synced after a reboot", noSync: true, stop: "die", boot: "B", reopen: false, discard: true},
		{name: "nosync died, reopened synced same boot", noSync: true, stop: "die", boot: "A", reopen: false, keeps: true},
		{name: "synced process died, reboot", noSync: false, stop: "die", boot: "B", reopen: true, keeps: true},
		{name: "no marker (older version, always synced)", noSync: false, stop: "die", marker: "-", boot: "B", reopen: true, keeps: true},
		{name: "unreadable marker", noSync: true, stop: "close", marker: "what", boot: "A", reopen: true, discard: true},
		{name: "no boot id on this system", noSync: true, stop: "die", boot: "", reopen: true, discard: true},
		{name: "dirty marker", noSync: true, stop: "close", marker: "dirty", boot: "A", reopen: true, discard: true},
		// A failed fsync means the kernel could not write pages back: what
		// kv.db holds on disk is unknown, even in the same boot.
		{name: "nosync, fsync failed in Close, same boot", noSync: true, stop: "close, sync fails", boot: "A", reopen: true, discard: true},
		{name: "nosync, fsync failed in Close, reopened synced", noSync: true, stop: "close, sync fails", boot: "A", reopen: false, discard: true},
		{name: "nosync died, writeback failed unseen, same boot", noSync: true, stop: "die", boot: "A", reopen: true, syncFail: true, discard: true},
		{name: "nosync died, writeback failed unseen, reopened synced", noSync: true, stop: "die", boot: "A", reopen: false, syncFail: true, discard: true},
		{name: "nosync closed cleanly, fsync fails at the next open", noSync: true, stop: "close", boot: "A", reopen: true, syncFail: true, keeps: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kv.db")
			opts := Options{NoSync: tc.noSync, BootID: func() string { return "A" }}
			if tc.stop == "close, sync fails" {
				opts.syncDB = failSync
			}
			s, err := Open(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			applyOne(t, s, 1, putCmd("k", "v", kv.Condition{}))
			switch tc.stop {
			case "close":
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			case "close, sync fails":
				if err := s.Close(); !errors.Is(err, errSyncFailed) {
					t.Fatalf("Close = %v, want the fsync error", err)
				}
			case "die", "tear":
				// What a SIGKILL leaves: the file and the marker as they were,
				// nothing synced or marked on the way out.
				if err := s.db.Close(); err != nil {
					t.Fatal(err)
				}
				if tc.stop == "tear" {
					if err := os.WriteFile(path, notBbolt(), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			switch tc.marker {
			case "":
			case "-":
				if err := os.Remove(syncMarkerPath(path)); err != nil {
					t.Fatal(err)
				}
			default:
				if err := os.WriteFile(syncMarkerPath(path), []byte(tc.marker), 0o600); err != nil {
					t.Fatal(err)
				}
			}

			opts = Options{NoSync: tc.reopen, BootID: func() string { return tc.boot }}
			if tc.syncFail {
				opts.syncDB = failSync
			}
			s2, err := Open(path, opts)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer s2.Close()
			rec, err := s2.Get([]byte("k"))
			switch {
			case tc.keeps && (err != nil || string(rec.Value) != "v" || s2.AppliedIndex() != 1):
				t.Fatalf("kv.db should have been kept: %+v %v, applied %d", rec, err, s2.AppliedIndex())
			case tc.discard && (!errors.Is(err, kv.ErrNotFound) || s2.AppliedIndex() != 0):
				t.Fatalf("kv.db should have been discarded: %+v %v, applied %d", rec, err, s2.AppliedIndex())
			}
			// The reopened store is usable either way.
			applyOne(t, s2, 2, putCmd("k2", "v2", kv.Condition{}))
			_ = s2.Close() // fails when syncDB does; the marker then says dirty
		})
	}
}

// The marker follows the store through its life: open without fsync names
// the boot, a clean Close says clean, a synced store says clean at once, a
// Close whose fsync failed says dirty.
func TestSyncMarkerLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	marker := func() string {
		b, err := os.ReadFile(syncMarkerPath(path))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	s, err := Open(path, Options{NoSync: true, BootID: func() string { return "boot-1" }})
	if err != nil {
		t.Fatal(err)
	}
	if got := marker(); got != "open boot-1\n" {
		t.Fatalf("marker while open without fsync: %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := marker(); got != "clean\n" {
		t.Fatalf("marker after Close: %q", got)
	}
	s, err = Open(path, Options{BootID: func() string { return "boot-2" }})
	if err != nil {
		t.Fatal(err)
	}
	if got := marker(); got != "clean\n" {
		t.Fatalf("marker of a synced store: %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A Close whose fsync fails says dirty: the next start rebuilds.
	s, err = Open(path, Options{NoSync: true, BootID: func() string { return "boot-2" }, syncDB: failSync})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, errSyncFailed) {
		t.Fatalf("Close = %v, want the fsync error", err)
	}
	if got := marker(); got != "dirty\n" {
		t.Fatalf("marker after a failed fsync in Close: %q", got)
	}
}

// When Close's fsync fails and the dirty marker cannot be written either,
// Close removes kv.db: the fsync error has been reported once, to Close,
// so the next start's fsync would not see it, and the marker still says
// open in this boot.
func TestFailedCloseWithoutMarkerRemovesStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := Open(path, Options{NoSync: true, BootID: func() string { return "A" }, syncDB: failSync})
	if err != nil {
		t.Fatal(err)
	}
	applyOne(t, s, 1, putCmd("k", "v", kv.Condition{}))
	// A non-empty directory where the marker is: renaming over it fails.
	marker := syncMarkerPath(path)
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(marker, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, errSyncFailed) {
		t.Fatalf("Close = %v, want the fsync error", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("kv.db after a failed Close that could not mark it dirty: %v, want it removed", err)
	}
	// The next start begins empty, and raft rebuilds it.
	if err := os.RemoveAll(marker); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{NoSync: true, BootID: func() string { return "A" }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.AppliedIndex() != 0 {
		t.Fatalf("applied index %d after the rebuild, want 0", s.AppliedIndex())
	}
}
