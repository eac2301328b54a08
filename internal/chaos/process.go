//go:build unix

package chaos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one raftkv process in its own process group, its output appended
// to a log file. A goroutine waits for it; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu       sync.Mutex
	err      error // Wait's error, once done
	expected bool  // the harness killed it (or is about to)
}

// startProc starts bin with args, its stdout and stderr appended to logPath.
func startProc(bin string, args []string, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "=== chaos %s: start %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
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
