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
// (power, kernel crash) before the kernel wrote them back. So a marker
// file beside kv.db says whether kv.db can be trusted:
//
//	clean          kv.db was synced and closed, or is always synced
//	open BOOT-ID   kv.db is open without fsync since the boot BOOT-ID
//
// Open trusts kv.db when the marker says clean, or open with the boot id
// the machine has now (the process died, the kernel did not). Otherwise
// the machine stopped while kv.db had unsynced writes: Open discards it,
// and the node rebuilds its state from the newest snapshot and the raft
// log (raft replays every entry after the snapshot it restores).

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

// trustState decides, before kv.db is opened, whether its content can be
// trusted, from the marker beside it. It returns a reason when it cannot.
func trustState(path, bootID string) (ok bool, reason string, err error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return true, "", nil
	}
	m, err := os.ReadFile(syncMarkerPath(path))
	switch {
	case errors.Is(err, os.ErrNotExist):
		// Written by a version that always synced: every commit is durable.
		return true, "", nil
	case err != nil:
		return false, "", fmt.Errorf("read %s: %w", syncMarkerPath(path), err)
	}
	fields := strings.Fields(string(m))
	switch {
	case len(fields) == 1 && fields[0] == "clean":
		return true, "", nil
	case len(fields) == 2 && fields[0] == "open" && bootID != "" && fields[1] == bootID:
		return true, "", nil
	case len(fields) == 2 && fields[0] == "open":
		return false, fmt.Sprintf("it was open without fsync when the machine stopped (boot %s, now %s)", fields[1], orNone(bootID)), nil
	default:
		return false, fmt.Sprintf("its marker %s is unreadable (%q)", syncMarkerPath(path), bytes.TrimSpace(m)), nil
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
