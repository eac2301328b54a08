package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/concurrency"
	"github.com/raftkv/raftkv/kv"
)

const lockSummary = `Acquires lock NAME (waiting behind its holders, first come, first served),
runs COMMAND with RAFTKV_LOCK_TOKEN (the lock's fencing token: pass it to
writes as ?lock=NAME&token=T, or raftkv put --lock NAME --fence-token T)
and RAFTKV_LOCK_KEY (the lock's key) in its environment while keeping the
lock's lease alive, then releases the lock and revokes the lease. Exits
with COMMAND's status.

When the lease is lost while COMMAND runs (no keepalive acknowledged within
--ttl: the cluster may give the lock to another), COMMAND gets SIGTERM and
raftkv exits 1, saying so. Ctrl-C also sends COMMAND SIGTERM, then releases
the lock. Put -- before COMMAND when it takes flags.`

// releaseTimeout bounds the release of a lock or a candidacy, and the
// revoke of its lease, after the command or the wait ended.
const releaseTimeout = 10 * time.Second

// termGrace is how long a command has to exit after SIGTERM before it is
// killed.
const termGrace = 10 * time.Second

func runLock(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newCommand("lock", "NAME [--] COMMAND [ARG...]", lockSummary, stderr).clientFlagsTimeout(0)
	ttl := c.fs.Duration("ttl", 10*time.Second, "TTL of the lease the lock hangs on")
	wait := c.fs.Duration("wait", 0, "give up when the lock is not acquired within this (0: wait until Ctrl-C)")
	pos, err := c.parseCommand(args)
	if err != nil {
		return err
	}
	if err := lockFlags(pos[0], *ttl, *wait); err != nil {
		return err
	}
	name, argv := pos[0], pos[1:]
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		s, err := concurrency.NewSession(ctx, cl, *ttl)
		if err != nil {
			return err
		}
		defer closeSession(ctx, s, stderr)
		m := concurrency.NewMutex(s, name)
		lctx, cancel := ctx, context.CancelFunc(func() {})
		if *wait > 0 {
			lctx, cancel = context.WithTimeout(ctx, *wait)
		}
		err = m.Lock(lctx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("interrupted before lock %q was acquired", name)
		case err != nil && (errors.Is(err, kv.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)):
			return fmt.Errorf("lock %q not acquired within --wait %s: %w", name, *wait, err)
		case err != nil:
			return err
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
			defer cancel()
			if err := m.Unlock(rctx); err != nil && !errors.Is(err, kv.ErrPreconditionFailed) {
				fmt.Fprintf(stderr, "raftkv: %v\n", err)
			}
		}()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
		cmd.Env = append(os.Environ(),
			fmt.Sprintf("RAFTKV_LOCK_TOKEN=%d", m.Token()),
			"RAFTKV_LOCK_KEY="+string(m.Key()))
		return runHeld(ctx, cmd, s, fmt.Sprintf("lock %q", name))
	})
}

// parseCommand parses "[flags] NAME [flags] [--] COMMAND [ARG...]": the
// command starts at the first argument after NAME that is not a flag, or
// after "--", and its own flags are its own. It returns NAME, COMMAND
// and its arguments.
func (c *command) parseCommand(args []string) ([]string, error) {
	var pos []string
	for range 2 {
		if err := c.fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			return nil, err
		} else if err != nil {
			return nil, &usageError{err: err, shown: true}
		}
		args = c.fs.Args()
		if len(pos) == 0 && len(args) > 0 {
			pos, args = append(pos, args[0]), args[1:]
		}
	}
	if len(pos) == 0 || len(args) == 0 {
		return nil, usagef("%s: wrong number of arguments; usage: %s", c.fs.Name(), c.synopsis)
	}
	return append(pos, args...), nil
}

// lockFlags checks the arguments lock and elect share.
func lockFlags(name string, ttl, wait time.Duration) error {
	switch {
	case kv.ValidateLockName(name) != nil:
		return usagef("%v", kv.ValidateLockName(name))
	case ttl <= 0:
		return usagef("--ttl must be positive")
	case wait < 0:
		return usagef("--wait must not be negative")
	}
	return nil
}

