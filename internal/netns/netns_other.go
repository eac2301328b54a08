//go:build !linux

package netns

import (
	"fmt"
	"runtime"
)

func platformOK() error {
	return fmt.Errorf("%w: they are Linux only (this is %s)", ErrUnsupported, runtime.GOOS)
}

func inNamespace(string, func(func(uintptr) error) error) error { return platformOK() }
