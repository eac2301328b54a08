//go:build unix

package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/raftkv/raftkv/internal/netns"
)

// Hosts mode (Config.Hosts): every node in a network namespace of its own.
// See the package doc, "Hosts", and docs/chaos.md.

// netTimeout bounds one change to the network (a few `ip` commands).
const netTimeout = 20 * time.Second

// newHosts makes the network and a host per initial node.
func (c *Cluster) newHosts() error {
	if c.cfg.ProxyHTTP {
		return errors.New("chaos: Hosts and ProxyHTTP do not go together: in Hosts mode the network itself cuts the members' HTTP")
	}
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	nw, err := netns.New(ctx, netns.Config{Logf: c.cfg.Logf})
	if err != nil {
		return fmt.Errorf("chaos: the hosts' network: %w", err)
	}
	c.net, c.dial = nw, nw.DialContext
	for i := range c.cfg.Size {
		if _, err := c.addHost(ctx, fmt.Sprintf("n%d", i+1), false); err != nil {
			_ = nw.Close()
			return err
		}
	}
	return nil
}

// addHost makes id's namespace, directories and Node.
func (c *Cluster) addHost(ctx context.Context, id string, joiner bool) (*Node, error) {
	h, err := c.net.AddHost(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("chaos: host %s: %w", id, err)
	}
	nd := filepath.Join(c.cfg.Dir, id)
	if err := os.MkdirAll(filepath.Join(nd, "data"), 0o700); err != nil {
		return nil, err
	}
	addr := c.net.Addr(h.Name).String()
	n := &Node{
		ID:       id,
		HTTPAddr: addr + ":" + strconv.Itoa(hostHTTPPort),
		RaftAddr: addr + ":" + strconv.Itoa(hostRaftPort),
		DataDir:  filepath.Join(nd, "data"),
		LogPath:  filepath.Join(nd, "node.log"),
		joiner:   joiner,
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n, nil
}

// Hosts reports whether the cluster runs in Hosts mode.
func (c *Cluster) Hosts() bool { return c.net != nil }

// Network is the hosts' network (nil unless in Hosts mode).
func (c *Cluster) Network() *netns.Network { return c.net }

// ClientHTTP is an HTTP client for a client.Client that must reach the
// nodes (the client namespace's, in Hosts mode); nil on loopback, where
// the client's own will do.
func (c *Cluster) ClientHTTP() *http.Client {
	if c.net == nil {
		return nil
	}
	return &http.Client{Transport: &http.Transport{
		DialContext:         c.dial,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}}
}

// netDo applies a change to the network; a failure is logged and kept
// for NetworkErrors (the fault methods have no error to return it by).
func (c *Cluster) netDo(what string, f func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), netTimeout)
	defer cancel()
	if err := f(ctx); err != nil {
		c.cfg.Logf("network: %s FAILED: %v", what, err)
		c.mu.Lock()
		c.netErrs = append(c.netErrs, fmt.Sprintf("%s: %v", what, err))
		c.mu.Unlock()
		return
	}
	c.cfg.Logf("network: %s", what)
}

// NetworkErrors lists the changes to the network that failed (Hosts mode).
func (c *Cluster) NetworkErrors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.netErrs)
}

// Restore lets packets from `from` reach `to` again, leaving every other
// cut in place (Hosts mode only: a proxy cuts whole connections).
func (c *Cluster) Restore(from, to string) error {
	if c.net == nil {
		return errors.New("chaos: Restore needs Hosts mode")
	}
	c.netDo(fmt.Sprintf("restore packets %s -> %s", from, to), func(ctx context.Context) error { return c.net.Restore(ctx, from, to) })
	return nil
}

// AddNode makes a new host id with an empty data dir, to be started by
// StartNode: it joins the running cluster through --join (every other
// node's API address) and never bootstraps (Hosts mode only). An id
// used before, forgotten or not, is refused.
func (c *Cluster) AddNode(ctx context.Context, id string) error {
	if c.net == nil {
		return errors.New("chaos: AddNode needs Hosts mode")
	}
	if c.Known(id) {
		return fmt.Errorf("chaos: node %s exists", id)
	}
	_, err := c.addHost(ctx, id, true)
	return err
}

// Known reports whether id names a node of the cluster, running or not,
// forgotten or not.
func (c *Cluster) Known(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(slices.Concat(c.nodes, c.gone), func(n *Node) bool { return n.ID == id })
}

// ForgetNode SIGKILLs the node, deletes its host and forgets it: IDs and
// the checks no longer name it. Remove it from the raft configuration
// first (RemoveNode) when the cluster must not count it (Hosts mode
// only).
func (c *Cluster) ForgetNode(ctx context.Context, id string) error {
	if c.net == nil {
		return errors.New("chaos: ForgetNode needs Hosts mode")
	}
	if err := c.Kill(id); err != nil {
		return err
	}
	c.mu.Lock()
	if i := slices.IndexFunc(c.nodes, func(n *Node) bool { return n.ID == id }); i >= 0 {
		c.gone = append(c.gone, c.nodes[i])
		c.nodes = slices.Delete(c.nodes, i, i+1)
	}
	c.mu.Unlock()
	return c.net.RemoveHost(ctx, id)
}

// Move gives a stopped node's host a new address: the next start serves
// and advertises it (HTTP and raft), and the other nodes' --join names it
// when they start next (Hosts mode only).
func (c *Cluster) Move(ctx context.Context, id string) (string, error) {
	if c.net == nil {
		return "", errors.New("chaos: Move needs Hosts mode")
	}
	if c.Running(id) {
		return "", fmt.Errorf("chaos: move %s: still running", id)
	}
	addr, err := c.net.Readdress(ctx, id)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	n := c.nodeLocked(id)
	n.HTTPAddr = addr.String() + ":" + strconv.Itoa(hostHTTPPort)
	n.RaftAddr = addr.String() + ":" + strconv.Itoa(hostRaftPort)
	c.mu.Unlock()
	c.cfg.Logf("moved %s to %s", id, addr)
	return addr.String(), nil
}
