package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftkv/raftkv/kv"
)

// route is one entry of the handler's route table: a path and the methods
// served on it.
type route struct {
	// pattern is the path as the contract names it, and the route label of
	// the request metrics: a ServeMux pattern, except kvPattern and
	// watchPattern, which ServeHTTP routes by hand.
	pattern string
	methods methods
	// plain routes (net/http/pprof) are mounted as they are: no contract
	// headers, no request metrics, and every method goes to "*".
	plain bool
	// auth is what the route asks of a request before its handler runs
	// (acl.go); the zero value, authToken, asks for a valid token.
	auth authClass
}

const (
	kvPrefix     = "/v1/kv/"
	kvPattern    = kvPrefix + "{key}"
	watchPrefix  = "/v1/watch/"
	watchPattern = watchPrefix + "{key}"
)

// New builds the API handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Backend == nil {
		return nil, errors.New("httpapi: Backend is required")
	}
	h := &Handler{b: cfg.Backend, log: cfg.Logger, m: cfg.Metrics, maxVal: cfg.MaxValueSize, peers: cfg.Peers, readyTO: cfg.ReadyTimeout, scheme: cfg.Scheme, isMember: cfg.IsMember, acl: cfg.ACL, aclMetrics: cfg.ACLMetrics}
	if h.scheme == "" {
		h.scheme = "http"
	}
	h.protocol = cfg.ProtocolVersion
	if h.protocol == 0 {
		h.protocol = kv.ProtocolVersion
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxVal <= 0 {
		h.maxVal = kv.DefaultMaxValueSize
	}
	if h.peers == nil {
		h.peers = NewPeerClient()
	}
	if h.readyTO <= 0 {
		h.readyTO = 2 * time.Second
	}
	g := cfg.Gatherer
	if g == nil {
		g = prometheus.NewRegistry()
	}
	h.metrics = promhttp.HandlerFor(g, promhttp.HandlerOpts{})

	h.routes = h.routeTable(cfg.Pprof)
	h.mux = http.NewServeMux()
	for _, rt := range h.routes {
		serve := h.authorize(rt.auth, rt.methods.serve)
		switch {
		case rt.pattern == kvPattern:
			h.kv = h.instrument(rt.pattern, serve)
		case rt.pattern == watchPattern:
			h.watch = h.instrument(rt.pattern, serve)
		case rt.plain:
			h.mux.HandleFunc(rt.pattern, serve)
		default:
			h.mux.Handle(rt.pattern, h.instrument(rt.pattern, serve))
		}
	}
	h.notFound = h.instrument("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%w: no route for %s", kv.ErrNotFound, r.URL.Path))
	})
	h.mux.Handle("/", h.notFound)
	return h, nil
}

