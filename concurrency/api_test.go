package concurrency_test

import (
	"github.com/raftkv/raftkv"
	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/concurrency"
)

// The remote client and the embedded node are both an API.
var (
	_ concurrency.API = (*client.Client)(nil)
	_ concurrency.API = (*raftkv.Node)(nil)
)
