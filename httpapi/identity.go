package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/raftkv/raftkv/kv"
)

// Headers by which a member says who it is on every request to another
// member (and on its refusals): the identity of its cluster, once it knows
// it, and its protocol version (kv.ProtocolVersion).
const (
	HeaderClusterID = "X-Raft-Cluster-Id"
	HeaderProtocol  = "X-Raft-Protocol"
)

// checkPeer refuses a request from a member that cannot be one of this
// cluster's: one that states a protocol version this node cannot work
// with (409 incompatible_version), or a cluster identity other than this
// node's (409 wrong_cluster). A request that states neither (a client, an
// operator's curl, a member of a version before the check) passes, and so
// does any identity while this node has none yet (a new node, which learns
// it from the log or a snapshot). Every route is checked, so a member of
// another cluster is refused on the internal endpoints, joins, relays and
// surveys alike. Refusals are logged and carry this node's own identity
// headers, for the asker's log.
func (h *Handler) checkPeer(w http.ResponseWriter, r *http.Request) bool {
	theirVersion, theirCluster := r.Header.Get(HeaderProtocol), r.Header.Get(HeaderClusterID)
	if theirVersion == "" && theirCluster == "" {
		return true
	}
	ours := h.b.ClusterID()
	var err error
	if theirVersion != "" {
		v, perr := strconv.Atoi(theirVersion)
		if perr != nil || !kv.ProtocolCompatible(h.protocol, v) {
			err = fmt.Errorf("%w: %s speaks protocol version %q, %s speaks %d and works with %d to %d",
				kv.ErrIncompatibleVersion, asker(r), theirVersion, h.b.ID(), h.protocol, h.protocol-1, h.protocol+1)
		}
	}
	if err == nil && theirCluster != "" && ours != "" && theirCluster != ours {
		err = fmt.Errorf("%w: %s is a member of cluster %s, %s of cluster %s",
			kv.ErrWrongCluster, asker(r), theirCluster, h.b.ID(), ours)
	}
	if err == nil {
		return true
	}
	h.log.Warn("refused a request from a member that is not one of this cluster's",
		"path", r.URL.Path, "remote", r.RemoteAddr, "forwarded_by", r.Header.Get(HeaderForwardedBy),
		"their_cluster", theirCluster, "their_protocol", theirVersion, "cluster", ours, "protocol", h.protocol, "err", err)
	setIdentity(w.Header(), ours, h.protocol)
	writeError(w, err)
	return false
}

// asker names the sender of r for a refusal's message.
func asker(r *http.Request) string {
	if by := r.Header.Get(HeaderForwardedBy); by != "" {
		return "member " + by + " at " + r.RemoteAddr
	}
	return "the member at " + r.RemoteAddr
}

func setIdentity(h http.Header, clusterID string, version int) {
	h.Set(HeaderProtocol, strconv.Itoa(version))
	if clusterID != "" {
		h.Set(HeaderClusterID, clusterID)
	}
}

// Identity is what a member states about itself on every request it sends
// to another member (IdentifyPeerClient).
type Identity struct {
	// ClusterID returns the cluster's identity as this member knows it
	// ("" while it knows none: the header is then left out).
	ClusterID func() string
	// ProtocolVersion is the member's protocol version (0:
	// kv.ProtocolVersion).
	ProtocolVersion int
	// Logger receives a line for each refusal another member answers
	// (409 wrong_cluster or incompatible_version); nil discards.
	Logger *slog.Logger
}

// IdentifyPeerClient makes every request c sends carry the member's
// identity headers (HeaderClusterID, HeaderProtocol), unless the request
// already has them (a relayed request keeps its asker's), and log the
// refusals it gets back. c is a peer client (NewPeerClient); it is changed
// in place.
func IdentifyPeerClient(c *http.Client, id Identity) {
	if id.ProtocolVersion == 0 {
		id.ProtocolVersion = kv.ProtocolVersion
	}
	if id.Logger == nil {
		id.Logger = slog.New(slog.DiscardHandler)
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = &identityTransport{base: base, id: id, version: strconv.Itoa(id.ProtocolVersion)}
}

type identityTransport struct {
	base    http.RoundTripper
	id      Identity
	version string
}

func (t *identityTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	cluster := t.id.ClusterID()
	if r.Header.Get(HeaderProtocol) == "" || cluster != "" && r.Header.Get(HeaderClusterID) == "" {
		r = r.Clone(r.Context()) // a RoundTripper must not change its request
		if r.Header.Get(HeaderProtocol) == "" {
			r.Header.Set(HeaderProtocol, t.version)
		}
		if cluster != "" && r.Header.Get(HeaderClusterID) == "" {
			r.Header.Set(HeaderClusterID, cluster)
		}
	}
	resp, err := t.base.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusConflict {
		t.id.Logger.Warn("a member refused this one: it is of another cluster or speaks an incompatible protocol version",
			"url", r.URL.Redacted(), "their_cluster", resp.Header.Get(HeaderClusterID), "their_protocol", resp.Header.Get(HeaderProtocol),
			"cluster", cluster, "protocol", t.version)
	}
	return resp, err
}

// CloseIdleConnections closes the base transport's idle connections
// (http.Client.CloseIdleConnections reaches them through this method).
func (t *identityTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
