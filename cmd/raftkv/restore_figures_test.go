package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testkit"
	"github.com/raftkv/raftkv/kv"
)

// TestRestoreFigures measures backups at scale: it loads
// $RAFTKV_RESTORE_FIGURES_KEYS keys (16-byte values) into a three-node
// cluster, then three times over times raftkv snapshot save (and the
// file's size), raftkv snapshot restore of three members, and raftkv
// serve on them until all three answer /readyz, and logs each run and the
// medians (docs/performance.md, "Backup and restore"). Not run by make
// test: without the variable it is skipped.
//
//	RAFTKV_RESTORE_FIGURES_KEYS=1000000 go test -run TestRestoreFigures -v -timeout 1h ./cmd/raftkv
func TestRestoreFigures(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RAFTKV_RESTORE_FIGURES_KEYS"))
	if n <= 0 {
		t.Skip("set RAFTKV_RESTORE_FIGURES_KEYS to the number of keys to measure with")
	}
	c := testkit.NewCluster(t, 3, testkit.Options{})
	cl := clusterClient(t, c)
	ctx := context.Background()

	start := time.Now()
	const perTxn = kv.MaxTxnOps
	next := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for first := range next {
				var txn kv.Txn
				for k := first; k < min(first+perTxn, n); k++ {
					txn.Success = append(txn.Success, kv.TxnOp{Type: kv.TxnPut, Key: fmt.Appendf(nil, "key/%08d", k), Value: fmt.Appendf(nil, "value-%010d", k)})
				}
				if _, err := cl.Txn(ctx, txn); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for first := 0; first < n; first += perTxn {
		select {
		case next <- first:
		case err := <-errs:
			t.Fatal(err)
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	t.Logf("loaded %d keys in %v", n, time.Since(start).Round(time.Millisecond))

	var saves, restores, readies []time.Duration
	for round := range 3 {
		dir := t.TempDir()
		file := filepath.Join(dir, "backup.snap")
		t0 := time.Now()
		saved := snapshotCLI(t, "snapshot", "save", "--addr="+c.URL(c.Follower()), "--json", file)
		save := time.Since(t0)
		if saved.Keys != int64(n) {
			t.Fatalf("the backup holds %d keys, want %d", saved.Keys, n)
		}
		ids := []string{"r1", "r2", "r3"}
		raftAddrs, httpAddrs := map[string]string{}, map[string]string{}
		var members []string
		for _, id := range ids {
			raftAddrs[id], httpAddrs[id] = freeAddr(t), freeAddr(t)
			members = append(members, id+"="+raftAddrs[id])
		}
		var restore time.Duration
		for _, id := range ids {
			t0 := time.Now()
			var out, errOut bytes.Buffer
			args := []string{"snapshot", "restore", "--id=" + id, "--data-dir=" + filepath.Join(dir, id), "--members=" + strings.Join(members, ","), file}
			if err := run(ctx, args, strings.NewReader(""), &out, &errOut); err != nil {
				t.Fatalf("%v: %s", err, errOut.String())
			}
			restore = max(restore, time.Since(t0))
		}
		t0 = time.Now()
		for _, id := range ids {
			serveCLI(t, "--id", id, "--data-dir", filepath.Join(dir, id), "--http-addr", httpAddrs[id], "--raft-addr", raftAddrs[id])
		}
		for _, id := range ids {
			if err := testkit.Eventually(5*time.Minute, func() error {
				resp, err := http.Get("http://" + httpAddrs[id] + "/readyz")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s: %d", id, resp.StatusCode)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		ready := time.Since(t0)
		resp, err := http.Get("http://" + httpAddrs["r1"] + "/v1/debug/hash")
		if err != nil {
			t.Fatal(err)
		}
		var h kv.DigestInfo
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil || h.SHA256 != saved.SHA256 {
			t.Fatalf("restored digest %+v (%v), the backup's %s", h, err, saved.SHA256)
		}
		fi, err := os.Stat(filepath.Join(dir, "r1", "kv.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("run %d: save %v (file %d bytes), restore of one member (slowest of 3) %v, start to 3 ready %v (kv.db %d bytes)",
			round+1, save.Round(time.Millisecond), saved.Bytes, restore.Round(time.Millisecond), ready.Round(time.Millisecond), fi.Size())
		saves, restores, readies = append(saves, save), append(restores, restore), append(readies, ready)
	}
	median := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2].Round(time.Millisecond) }
	t.Logf("medians of 3: save %v, restore %v, start to ready %v", median(saves), median(restores), median(readies))
}
