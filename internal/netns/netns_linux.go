//go:build linux

package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

func platformOK() error { return nil }

// inNamespace runs f on an OS thread moved into the named namespace. The
// thread is never handed back to the runtime (the goroutine exits locked
// to it, so the runtime ends the thread): no other goroutine ever runs in
// that namespace by accident. f gets check, which verifies that a socket
// (by its descriptor) belongs to the namespace.
func inNamespace(ns string, f func(check func(fd uintptr) error) error) error {
	path := filepath.Join(nsDir, ns)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		fd, err := os.Open(path)
		if err != nil {
			done <- fmt.Errorf("netns: %w", err)
			return
		}
		defer func() { _ = fd.Close() }()
		var want unix.Stat_t
		if err := unix.Fstat(int(fd.Fd()), &want); err != nil {
			done <- fmt.Errorf("netns: stat %s: %w", path, err)
			return
		}
		if err := unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("netns: entering %s: %w", ns, err)
			return
		}
		check := func(sock uintptr) error {
			nsfd, err := unix.IoctlRetInt(int(sock), unix.SIOCGSKNS)
			if err != nil {
				return fmt.Errorf("netns: the socket's namespace: %w", err)
			}
			defer func() { _ = unix.Close(nsfd) }()
			var got unix.Stat_t
			if err := unix.Fstat(nsfd, &got); err != nil {
				return fmt.Errorf("netns: the socket's namespace: %w", err)
			}
			if got.Dev != want.Dev || got.Ino != want.Ino {
				return fmt.Errorf("netns: a socket meant for %s was made in another namespace; not connecting", ns)
			}
			return nil
		}
		done <- f(check)
	}()
	return <-done
}
