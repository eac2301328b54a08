package httpapi

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Handler. Backend is required.
type Config struct {
	Backend Backend
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Metrics, if set, records requests and serves /metrics from Gatherer.
	Metrics *Metrics
	// Gatherer is what /metrics exposes; nil serves an empty page.
	Gatherer prometheus.Gatherer
	// MaxValueSize limits PUT bodies (default kv.DefaultMaxValueSize).
	MaxValueSize int64
	// Peers is the client for requests to other members: here, relaying
	// membership calls to the leader. nil builds one with NewPeerClient.
	Peers *http.Client
	// ReadyTimeout bounds /readyz's check (default 2s).
	ReadyTimeout time.Duration
	// Pprof mounts net/http/pprof under /debug/pprof/ (off by default: it
	// exposes internals and can be made to burn CPU).
	Pprof bool
	// Scheme is how members' API addresses are reached ("http", the
	// default, or "https" when the cluster runs TLS): relays to the leader
	// and ?redirect's Location use it.
	Scheme string
	// IsMember, if set (TLS on), reports whether a request's verified peer
	// certificate is a member's. The internal endpoints (ReadIndexPath,
	// LeaderCheckPath, ApplyPath) and every request that says it was
	// forwarded by a member (HeaderForwardedBy) then require it: others
	// get 403 permission_denied. Nil (plaintext) lets every request in.
	IsMember func(*tls.ConnectionState) bool
	// ProtocolVersion is the member protocol this node speaks (0:
	// kv.ProtocolVersion). A request stating a version it cannot work with
	// (kv.ProtocolCompatible) is refused: 409 incompatible_version.
	ProtocolVersion int
	// ACL, if set, turns access control on (acl.go): every route but the
	// probes asks for a token, and the internal ones for a member (its
	// certificate, or the members' secret). Nil serves every request.
	ACL Authorizer
	// ACLMetrics makes /metrics, /livez and /readyz ask for a token too
	// (with ACL set).
	ACLMetrics bool
}

// Handler serves the API. Build it with New.
type Handler struct {
	b          Backend
	log        *slog.Logger
	m          *Metrics
	maxVal     int64
	peers      *http.Client
	readyTO    time.Duration
	scheme     string
	isMember   func(*tls.ConnectionState) bool
	protocol   int
	acl        Authorizer
	aclMetrics bool
	routes     []route
	mux        *http.ServeMux
	kv         http.Handler
	watch      http.Handler
	notFound   http.Handler
	metrics    http.Handler
}

// Header names of the contract.
const (
	HeaderIndex       = "X-Raft-Index"
	HeaderNode        = "X-Raft-Node"
	HeaderForwardedBy = "X-Raft-Forwarded-By"
	HeaderLastContact = "X-Last-Contact"
	// HeaderIdempotencyKey makes a write idempotent (see kv.Idempotent).
	HeaderIdempotencyKey = "Idempotency-Key"
)
