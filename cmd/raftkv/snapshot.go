package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

const snapshotUsage = `Usage:
  raftkv snapshot save [flags] FILE   save a consistent copy of the store (GET /v1/snapshot) to FILE
  raftkv snapshot inspect [flags] FILE  verify a saved snapshot and print its index, term, keys, bytes and digest
  raftkv snapshot restore [flags] FILE  prepare the data directory of one member of a new cluster from FILE

The digest is the one GET /v1/debug/hash gives for the same state (the
sha256 of every key, value and index), so a saved file can be compared with
a live node at the same applied index.
`

func runSnapshot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	args, err := liftClientFlags(args) // raftkv snapshot --addr A SUBCOMMAND
	if err != nil {
		return err
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, snapshotUsage)
		return &usageError{err: errors.New("snapshot: no subcommand given"), shown: true}
	}
	switch sub, args := args[0], args[1:]; sub {
	case "save":
		return runSnapshotSave(ctx, args, stdout, stderr)
	case "inspect":
		return runSnapshotInspect(args, stdout, stderr)
	case "restore":
		return runSnapshotRestore(ctx, args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		_, err := fmt.Fprint(stdout, snapshotUsage)
		return err
	default:
		return usagef("snapshot: unknown subcommand %q (run \"raftkv snapshot help\")", sub)
	}
}