// routeTable lists every route the handler serves: the API of
// docs/http-api.md (TestDocsDescribeEveryRoute holds the two together),
// and with withPprof Go's profiles.
func (h *Handler) routeTable(withPprof bool) []route {
	rs := []route{
		{pattern: kvPattern, methods: methods{http.MethodGet: h.getKV, http.MethodPut: h.putKV, http.MethodDelete: h.deleteKV}},
		{pattern: watchPattern, methods: methods{http.MethodGet: h.getWatch}},
		{pattern: "/v1/txn", methods: methods{http.MethodPost: h.postTxn}},
		{pattern: "/v1/lease", methods: methods{http.MethodGet: h.listLeases, http.MethodPost: h.postLease}},
		{pattern: "/v1/lease/{id}", methods: methods{http.MethodGet: h.getLease, http.MethodDelete: h.revokeLease}},
		{pattern: "/v1/lease/{id}/keepalive", methods: methods{http.MethodPost: h.keepAlive}},
		// {name...}: an empty name or one with a '/' reaches the handler,
		// which refuses it (400), instead of matching no route.
		{pattern: "/v1/lock/{name...}", methods: methods{http.MethodPost: h.postLock, http.MethodDelete: h.deleteLock}},
		{pattern: "/v1/election/{name...}", methods: methods{http.MethodGet: h.getElection, http.MethodPost: h.postCampaign, http.MethodDelete: h.deleteCampaign}},
		{pattern: "/v1/cluster", methods: methods{http.MethodGet: jsonGET(h.getCluster)}},
		{pattern: "/v1/cluster/nodes", methods: methods{http.MethodPost: h.postNode}, auth: authAdminOrMember},
		{pattern: "/v1/cluster/nodes/{id}", methods: methods{http.MethodDelete: h.deleteNode}, auth: authAdmin},
		{pattern: "/v1/cluster/nodes/{id}/promote", methods: methods{http.MethodPost: h.promoteNode}, auth: authAdmin},
		{pattern: "/v1/cluster/transfer-leader", methods: methods{http.MethodPost: h.transferLeader}, auth: authAdmin},
		{pattern: "/v1/acl/tokens", methods: methods{http.MethodGet: jsonGET(h.getTokens), http.MethodPost: h.postToken}, auth: authAdmin},
		{pattern: "/v1/acl/tokens/{id}", methods: methods{http.MethodDelete: h.deleteToken}, auth: authAdmin},
		{pattern: "/v1/debug/hash", methods: methods{http.MethodGet: h.getDigest}, auth: authAdmin},
		{pattern: "/v1/snapshot", methods: methods{http.MethodGet: h.getSnapshot}, auth: authAdmin},
		{pattern: ReadIndexPath, methods: methods{http.MethodGet: jsonGET(h.getReadIndex)}, auth: authMember},
		{pattern: LeaderCheckPath, methods: methods{http.MethodGet: h.getLeaderCheck}, auth: authMember},
		{pattern: ApplyPath, methods: methods{http.MethodPost: h.postApply}, auth: authMember},
		{pattern: "/livez", methods: methods{http.MethodGet: h.livez}, auth: authProbe},
		{pattern: "/readyz", methods: methods{http.MethodGet: h.readyz}, auth: authProbe},
		{pattern: "/metrics", methods: methods{http.MethodGet: h.metrics.ServeHTTP}, auth: authProbe},
	}
	if withPprof {
		rs = append(rs,
			route{pattern: "/debug/pprof/", methods: methods{"*": pprof.Index}, plain: true, auth: authAdmin},
			route{pattern: "/debug/pprof/cmdline", methods: methods{"*": pprof.Cmdline}, plain: true, auth: authAdmin},
			route{pattern: "/debug/pprof/profile", methods: methods{"*": pprof.Profile}, plain: true, auth: authAdmin},
			route{pattern: "/debug/pprof/symbol", methods: methods{"*": pprof.Symbol}, plain: true, auth: authAdmin},
			route{pattern: "/debug/pprof/trace", methods: methods{"*": pprof.Trace}, plain: true, auth: authAdmin},
		)
	}
	return rs
}

// methods maps an HTTP method to its handler; "*" takes any method.
type methods map[string]http.HandlerFunc

func (ms methods) allow() string {
	var list []string
	for m := range ms {
		list = append(list, m)
	}
	slices.Sort(list)
	return strings.Join(list, ", ")
}

func (ms methods) serve(w http.ResponseWriter, r *http.Request) {
	f, ok := ms[r.Method]
	if !ok {
		f, ok = ms["*"]
	}
	if !ok {
		w.Header().Set("Allow", ms.allow())
		writeError(w, fmt.Errorf("%w: %s is not served on %s (allowed: %s)", kv.ErrMethodNotAllowed, r.Method, r.URL.Path, ms.allow()))
		return
	}
	f(w, r)
}

// ServeHTTP dispatches a request. /v1/kv/ and /v1/watch/ are routed here,
// not by the mux, so that keys keep every byte of their escaped path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.checkPeer(w, r) {
		return
	}
	switch p := r.URL.EscapedPath(); {
	case strings.HasPrefix(p, kvPrefix):
		h.kv.ServeHTTP(w, r)
		return
	case strings.HasPrefix(p, watchPrefix):
		h.watch.ServeHTTP(w, r)
		return
	}
	if p := r.URL.Path; !canonical(p) {
		// ServeMux would answer a non-canonical path ("/v1//cluster",
		// "/.") with a redirect, outside the contract: no route has one.
		h.notFound.ServeHTTP(w, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// canonical reports whether p is a path ServeMux serves as it is: clean,
// apart from one trailing slash ("//" is not: it cleans to "/").
func canonical(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	return c == p || c != "/" && c+"/" == p
}

// jsonGET serves a GET that takes no parameters and answers 200 with what
// get returns as JSON, or the error.
func jsonGET[T any](get func(r *http.Request) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := queryOf(r); err != nil {
			writeError(w, err)
			return
		}
		v, err := get(r)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}
