package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// ServeNull answers every request on ln without doing any work, until ctx
// ends: a GET with valueSize bytes (the value a Generator writes), anything
// else with a put-sized JSON body, each after reading the request body. It
// is the ceiling the store's figures are measured against.
func ServeNull(ctx context.Context, ln net.Listener, valueSize int) error {
	value := benchValue(valueSize)
	ack := []byte(`{"key":"bench/00000000","create_index":1,"mod_index":1,"version":1}` + "\n")
	ackLen, valueLen := strconv.Itoa(len(ack)), strconv.Itoa(len(value))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hd := w.Header()
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			hd.Set("Content-Type", "application/octet-stream")
			hd.Set("Content-Length", valueLen)
			_, _ = w.Write(value)
			return
		}
		hd.Set("Content-Type", "application/json")
		hd.Set("Content-Length", ackLen)
		_, _ = w.Write(ack)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("stopping the server: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}