// runHeld runs cmd while s lives: it returns cmd's exit status (an
// *exitStatus when not 0); when s ends first it stops cmd (SIGTERM, then
// SIGKILL after termGrace) and fails, naming what was lost; when ctx ends
// (Ctrl-C) it stops cmd the same way and returns its status.
func runHeld(ctx context.Context, cmd *exec.Cmd, s *concurrency.Session, what string) error {
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s held, but the command did not start: %w", what, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return commandStatus(err)
	case <-s.Done():
		_ = stop(cmd, exited) // its status says nothing more than the lost lease
		return fmt.Errorf("%s lost while the command ran (%v): sent it SIGTERM", what, s.Err())
	case <-ctx.Done():
		return commandStatus(stop(cmd, exited))
	}
}

// stop ends a running command: SIGTERM, then SIGKILL after termGrace.
// It returns the command's Wait error.
func stop(cmd *exec.Cmd, exited <-chan error) error {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		_ = cmd.Process.Kill() // no SIGTERM on this system
	}
	t := time.NewTimer(termGrace)
	defer t.Stop()
	select {
	case err := <-exited:
		return err
	case <-t.C:
		_ = cmd.Process.Kill()
		return <-exited
	}
}

// commandStatus turns a command's Wait error into raftkv's result: nil
// for status 0, an *exitStatus with its status (128 + the signal when a
// signal ended it), or the error when it could not be waited for.
func commandStatus(err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	code := ee.ExitCode()
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	if code <= 0 {
		code = 1
	}
	return &exitStatus{code: code}
}

// exitStatus is an exit status raftkv passes on (a command's under lock):
// main exits with it and prints nothing.
type exitStatus struct{ code int }

func (e *exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// closeSession revokes s's lease, bounded by releaseTimeout even after
// Ctrl-C.
func closeSession(ctx context.Context, s *concurrency.Session, stderr io.Writer) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := s.Close(rctx); err != nil {
		fmt.Fprintf(stderr, "raftkv: %v\n", err)
	}
}

const electSummary = `Campaigns in election NAME with VALUE: waits until elected (first come, first
served), prints "elected NAME (token T)", and leads while keeping its lease
alive until interrupted (Ctrl-C); then resigns and revokes the lease. Exits 1
if the lease is lost meanwhile (another may lead then).

With --observe NAME it prints the leader at once and then each change, until
interrupted: "leader VALUE (token T)", or "no leader".`

func runElect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("elect", "NAME VALUE | --observe NAME", electSummary, stderr).clientFlagsTimeout(0)
	ttl := c.fs.Duration("ttl", 10*time.Second, "TTL of the lease the candidacy hangs on")
	observe := c.fs.Bool("observe", false, "print the leader and each change of leader instead of campaigning")
	pos, err := c.parse(args, 1, 2)
	if err != nil {
		return err
	}
	switch {
	case *observe && len(pos) != 1:
		return usagef("elect --observe takes NAME only")
	case !*observe && len(pos) != 2:
		return usagef("elect: wrong number of arguments; usage: %s", c.synopsis)
	}
	if err := lockFlags(pos[0], *ttl, 0); err != nil {
		return err
	}
	name := pos[0]
	if *observe {
		return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
			for h, err := range cl.ObserveElection(ctx, name) {
				if err != nil {
					if ctx.Err() != nil {
						return nil // interrupted
					}
					return err
				}
				if err := printLeader(stdout, h); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		s, err := concurrency.NewSession(ctx, cl, *ttl)
		if err != nil {
			return err
		}
		defer closeSession(ctx, s, stderr)
		e := concurrency.NewElection(s, name)
		if err := e.Campaign(ctx, []byte(pos[1])); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted before election %q was won", name)
			}
			return err
		}
		fmt.Fprintf(stdout, "elected %s (token %d)\n", name, e.Token())
		select {
		case <-s.Done():
			return fmt.Errorf("leadership of election %q lost: %w", name, s.Err())
		case <-ctx.Done():
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		if err := e.Resign(rctx); err != nil && !errors.Is(err, kv.ErrPreconditionFailed) {
			return err
		}
		return nil
	})
}

// printLeader prints one observed leader.
func printLeader(w io.Writer, h kv.Hold) error {
	var err error
	if h.Token == 0 {
		_, err = fmt.Fprintln(w, "no leader")
	} else {
		_, err = fmt.Fprintf(w, "leader %s (token %d)\n", printable(h.Value), h.Token)
	}
	return err
}
