package raftnode

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// DetectLogStore tells the kinds apart by what each leaves in the data
// directory, and refuses a directory that holds both; Seed refuses a
// directory of either kind and leaves its own kind behind.
func TestDetectLogStoreAndSeed(t *testing.T) {
	create := func(t *testing.T, dir, kind string) {
		t.Helper()
		logs, err := openLogStore(dir, kind, 0, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		// Something of raft's in it: a term, and an entry.
		if err := logs.SetUint64([]byte("CurrentTerm"), 3); err != nil {
			t.Fatal(err)
		}
		if err := logs.StoreLog(&raft.Log{Index: 1, Term: 3, Type: raft.LogCommand, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if err := logs.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name    string
		kinds   []string // created in the directory, in order
		want    string
		wantErr bool
	}{
		{"empty", nil, "", false},
		{"boltdb", []string{LogStoreBoltDB}, LogStoreBoltDB, false},
		{"wal", []string{LogStoreWAL}, LogStoreWAL, false},
		{"both", []string{LogStoreBoltDB, LogStoreWAL}, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for i, k := range tt.kinds {
				if i > 0 {
					// openLogStore refuses the second kind: the test
					// makes the mixed directory in a side one.
					side := t.TempDir()
					create(t, side, k)
					if err := os.CopyFS(dir, os.DirFS(side)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				create(t, dir, k)
			}
			got, err := DetectLogStore(dir)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Fatalf("DetectLogStore = %q, %v; want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, ErrLogStoreMismatch) {
				t.Fatalf("a directory with both: %v, want ErrLogStoreMismatch", err)
			}
			if len(tt.kinds) == 1 {
				// The state is still there, as written.
				logs, err := openLogStore(dir, tt.kinds[0], 0, hclog.NewNullLogger())
				if err != nil {
					t.Fatal(err)
				}
				term, err := logs.GetUint64([]byte("CurrentTerm"))
				var l raft.Log
				lerr := logs.GetLog(1, &l)
				_ = logs.Close()
				if err != nil || term != 3 || lerr != nil || string(l.Data) != "x" {
					t.Fatalf("reopened: term %d (%v), entry %q (%v)", term, err, l.Data, lerr)
				}
			}
			err = Seed(dir, LogStoreWAL, 10, 1, []Server{{ID: "n1", RaftAddr: "127.0.0.1:1", Voter: true}}, func(w io.Writer) error {
				_, err := io.WriteString(w, "state")
				return err
			})
			if len(tt.kinds) > 0 {
				if err == nil || !strings.Contains(err.Error(), "raft state") && !errors.Is(err, ErrLogStoreMismatch) {
					t.Fatalf("Seed on a directory with raft state: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, err := DetectLogStore(dir); got != LogStoreWAL || err != nil {
				t.Fatalf("after Seed with the WAL: %q, %v", got, err)
			}
			if _, err := openLogStore(dir, LogStoreBoltDB, 0, hclog.NewNullLogger()); !errors.Is(err, ErrLogStoreMismatch) {
				t.Fatalf("a seeded WAL directory opened with boltdb: %v", err)
			}
		})
	}
	if _, err := ParseLogStore("bolt"); err == nil {
		t.Fatal(`ParseLogStore("bolt") accepted`)
	}
	if err := Seed(t.TempDir(), "bolt", 10, 1, []Server{{ID: "n1", RaftAddr: "127.0.0.1:1"}}, nil); err == nil {
		t.Fatal(`Seed with log store "bolt" accepted`)
	}
}
