package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The state file may run without fsync (Options.NoSync): the raft log,
// always synced, is the durable record, and the state machine can be
// rebuilt from the newest snapshot and the log. Writes that bbolt made
// without fsync are safe in the kernel's page cache when only the process
// dies; they are lost, and kv.db may be torn, when the machine stops
// (power, kernel crash) before the kernel wrote them back, or when the
// kernel fails to write them back (an I/O error: the pages may then be
// dropped, and the file on disk is whatever reached it). So a marker file
// beside kv.db says whether kv.db can be trusted:
//
//	clean          kv.db was synced and closed, or is always synced
//	open BOOT-ID   kv.db is open without fsync since the boot BOOT-ID
//	dirty          an fsync of kv.db failed: its content on disk is unknown
//
// Open trusts kv.db when the marker says clean (or is absent: versions
// before the marker always synced). When it says open with the boot id
// the machine has now (the process died, the kernel did not), Open first
// fsyncs kv.db and trusts it only if that succeeds: Linux reports a failed
// writeback to the next fsync of the file, even through a file opened
// after the failure, if no one has seen the error yet. Otherwise (another
// boot, no boot id known, dirty, an unreadable marker, or that fsync
// failed) kv.db is discarded, and the node rebuilds its state from the
// newest snapshot and the raft log (raft replays every entry after the
// snapshot it restores).
//
// Close fsyncs kv.db and writes clean only if that succeeded. If it
// failed, the error has now been seen, so no later fsync will report it:
// Close writes dirty, and if even that fails it removes kv.db, so the next
// start rebuilds either way.

// syncMarkerPath is the marker file of the state file at path.
func syncMarkerPath(path string) string { return path + ".sync" }

// BootIDFile is where Linux publishes the id of the current boot.
const BootIDFile = "/proc/sys/kernel/random/boot_id"

// ReadBootID returns the current boot id, or "" where the system has none
// (then every unclean stop without fsync counts as a machine stop).
func ReadBootID() string {
	b, err := os.ReadFile(BootIDFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// trust is what Open may do with an existing kv.db.
type trust int

const (
	// trustNo: discard kv.db; the newest snapshot and the log rebuild it.
	trustNo trust = iota
	// trustYes: every write to kv.db is durable.
	trustYes
	// trustIfSynced: kv.db ran without fsync in this boot; trust it once an
	// fsync of it succeeds.
	trustIfSynced
)

// trustState decides, before kv.db is opened, whether its content can be
// trusted, from the marker beside it. It returns a reason when it cannot.
func trustState(path, bootID string) (trust, string, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return trustYes, "", nil
	}
	m, err := os.ReadFile(syncMarkerPath(path))
	switch {
	case errors.Is(err, os.ErrNotExist):
		// Written by a version that always synced: every commit is durable.
		return trustYes, "", nil
	case err != nil:
		return trustNo, "", fmt.Errorf("read %s: %w", syncMarkerPath(path), err)
	}
	fields := strings.Fields(string(m))
	switch {
	case len(fields) == 1 && fields[0] == "clean":
		return trustYes, "", nil
	case len(fields) == 2 && fields[0] == "open" && bootID != "" && fields[1] == bootID:
		return trustIfSynced, "", nil
	case len(fields) == 2 && fields[0] == "open":
		return trustNo, fmt.Sprintf("it was open without fsync when the machine stopped (boot %s, now %s)", fields[1], orNone(bootID)), nil
	case len(fields) == 1 && fields[0] == "dirty":
		return trustNo, "an fsync of it failed (marker dirty)", nil
	default:
		return trustNo, fmt.Sprintf("its marker %s is unreadable (%q)", syncMarkerPath(path), bytes.TrimSpace(m)), nil
	}
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// writeMarker replaces the marker atomically and durably.
func writeMarker(path, content string) error {
	marker := syncMarkerPath(path)
	tmp := marker + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", marker, err)
	}
	_, err = f.WriteString(content + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, marker)
	}
	if err == nil {
		err = syncDir(filepath.Dir(marker))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", marker, err)
	}
	return nil
}
