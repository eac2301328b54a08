package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

const healthSummary = `Check one node: exit 0 when GET /readyz (with --live: /livez) answers
200, 1 otherwise (not ready, no answer within --timeout, TLS refused), 2 on
a usage error. Only the node at --addr is asked, never another member.

/readyz answers 200 when the node can serve linearizable reads (it is in a
cluster with a leader it reaches and has applied what the leader
committed); /livez when the process serves HTTP. For a container
healthcheck in an image without a shell: raftkv health --addr 127.0.0.1:8001.`

// newHealthCommand defines the health command and its flags (the
// deployment files' test parses their healthcheck with it).
func newHealthCommand(stderr io.Writer) (c *command, live *bool) {
	c = newCommand("health", "", healthSummary, stderr).clientFlagsTimeout(2 * time.Second)
	live = c.fs.Bool("live", false, "check /livez (the process answers) instead of /readyz (it can serve linearizable reads)")
	return c, live
}

func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, live := newHealthCommand(stderr)
	if _, err := c.parse(args, 0, 0); err != nil {
		return err
	}
	tlsConf, err := c.tls.config()
	if err != nil {
		return err
	}
	endpoints, err := splitAddr(c.addr, tlsConf != nil)
	if err != nil {
		return err
	}
	if len(endpoints) != 1 {
		return usagef("health: --addr takes one endpoint, got %d", len(endpoints))
	}
	base, err := client.ParseEndpoint(endpoints[0])
	if err != nil {
		return usagef("--addr: %v", err)
	}
	path := "/readyz"
	if *live {
		path = "/livez"
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	// No proxy from the environment, no keep-alive: one request to this node.
	tr := &http.Transport{TLSClientConfig: tlsConf, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return usagef("--addr: %v", err)
	}
	// A node started with --acl-metrics asks its probes for a token too.
	token, err := tokenFlag(c.token)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", base+path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("%s: %d, reading the body: %w", base+path, resp.StatusCode, err)
	}
	text := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		var e kv.ErrorResponse
		if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			text = e.Error.Code + ": " + e.Error.Message
		}
		return errors.New(base + path + ": " + resp.Status + ": " + text)
	}
	_, err = fmt.Fprintln(stdout, text)
	return err
}
