//go:build unix

package chaos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// spawner starts processes from one OS thread that lives as long as the
// cluster. On Linux a node is started with Pdeathsig, which the kernel
// sends when the *thread* that forked it ends, not the process: started
// from an ordinary goroutine, a node would be killed whenever the runtime
// ended the thread it happened to fork from, and the runtime ends a thread
// when a goroutine locked to it exits (the hosts network's dials do just
// that; see internal/netns). The spawner's thread ends only with close,
// after the cluster killed its nodes (and if the test process dies, the
// nodes die with it, as Pdeathsig is meant for).
type spawner struct {
	reqs   chan func()
	closed chan struct{}
	once   sync.Once
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan func()), closed: make(chan struct{})}
	go func() { // owned by s: ends with close
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		for {
			select {
			case f := <-s.reqs:
				f()
			case <-s.closed:
				return
			}
		}
	}()
	return s
}

// start runs startProc on the spawner's thread.
func (s *spawner) start(argv []string, logPath string) (*proc, error) {
	var p *proc
	var err error
	done := make(chan struct{})
	select {
	case s.reqs <- func() {
		defer close(done)
		p, err = startProc(argv, logPath)
	}:
	case <-s.closed:
		return nil, errors.New("the cluster is closed")
	}
	<-done
	return p, err
}

func (s *spawner) close() { s.once.Do(func() { close(s.closed) }) }

// proc is one raftkv process in its own process group, its output appended
// to a log file. A goroutine waits for it; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu       sync.Mutex
	err      error // Wait's error, once done
	expected bool  // the harness killed it (or is about to)
}

// startProc starts argv (the program, then its arguments), its stdout and
// stderr appended to logPath. The program may be `ip netns exec`, which
// execs the node in its own place: the process is the node's.
func startProc(argv []string, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "=== chaos %s: start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { // owned by p: ends when the process exits
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		fmt.Fprintf(f, "=== chaos %s: exited: %v\n", time.Now().Format(time.RFC3339Nano), err)
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// signal sends sig to the process group.
func (p *proc) signal(sig syscall.Signal) error {
	err := syscall.Kill(-p.cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil // already gone
	}
	return err
}

// kill SIGKILLs the process group and waits for the exit.
func (p *proc) kill() error {
	p.mu.Lock()
	p.expected = true
	p.mu.Unlock()
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("pid %d did not exit 10s after SIGKILL", p.cmd.Process.Pid)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// unexpectedExit reports why the process ended if it ended on its own.
func (p *proc) unexpectedExit() (error, bool) {
	if !p.exited() {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.expected {
		return nil, false
	}
	if p.err == nil {
		return errors.New("exited with status 0"), true
	}
	return p.err, true
}
