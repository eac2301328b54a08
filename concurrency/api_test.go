package concurrency_test

import (
	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/concurrency"
)

// The remote client is an API.
var _ concurrency.API = (*client.Client)(nil)
