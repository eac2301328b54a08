package kv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestNewWriteOptions(t *testing.T) {
	tests := []struct {
		name string
		opts []WriteOption
		want WriteOptions
	}{
		{"none", nil, WriteOptions{}},
		{"nil option", []WriteOption{nil}, WriteOptions{}},
		{"if mod index", []WriteOption{IfModIndex(7)}, WriteOptions{Condition: Condition{IfModIndex: 7}}},
		{"if absent", []WriteOption{IfAbsent()}, WriteOptions{Condition: Condition{IfAbsent: true}}},
		{"condition replaces", []WriteOption{IfAbsent(), WithCondition(Condition{IfModIndex: 3})}, WriteOptions{Condition: Condition{IfModIndex: 3}}},
		{"idempotent", []WriteOption{Idempotent("k1")}, WriteOptions{IdempotencyKey: "k1"}},
		{"last key wins", []WriteOption{Idempotent("k1"), Idempotent("k2")}, WriteOptions{IdempotencyKey: "k2"}},
		{"opt out", []WriteOption{WithoutIdempotencyKey()}, WriteOptions{NoIdempotencyKey: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewWriteOptions(tt.opts...); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNotSent(t *testing.T) {
	// A port nobody listens on: the dial is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/v1/kv/a", nil)
	_, refused := http.DefaultClient.Do(req)
	if refused == nil {
		t.Fatal("request to a closed port succeeded")
	}

	// A server that takes the request and drops the connection unanswered.
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		c, err := srv.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 4096)
		_, _ = c.Read(buf)
		c.Close()
	}()
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, "http://"+srv.Addr().String()+"/v1/kv/a", nil)
	_, dropped := http.DefaultClient.Do(req)
	if dropped == nil {
		t.Fatal("request to a dropping server succeeded")
	}

	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"refused dial", refused, true},
		{"wrapped refused dial", fmt.Errorf("forward: %w", refused), true},
		{"dropped after sending", dropped, false},
		{"context", context.DeadlineExceeded, false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NotSent(tt.err); got != tt.want {
				t.Errorf("NotSent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if errors.Is(refused, ErrNoLeader) {
		t.Error("a transport error must not match a kv sentinel")
	}
}
