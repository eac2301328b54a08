//go:build unix

package chaos

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	flagDuration = flag.Duration("chaos.duration", 0, "how long each fault keeps injecting (0: the short pass, one cycle of each fault)")
	flagRounds   = flag.Int("chaos.rounds", 1, "rounds of each fault, each on a fresh cluster")
	flagSeed     = flag.Uint64("chaos.seed", 0, "seed of every random choice (0: from the clock); printed so a run can be replayed")
	flagKeep     = flag.Bool("chaos.keep", false, "keep run directories of passing runs too")
	flagDir      = flag.String("chaos.dir", "", "where run directories go (default: the system temp dir)")
	flagBin      = flag.String("chaos.bin", "", "a raftkv binary to use instead of building one")
	flagRace     = flag.Bool("chaos.race", false, "build the raftkv binary with the race detector")
	flagVerbose  = flag.Bool("chaos.verbose", false, "copy the harness's log lines to the test log")
)

// Set by TestMain.
var (
	raftkvBin string
	baseSeed  uint64
	// serveFlags records which of the snapshot tuning flags F10 and F11
	// use, and --watch-history (the watch check), `raftkv serve` has.
	serveFlags = map[string]bool{}
)

// snapshotFlags are the serve flags that make snapshots frequent.
var snapshotFlags = []string{"snapshot-threshold", "snapshot-interval", "trailing-logs"}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	baseSeed = *flagSeed
	if baseSeed == 0 {
		baseSeed = uint64(time.Now().UnixNano() % 1_000_000_000)
	}
	fmt.Printf("chaos: seed %d (replay with -chaos.seed=%d)\n", baseSeed, baseSeed)
	raftkvBin = *flagBin
	if raftkvBin == "" {
		dir, err := os.MkdirTemp("", "raftkv-chaos-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		raftkvBin = filepath.Join(dir, "raftkv")
		if err := build(raftkvBin); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: building raftkv:", err)
			return 1
		}
	}
	help, _ := exec.Command(raftkvBin, "serve", "-h").CombinedOutput()
	for _, f := range append(slices.Clone(snapshotFlags), "watch-history", "watch-window") {
		serveFlags[f] = strings.Contains(string(help), "-"+f+" ")
	}
	return m.Run()
}

func build(out string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is needed to build raftkv: %w", err)
	}
	args := []string{"build", "-o", out}
	if *flagRace {
		args = append(args, "-race")
	}
	args = append(args, "github.com/raftkv/raftkv/cmd/raftkv")
	cmd := exec.Command(gobin, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}