// snapshotSummary is what save and inspect print (--json).
type snapshotSummary struct {
	File   string `json:"file"`
	Index  uint64 `json:"index"`
	Term   uint64 `json:"term"`
	Keys   int64  `json:"keys"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	// ClusterID is the identity of the cluster the state is from.
	ClusterID string `json:"cluster_id,omitempty"`
}

func (s snapshotSummary) String() string {
	line := fmt.Sprintf("%s: index %d  term %d  keys %d  bytes %d  sha256 %s", s.File, s.Index, s.Term, s.Keys, s.Bytes, s.SHA256)
	if s.ClusterID != "" {
		line += "  cluster " + s.ClusterID
	}
	return line
}

func runSnapshotSave(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("snapshot save", "FILE",
		"Save a consistent copy of one node's state machine (the first of --addr that answers) to FILE:\n"+
			"the download goes to FILE.part, is verified, then renamed to FILE. The last line gives\n"+
			"its index, term, keys, bytes and digest (the sha256 of GET /v1/debug/hash for that state).",
		stderr).clientFlagsTimeout(30 * time.Minute)
	consistency := c.fs.String("consistency", string(kv.Linearizable), "linearizable: the copy holds every acknowledged write (a read barrier first); stale: the node's state as it is")
	asJSON := c.fs.Bool("json", false, "print the summary as JSON")
	pos, err := c.parse(args, 1, 1)
	if err != nil {
		return err
	}
	cons, err := parseConsistency(*consistency)
	if err != nil {
		return err
	}
	file := pos[0]
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		sum, err := saveSnapshot(ctx, cl, file, kv.ReadOptions{Consistency: cons}, progressTo(stderr))
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, sum)
		}
		_, err = fmt.Fprintf(stdout, "saved %s\n", sum)
		return err
	})
}

// saveSnapshot downloads a snapshot into file+".part", verifies it with
// the store's decoder, and renames it to file. progress, when not nil, is
// called as bytes arrive and once more at the end (done true).
func saveSnapshot(ctx context.Context, cl *client.Client, file string, opts kv.ReadOptions, progress func(n, size int64, done bool)) (snapshotSummary, error) {
	part := file + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return snapshotSummary{}, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(part)
		}
	}()
	pw := &progressWriter{w: f, progress: progress}
	info, err := cl.SnapshotWith(ctx, pw, opts)
	if progress != nil && pw.n > 0 {
		progress(pw.n, info.Size, true)
	}
	if err != nil {
		return snapshotSummary{}, err
	}
	if err := f.Sync(); err != nil {
		return snapshotSummary{}, err
	}
	if err := f.Close(); err != nil {
		return snapshotSummary{}, err
	}
	sum, err := inspectFile(part)
	if err != nil {
		return snapshotSummary{}, fmt.Errorf("the download does not verify: %w", err)
	}
	if sum.Index != info.Index || sum.Term != info.Term {
		return snapshotSummary{}, fmt.Errorf("the download holds index %d term %d, the node announced index %d term %d", sum.Index, sum.Term, info.Index, info.Term)
	}
	if err := os.Rename(part, file); err != nil {
		return snapshotSummary{}, err
	}
	ok = true
	if d, err := os.Open(filepath.Dir(file)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	sum.File = file
	return sum, nil
}

func runSnapshotInspect(args []string, stdout, stderr io.Writer) error {
	c := newCommand("snapshot inspect", "FILE",
		"Verify a snapshot saved by \"raftkv snapshot save\" (or a raft snapshot's state.bin): its header,\n"+
			"length and checksum, and that it holds a raftkv state file; then print its index, term, keys,\n"+
			"bytes and digest (the sha256 GET /v1/debug/hash gives for that state). It unpacks the state\n"+
			"file next to FILE while it runs.",
		stderr)
	asJSON := c.fs.Bool("json", false, "print the summary as JSON")
	pos, err := c.parse(args, 1, 1)
	if err != nil {
		return err
	}
	sum, err := inspectFile(pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, sum)
	}
	_, err = fmt.Fprintln(stdout, sum)
	return err
}

// restoreSummary is what restore prints (--json).
type restoreSummary struct {
	File            string            `json:"file"`
	DataDir         string            `json:"data_dir"`
	ID              string            `json:"id"`
	Index           uint64            `json:"index"`
	Keys            int64             `json:"keys"`
	SHA256          string            `json:"sha256"`
	ClusterID       string            `json:"cluster_id"`
	SourceClusterID string            `json:"source_cluster_id"`
	Members         map[string]string `json:"members"`
	LogStore        string            `json:"raft_log_store"`
}

func runSnapshotRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("snapshot restore", "FILE",
		"Prepare, offline, the data directory of one member of a NEW cluster that starts with exactly the\n"+
			"state saved in FILE (verified first) and a new cluster identity. Run it once per member, with\n"+
			"the same FILE and the same --members, each with its own --id and an empty --data-dir; then start\n"+
			"each member with raftkv serve on its directory (same --id; the raft address --members gives it\n"+
			"as --raft-advertise, or --raft-addr), no --join or --bootstrap-expect needed. The new identity\n"+
			"is derived from FILE and --members, so every member gets the same one: compare the cluster\n"+
			"lines restore prints. Members of the old cluster and of the new one refuse each other.",
		stderr)
	dataDir := c.fs.String("data-dir", "", "the new member's data directory: must not exist, or be empty (required)")
	id := c.fs.String("id", "", "the new member's raft server id, one of --members (required)")
	members := c.fs.String("members", "", "the new cluster's voters as id=host:port,... with each one's raft address (required; the same for every member)")
	clusterID := c.fs.String("cluster-id", "", "the new cluster's identity (letters, digits, - and _); default: derived from FILE and --members")
	logStoreV := c.fs.String("raft-log-store", raftkv.LogStoreBoltDB, "raft log store the member will run with: boltdb or wal (give raftkv serve the same --raft-log-store)")
	asJSON := c.fs.Bool("json", false, "print the summary as JSON")
	pos, err := c.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if *dataDir == "" || *id == "" || *members == "" {
		return usagef("snapshot restore: --data-dir, --id and --members are required")
	}
	logStore, err := logStoreFlag("snapshot restore", *logStoreV)
	if err != nil {
		return err
	}
	peers, err := parsePeerAddrs("members", *members)
	if err != nil {
		return err
	}
	if _, ok := peers[*id]; !ok {
		return usagef("snapshot restore: --id %s is not one of --members", *id)
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	res, err := raftkv.Restore(ctx, raftkv.RestoreConfig{Snapshot: f, DataDir: *dataDir, LogStore: logStore, ID: *id, Members: peers, ClusterID: *clusterID})
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	sum := restoreSummary{File: pos[0], DataDir: *dataDir, ID: *id, Index: res.Index, Keys: res.Keys, SHA256: res.SHA256,
		ClusterID: res.ClusterID, SourceClusterID: res.SourceClusterID, Members: peers, LogStore: logStore}
	if *asJSON {
		return writeJSON(stdout, sum)
	}
	ids := make([]string, 0, len(peers))
	for m := range peers {
		ids = append(ids, m+"="+peers[m])
	}
	slices.Sort(ids)
	source := sum.SourceClusterID
	if source == "" {
		source = "none"
	}
	storeFlag := ""
	if logStore != raftkv.LogStoreBoltDB {
		storeFlag = " --raft-log-store " + logStore
	}
	_, err = fmt.Fprintf(stdout, "restored %s into %s as %s: index %d  keys %d  sha256 %s\n"+
		"cluster %s (new; the backup is from cluster %s)  members %s\n"+
		"start it: raftkv serve --id %s --data-dir %s --raft-advertise %s%s ... (no --join, no --bootstrap-expect)\n",
		sum.File, sum.DataDir, sum.ID, sum.Index, sum.Keys, sum.SHA256,
		sum.ClusterID, source, strings.Join(ids, ","),
		sum.ID, sum.DataDir, peers[sum.ID], storeFlag)
	return err
}

// inspectFile verifies the snapshot in file with store.InspectSnapshot,
// unpacking it into a scratch file in the same directory.
func inspectFile(file string) (snapshotSummary, error) {
	f, err := os.Open(file)
	if err != nil {
		return snapshotSummary{}, err
	}
	defer func() { _ = f.Close() }()
	scratch, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".inspect-*")
	if err != nil {
		return snapshotSummary{}, err
	}
	_ = scratch.Close()
	s, err := store.InspectSnapshot(f, scratch.Name())
	if err != nil {
		return snapshotSummary{}, fmt.Errorf("%s: %w", file, err)
	}
	return snapshotSummary{File: file, Index: s.Index, Term: s.Term, Keys: s.Keys, Bytes: s.Bytes, SHA256: s.SHA256, ClusterID: s.ClusterID}, nil
}

// progressWriter counts the bytes written through it and reports them.
type progressWriter struct {
	w        io.Writer
	n        int64
	progress func(n, size int64, done bool)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if p.progress != nil {
		p.progress(p.n, -1, false)
	}
	return n, err
}

// progressTo returns a progress reporter that redraws one line on stderr
// at most ten times a second, when stderr is a terminal; nil otherwise.
func progressTo(stderr io.Writer) func(n, size int64, done bool) {
	f, ok := stderr.(*os.File)
	if !ok {
		return nil
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	start := time.Now()
	var last time.Time
	return func(n, _ int64, done bool) {
		now := time.Now()
		if !done && now.Sub(last) < 100*time.Millisecond {
			return
		}
		last = now
		rate := float64(n) / max(now.Sub(start).Seconds(), 1e-3)
		fmt.Fprintf(f, "\r\033[Kreceived %s (%s/s)", byteSize(float64(n)), byteSize(rate))
		if done {
			fmt.Fprintln(f)
		}
	}
}

func byteSize(b float64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%.0f B", b)
	}
	div, exp := float64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", b/div, "KMGTP"[exp])
}
