package raftkv

import (
	"context"
	"fmt"

	"github.com/raftkv/raftkv/httpapi"
	"github.com/raftkv/raftkv/kv"
)

// Watch is a temporary placeholder so that the root package builds on the
// httpapi branch before the node serves watches; it is deleted when the
// branch merges the node's real Watch.
func (b backend) Watch(context.Context, kv.WatchOptions) (httpapi.Watcher, error) {
	return nil, fmt.Errorf("%w: watches are not served yet", kv.ErrClosed)
}
