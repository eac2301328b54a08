package chaos

import (
	"bufio"
	"cmp"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Recorder collects a history: every client operation with its call and
// return times (nanoseconds since the recorder was made, monotonic), and
// the windows during which faults were active. It is safe for concurrent
// use.
type Recorder struct {
	base time.Time

	mu      sync.Mutex
	ops     []porcupine.Operation
	dropped []dropped
	notes   []porcupine.Annotation
	nextPID int
}

// dropped is a failed read: not part of the checked history, but kept
// for the text history, where it explains gaps.
type dropped struct {
	pid       int
	node      string
	in        Input
	call, ret int64
	why       string
}

// NewRecorder starts a history now.
func NewRecorder() *Recorder { return &Recorder{base: time.Now()} }

// Now is the current time on the history's clock.
func (r *Recorder) Now() int64 { return int64(time.Since(r.base)) }

// NewProcess returns a fresh porcupine client id. A client whose operation
// ended with an unknown outcome continues as a new process: the old one
// stays "in flight" until the end of the history.
func (r *Recorder) NewProcess() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.nextPID
	r.nextPID++
	return id
}

// Add records an operation sent to node. An Unknown outcome's return
// time is replaced by the end of the history when the history is read.
func (r *Recorder) Add(pid int, node string, in Input, out Output, call, ret int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: pid, Input: in, Output: out, Call: call, Return: ret, Metadata: node})
}

// Drop records a failed read, which tells nothing about the state and is
// left out of the check.
func (r *Recorder) Drop(pid int, node string, in Input, call, ret int64, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropped = append(r.dropped, dropped{pid: pid, node: node, in: in, call: call, ret: ret, why: why})
}

// Fault records a window [start, end] during which a fault was active.
func (r *Recorder) Fault(start, end int64, desc string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, porcupine.Annotation{
		Tag: "faults", Start: start, End: end, Description: desc,
		BackgroundColor: "#f7c6c6",
	})
}

// Event records an instant (a heal check, a restart).
func (r *Recorder) Event(at int64, desc string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, porcupine.Annotation{Tag: "harness", Start: at, End: at, Description: desc})
}

// Operations returns the history, operations of unknown outcome ending
// after every other event (they may take effect at any time after their
// call, or never).
func (r *Recorder) Operations() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	var end int64
	for _, op := range r.ops {
		end = max(end, op.Call, op.Return)
	}
	for _, n := range r.notes {
		end = max(end, n.End)
	}
	out := slices.Clone(r.ops)
	for i := range out {
		if out[i].Output.(Output).Outcome == Unknown {
			out[i].Return = end + 1
		}
	}
	return out
}

// Annotations returns the recorded fault windows and events.
func (r *Recorder) Annotations() []porcupine.Annotation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.notes)
}

// Stats counts the operations by kind and outcome.
func (r *Recorder) Stats() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	counts := map[string]int{}
	for _, op := range r.ops {
		counts[fmt.Sprintf("%s:%s", op.Input.(Input).Kind, op.Output.(Output).Outcome)]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := fmt.Sprintf("%d ops (+%d failed reads)", len(r.ops), len(r.dropped))
	for _, k := range keys {
		s += fmt.Sprintf(" %s=%d", k, counts[k])
	}
	return s
}

// CheckResult is the outcome of checking a history.
type CheckResult struct {
	Result porcupine.CheckResult
	// Info is porcupine's linearization data, for the visualization.
	Info porcupine.LinearizationInfo
	Ops  []porcupine.Operation
	Took time.Duration
}

// Check runs porcupine on the history with a timeout. Ok is the only
// passing result: Illegal is a linearizability violation, Unknown means
// the checker ran out of time.
func (r *Recorder) Check(timeout time.Duration) CheckResult {
	ops := r.Operations()
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(RegisterModel, ops, timeout)
	return CheckResult{Result: res, Info: info, Ops: ops, Took: time.Since(start)}
}

// WriteVisualization writes porcupine's HTML view of the check, with the
// fault windows as annotations.
func (r *Recorder) WriteVisualization(cr CheckResult, path string) error {
	info := cr.Info
	info.AddAnnotations(r.Annotations())
	return porcupine.VisualizePath(RegisterModel, info, path)
}

// WriteHistory writes the history as text, one operation per line in call
// order: call and return times (ms), process, operation and outcome; then
// the fault windows.
func (r *Recorder) WriteHistory(path string) error {
	type line struct {
		call int64
		text string
	}
	var lines []line
	ms := func(ns int64) string { return fmt.Sprintf("%10.3f", float64(ns)/1e6) }
	for _, op := range r.Operations() {
		lines = append(lines, line{op.Call, fmt.Sprintf("%s %s p%-4d %-3v %s", ms(op.Call), ms(op.Return), op.ClientId, op.Metadata, describeOp(op.Input.(Input), op.Output.(Output)))})
	}
	r.mu.Lock()
	for _, d := range r.dropped {
		lines = append(lines, line{d.call, fmt.Sprintf("%s %s p%-4d %-3s # failed, not checked: %s -> %s", ms(d.call), ms(d.ret), d.pid, d.node, describeOp(d.in, Output{Outcome: Unknown}), d.why)})
	}
	r.mu.Unlock()
	slices.SortStableFunc(lines, func(a, b line) int { return cmp.Compare(a.call, b.call) })
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "# call_ms return_ms process node operation -> outcome (unknown outcomes return at the end)")
	for _, l := range lines {
		fmt.Fprintln(w, l.text)
	}
	fmt.Fprintln(w, "# faults and harness events: start_ms end_ms description")
	for _, n := range r.Annotations() {
		fmt.Fprintf(w, "%s %s %s: %s\n", ms(n.Start), ms(n.End), n.Tag, n.Description)
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// Writes returns the history's writes (gets left out) for the watch
// check, in the order they were recorded.
func (r *Recorder) Writes() []SentWrite {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []SentWrite
	for _, op := range r.ops {
		in, o := op.Input.(Input), op.Output.(Output)
		w := SentWrite{Who: fmt.Sprintf("p%d via %v", op.ClientId, op.Metadata), Key: in.Key, Value: in.Value, Outcome: o.Outcome}
		switch in.Kind {
		case OpGet:
			continue
		case OpDelete:
			w.Kind = WriteDelete
			w.Index, w.Deleted = o.Index, o.Deleted
		default:
			w.Kind = WritePut
			w.Index, w.CreateIndex, w.Version = o.ModIndex, o.CreateIndex, o.Version
		}
		out = append(out, w)
	}
	return out
}
