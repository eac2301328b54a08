package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

// The tests of the lease, lock and election routes and of ?lease, ?ttl and
// ?lock&token on the kv routes, against a Backend that records what it was
// asked and answers from the case. The leases, locks and elections
// themselves are the node's; the root package's tests drive them end to
// end on a real cluster.

// leaseBackend records the last call and its arguments, and answers each
// with err or a fixed result.
type leaseBackend struct {
	Backend
	err error

	mu    sync.Mutex
	calls []string
	got   leaseCall
}

// leaseCall is what the last call was given.
type leaseCall struct {
	TTL   time.Duration
	ID    kv.LeaseID
	Name  string
	Token uint64
	Value []byte
	Lock  kv.LockOptions
	Write kv.WriteOptions
	Key   string
	Txn   kv.Txn
}

func (b *leaseBackend) record(call string, c leaseCall) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, call)
	b.got = c
}

func (*leaseBackend) ID() string                 { return "n7" }
func (*leaseBackend) IsLeader() bool             { return true }
func (*leaseBackend) AppliedIndex() uint64       { return 99 }
func (*leaseBackend) LastContact() time.Duration { return 0 }

func (b *leaseBackend) Put(_ context.Context, key, _ []byte, opts kv.WriteOptions) (kv.PutResult, error) {
	b.record("Put", leaseCall{Key: string(key), Write: opts})
	res := kv.PutResult{Key: key, CreateIndex: 150, ModIndex: 150, Version: 1, Lease: opts.Lease}
	if opts.TTL != 0 {
		res.Lease = 8
	}
	return res, b.err
}

func (b *leaseBackend) Delete(_ context.Context, key []byte, opts kv.WriteOptions) (kv.DeleteResult, error) {
	b.record("Delete", leaseCall{Key: string(key), Write: opts})
	return kv.DeleteResult{Deleted: 1, Index: 151}, b.err
}

func (b *leaseBackend) DeletePrefix(_ context.Context, key []byte, opts kv.WriteOptions) (kv.DeleteResult, error) {
	b.record("DeletePrefix", leaseCall{Key: string(key), Write: opts})
	return kv.DeleteResult{Deleted: 1, Index: 151}, b.err
}

func (b *leaseBackend) Txn(_ context.Context, t kv.Txn, opts kv.WriteOptions) (kv.TxnResult, error) {
	b.record("Txn", leaseCall{Txn: t, Write: opts})
	return kv.TxnResult{Succeeded: true, Index: 152}, b.err
}

func (b *leaseBackend) Grant(_ context.Context, ttl time.Duration) (kv.Lease, error) {
	b.record("Grant", leaseCall{TTL: ttl})
	return kv.Lease{ID: 7, TTL: ttl, Index: 120}, b.err
}

func (b *leaseBackend) KeepAliveOnce(_ context.Context, id kv.LeaseID) (kv.Lease, error) {
	b.record("KeepAliveOnce", leaseCall{ID: id})
	return kv.Lease{ID: id, TTL: 10 * time.Second, Index: 131}, b.err
}

func (b *leaseBackend) Revoke(_ context.Context, id kv.LeaseID) (kv.RevokeResult, error) {
	b.record("Revoke", leaseCall{ID: id})
	return kv.RevokeResult{ID: id, Deleted: 2, Index: 140}, b.err
}

func (b *leaseBackend) LeaseInfo(_ context.Context, id kv.LeaseID) (kv.Lease, error) {
	b.record("LeaseInfo", leaseCall{ID: id})
	return kv.Lease{ID: id, TTL: 10 * time.Second, Remaining: 7200 * time.Millisecond, Keys: [][]byte{[]byte("svc/a"), {0xff}}, Index: 135}, b.err
}

func (b *leaseBackend) Leases(context.Context) ([]kv.Lease, error) {
	b.record("Leases", leaseCall{})
	return []kv.Lease{
		{ID: 7, TTL: 10 * time.Second, Remaining: 7200 * time.Millisecond, Index: 135},
		{ID: 9, TTL: time.Minute, Remaining: 58900 * time.Millisecond, Index: 135},
	}, b.err
}

func (b *leaseBackend) Lock(_ context.Context, name string, opts kv.LockOptions) (kv.Hold, error) {
	b.record("Lock", leaseCall{Name: name, Lock: opts})
	return kv.Hold{Name: name, Key: kv.LockQueue(name), Token: 212, Lease: 8, OwnLease: opts.TTL != 0, Index: 212}, b.err
}

func (b *leaseBackend) Unlock(_ context.Context, name string, token uint64) (uint64, error) {
	b.record("Unlock", leaseCall{Name: name, Token: token})
	return 230, b.err
}

func (b *leaseBackend) Campaign(_ context.Context, name string, value []byte, opts kv.LockOptions) (kv.Hold, error) {
	b.record("Campaign", leaseCall{Name: name, Value: value, Lock: opts})
	return kv.Hold{Name: name, Key: kv.ElectionQueue(name), Token: 240, Lease: 9, Value: value, Index: 240}, b.err
}

func (b *leaseBackend) Resign(_ context.Context, name string, token uint64) (uint64, error) {
	b.record("Resign", leaseCall{Name: name, Token: token})
	return 250, b.err
}

func (b *leaseBackend) ElectionLeader(_ context.Context, name string) (kv.Hold, error) {
	b.record("ElectionLeader", leaseCall{Name: name})
	return kv.Hold{Name: name, Key: []byte("_raftkv/election/s/9"), Token: 240, Lease: 9, Value: []byte("n1"), Index: 245}, b.err
}

// The table: each case sends one request to a fresh handler whose Backend
// answers with err, and checks the status, the JSON error code or a part
// of the body, X-Raft-Index, and which call the Backend got with what.
func TestLeaseLockRoutes(t *testing.T) {
	const big = 5 << 10
	type tc struct {
		name         string
		method, path string
		body         string
		err          error  // the Backend's answer
		status       int    // want
		code         string // the error's code, for status ≥ 400
		body200      string // a part of the 200's body
		index        string // X-Raft-Index, when set
		call         string // the Backend call, "" for none
		got          *leaseCall
		allow        string // Allow, for 405
	}
	bad := func(name, method, path, body string) tc {
		return tc{name: name, method: method, path: path, body: body, status: 400, code: "bad_request"}
	}
	tests := []tc{
		// Grant.
		{name: "grant", method: "POST", path: "/v1/lease", body: `{"ttl":"10s"}`, status: 200,
			body200: `{"id":"7","ttl":"10s","index":120}`, index: "120", call: "Grant", got: &leaseCall{TTL: 10 * time.Second}},
		{name: "grant seconds", method: "POST", path: "/v1/lease", body: `{"ttl":2.5}`, status: 200,
			body200: `"ttl":"2.5s"`, call: "Grant", got: &leaseCall{TTL: 2500 * time.Millisecond}},
		{name: "grant below the node's bound", method: "POST", path: "/v1/lease", body: `{"ttl":"1s"}`,
			err: fmt.Errorf("%w: ttl 1s is below the minimum of 2s", kv.ErrBadRequest), status: 400, code: "bad_request", call: "Grant"},
		{name: "grant no leader", method: "POST", path: "/v1/lease", body: `{"ttl":"10s"}`, err: kv.ErrNoLeader, status: 503, code: "no_leader", call: "Grant"},
		bad("ttl missing", "POST", "/v1/lease", `{}`),
		bad("ttl null", "POST", "/v1/lease", `{"ttl":null}`),
		bad("no body", "POST", "/v1/lease", ``),
		bad("ttl negative", "POST", "/v1/lease", `{"ttl":"-5s"}`),
		bad("ttl negative seconds", "POST", "/v1/lease", `{"ttl":-5}`),
		bad("ttl zero", "POST", "/v1/lease", `{"ttl":"0s"}`),
		bad("ttl unparseable", "POST", "/v1/lease", `{"ttl":"ten"}`),
		bad("ttl without unit", "POST", "/v1/lease", `{"ttl":"10"}`),
		bad("ttl too long", "POST", "/v1/lease", `{"ttl":"169h"}`),
		bad("ttl huge number", "POST", "/v1/lease", `{"ttl":1e300}`),
		bad("ttl finer than a millisecond", "POST", "/v1/lease", `{"ttl":"2000001us"}`),
		bad("ttl of the wrong type", "POST", "/v1/lease", `{"ttl":true}`),
		bad("unknown field", "POST", "/v1/lease", `{"ttl":"10s","id":"3"}`),
		bad("trailing data", "POST", "/v1/lease", `{"ttl":"10s"}{}`),
		bad("not an object", "POST", "/v1/lease", `[`),
		bad("ttl as a parameter", "POST", "/v1/lease?ttl=10s", `{"ttl":"10s"}`),
		{name: "grant body too large", method: "POST", path: "/v1/lease", body: `{"ttl":"10s"` + strings.Repeat(" ", big) + `}`, status: 413, code: "too_large"},
		{name: "lease wrong method", method: "PUT", path: "/v1/lease", status: 405, code: "method_not_allowed", allow: "GET, POST"},

		// List.
		{name: "list", method: "GET", path: "/v1/lease", status: 200, index: "135", call: "Leases",
			body200: `{"leases":[{"id":"7","ttl":"10s","remaining":"7.2s"},{"id":"9","ttl":"1m0s","remaining":"58.9s"}],"index":135}`},
		bad("list with a parameter", "GET", "/v1/lease?prefix", ""),

		// Keepalive.
		{name: "keepalive", method: "POST", path: "/v1/lease/7/keepalive", status: 200, body200: `{"id":"7","ttl":"10s","index":131}`,
			index: "131", call: "KeepAliveOnce", got: &leaseCall{ID: 7}},
		{name: "keepalive of a revoked lease", method: "POST", path: "/v1/lease/7/keepalive", err: fmt.Errorf("keepalive: %w", kv.ErrLeaseNotFound),
			status: 404, code: "lease_not_found", call: "KeepAliveOnce"},
		bad("keepalive with a body", "POST", "/v1/lease/7/keepalive", `{"ttl":"10s"}`),
		bad("keepalive of id abc", "POST", "/v1/lease/abc/keepalive", ""),
		bad("keepalive of id 0", "POST", "/v1/lease/0/keepalive", ""),
		bad("keepalive of id -1", "POST", "/v1/lease/-1/keepalive", ""),
		bad("keepalive of id +7", "POST", "/v1/lease/+7/keepalive", ""),
		bad("keepalive of an id over 64 bits", "POST", "/v1/lease/18446744073709551616/keepalive", ""),
		bad("keepalive with a parameter", "POST", "/v1/lease/7/keepalive?ttl=1s", ""),
		{name: "keepalive wrong method", method: "GET", path: "/v1/lease/7/keepalive", status: 405, code: "method_not_allowed", allow: "POST"},

		// Revoke and describe.
		{name: "revoke", method: "DELETE", path: "/v1/lease/7", status: 200, body200: `{"id":"7","deleted":2,"index":140}`,
			index: "140", call: "Revoke", got: &leaseCall{ID: 7}},
		{name: "revoke unknown", method: "DELETE", path: "/v1/lease/7", err: kv.ErrLeaseNotFound, status: 404, code: "lease_not_found", call: "Revoke"},
		bad("revoke id abc", "DELETE", "/v1/lease/abc", ""),
		{name: "describe", method: "GET", path: "/v1/lease/18446744073709551615", status: 200, index: "135", call: "LeaseInfo",
			got:     &leaseCall{ID: 18446744073709551615},
			body200: `{"id":"18446744073709551615","ttl":"10s","remaining":"7.2s","keys":["svc/a"],"keys_base64":["/w=="],"index":135}`},
		{name: "describe unknown", method: "GET", path: "/v1/lease/7", err: kv.ErrLeaseNotFound, status: 404, code: "lease_not_found", call: "LeaseInfo"},
		bad("describe id 0", "GET", "/v1/lease/0", ""),
		{name: "lease id wrong method", method: "POST", path: "/v1/lease/7", status: 405, code: "method_not_allowed", allow: "DELETE, GET"},
		{name: "lease without an id", method: "GET", path: "/v1/lease/", status: 404, code: "not_found"},

		// ?lease, ?ttl, ?lock&token on the kv routes.
		{name: "put with a lease", method: "PUT", path: "/v1/kv/svc/a?lease=7", body: "v", status: 200, body200: `"lease":"7"`,
			call: "Put", got: &leaseCall{Key: "svc/a", Write: kv.WriteOptions{Lease: 7}}},
		{name: "put with a ttl", method: "PUT", path: "/v1/kv/svc/a?ttl=30s", body: "v", status: 200, body200: `"version":1,"lease":"8"}`,
			call: "Put", got: &leaseCall{Key: "svc/a", Write: kv.WriteOptions{TTL: 30 * time.Second}}},
		{name: "put with neither", method: "PUT", path: "/v1/kv/svc/a", body: "v", status: 200,
			body200: `{"key":"svc/a","create_index":150,"mod_index":150,"version":1}`, call: "Put", got: &leaseCall{Key: "svc/a"}},
		{name: "put with an unknown lease", method: "PUT", path: "/v1/kv/a?lease=7", body: "v", err: kv.ErrLeaseNotFound, status: 404, code: "lease_not_found", call: "Put"},
		{name: "put fenced", method: "PUT", path: "/v1/kv/jobs/owner?lock=jobs&token=212", body: "v", status: 200,
			call: "Put", got: &leaseCall{Key: "jobs/owner", Write: kv.WriteOptions{Fence: kv.Fence{Lock: "jobs", Token: 212}}}},
		{name: "put fenced, stale token", method: "PUT", path: "/v1/kv/jobs/owner?lock=jobs&token=211", body: "v",
			err: &kv.PreconditionError{}, status: 412, code: "precondition_failed", call: "Put"},
		{name: "put with all at once", method: "PUT", path: "/v1/kv/k?lease=7&lock=jobs&token=3&wait=1s", body: "v", status: 200,
			call: "Put", got: &leaseCall{Key: "k", Write: kv.WriteOptions{Lease: 7, Fence: kv.Fence{Lock: "jobs", Token: 3}}}},
		bad("put lease and ttl", "PUT", "/v1/kv/a?lease=7&ttl=30s", "v"),
		bad("put ttl negative", "PUT", "/v1/kv/a?ttl=-30s", "v"),
		bad("put ttl unparseable", "PUT", "/v1/kv/a?ttl=soon", "v"),
		bad("put ttl empty", "PUT", "/v1/kv/a?ttl", "v"),
		bad("put ttl too long", "PUT", "/v1/kv/a?ttl=1000h", "v"),
		bad("put lease abc", "PUT", "/v1/kv/a?lease=abc", "v"),
		bad("put lease 0", "PUT", "/v1/kv/a?lease=0", "v"),
		bad("put lease twice", "PUT", "/v1/kv/a?lease=7&lease=8", "v"),
		bad("put lock without token", "PUT", "/v1/kv/a?lock=jobs", "v"),
		bad("put token without lock", "PUT", "/v1/kv/a?token=3", "v"),
		bad("put token 0", "PUT", "/v1/kv/a?lock=jobs&token=0", "v"),
		bad("put token abc", "PUT", "/v1/kv/a?lock=jobs&token=abc", "v"),
		bad("put lock empty", "PUT", "/v1/kv/a?lock=&token=3", "v"),
		bad("put lock with a slash", "PUT", "/v1/kv/a?lock=a%2Fb&token=3", "v"),
		{name: "delete fenced", method: "DELETE", path: "/v1/kv/jobs/owner?lock=jobs&token=212", status: 200, body200: `{"deleted":1,"index":151}`,
			call: "Delete", got: &leaseCall{Key: "jobs/owner", Write: kv.WriteOptions{Fence: kv.Fence{Lock: "jobs", Token: 212}}}},
		{name: "delete fenced, stale token", method: "DELETE", path: "/v1/kv/a?lock=jobs&token=1", err: &kv.PreconditionError{}, status: 412, code: "precondition_failed", call: "Delete"},
		bad("delete prefix fenced", "DELETE", "/v1/kv/jobs/?prefix&lock=jobs&token=212", ""),
		bad("delete lock without token", "DELETE", "/v1/kv/a?lock=jobs", ""),
		bad("delete with a lease", "DELETE", "/v1/kv/a?lease=7", ""),
		bad("delete with a ttl", "DELETE", "/v1/kv/a?ttl=30s", ""),
		bad("get with a lease", "GET", "/v1/kv/a?lease=7", ""),
		{name: "txn lock compare and lease put", method: "POST", path: "/v1/txn", status: 200, call: "Txn",
			body: `{"compare":[{"key":"jobs","target":"lock","op":"=","value":212}],"success":[{"op":"put","key":"jobs/owner","value":"w3","lease":"7"}]}`,
			got: &leaseCall{Txn: kv.Txn{
				Compare: []kv.Compare{{Key: []byte("jobs"), Target: kv.TargetLock, Op: kv.OpEqual, Number: 212}},
				Success: []kv.TxnOp{{Type: kv.TxnPut, Key: []byte("jobs/owner"), Value: []byte("w3"), Lease: 7}},
			}}},
		bad("txn lock compare with a string", "POST", "/v1/txn", `{"compare":[{"key":"jobs","target":"lock","op":"=","value":"212"}]}`),
		bad("txn lock compare with a slash", "POST", "/v1/txn", `{"compare":[{"key":"a/b","target":"lock","op":"=","value":1}]}`),
		bad("txn delete with a lease", "POST", "/v1/txn", `{"success":[{"op":"delete","key":"a","lease":"7"}]}`),
		bad("txn put with lease 0", "POST", "/v1/txn", `{"success":[{"op":"put","key":"a","lease":"0"}]}`),

		// Locks.
		{name: "lock with a ttl", method: "POST", path: "/v1/lock/jobs?wait=30s", body: `{"ttl":"10s"}`, status: 200, index: "212",
			body200: `{"name":"jobs","key":"_raftkv/lock/jobs/","token":212,"lease":"8","own_lease":true,"index":212}`,
			call:    "Lock", got: &leaseCall{Name: "jobs", Lock: kv.LockOptions{TTL: 10 * time.Second, Wait: 30 * time.Second}}},
		{name: "lock on a lease", method: "POST", path: "/v1/lock/jobs", body: `{"lease":"7"}`, status: 200,
			call: "Lock", got: &leaseCall{Name: "jobs", Lock: kv.LockOptions{Lease: 7}}},
		{name: "lock on a lease, bare number", method: "POST", path: "/v1/lock/jobs", body: `{"lease":7}`, status: 200,
			call: "Lock", got: &leaseCall{Name: "jobs", Lock: kv.LockOptions{Lease: 7}}},
		{name: "lock name percent-encoded", method: "POST", path: "/v1/lock/j%C3%B6bs%20x", body: `{"lease":"7"}`, status: 200,
			call: "Lock", got: &leaseCall{Name: "jöbs x", Lock: kv.LockOptions{Lease: 7}}},
		{name: "lock wait passes", method: "POST", path: "/v1/lock/jobs?wait=10ms", body: `{"ttl":"10s"}`, err: fmt.Errorf("lock jobs: %w", kv.ErrTimeout),
			status: 504, code: "timeout", call: "Lock"},
		{name: "lock on an unknown lease", method: "POST", path: "/v1/lock/jobs", body: `{"lease":"7"}`, err: kv.ErrLeaseNotFound, status: 404, code: "lease_not_found", call: "Lock"},
		bad("lock without a lease", "POST", "/v1/lock/jobs", `{}`),
		bad("lock without a body", "POST", "/v1/lock/jobs", ``),
		bad("lock with both", "POST", "/v1/lock/jobs", `{"ttl":"10s","lease":"7"}`),
		bad("lock on lease 0", "POST", "/v1/lock/jobs", `{"lease":"0"}`),
		bad("lock on lease abc", "POST", "/v1/lock/jobs", `{"lease":"abc"}`),
		bad("lock ttl negative", "POST", "/v1/lock/jobs", `{"ttl":"-10s"}`),
		bad("lock ttl unparseable", "POST", "/v1/lock/jobs", `{"ttl":"x"}`),
		bad("lock with a value", "POST", "/v1/lock/jobs", `{"ttl":"10s","value":"v"}`),
		bad("lock empty name", "POST", "/v1/lock/", `{"ttl":"10s"}`),
		bad("lock name with a slash", "POST", "/v1/lock/a/b", `{"ttl":"10s"}`),
		bad("lock name with an encoded slash", "POST", "/v1/lock/a%2Fb", `{"ttl":"10s"}`),
		bad("lock name with a control character", "POST", "/v1/lock/a%01", `{"ttl":"10s"}`),
		bad("lock name too long", "POST", "/v1/lock/"+strings.Repeat("n", kv.MaxLockNameSize+1), `{"ttl":"10s"}`),
		bad("lock wait unparseable", "POST", "/v1/lock/jobs?wait=soon", `{"ttl":"10s"}`),
		bad("lock wait 0", "POST", "/v1/lock/jobs?wait=0s", `{"ttl":"10s"}`),
		bad("lock wait too long", "POST", "/v1/lock/jobs?wait=6m", `{"ttl":"10s"}`),
		bad("lock unknown parameter", "POST", "/v1/lock/jobs?ttl=10s", `{"ttl":"10s"}`),
		{name: "lock body too large", method: "POST", path: "/v1/lock/jobs", body: `{"ttl":"10s"` + strings.Repeat(" ", big) + `}`, status: 413, code: "too_large"},
		{name: "lock wrong method", method: "GET", path: "/v1/lock/jobs", status: 405, code: "method_not_allowed", allow: "DELETE, POST"},
		{name: "unlock", method: "DELETE", path: "/v1/lock/jobs?token=212", status: 200, body200: `{"index":230}`, index: "230",
			call: "Unlock", got: &leaseCall{Name: "jobs", Token: 212}},
		{name: "unlock stale token", method: "DELETE", path: "/v1/lock/jobs?token=3", err: &kv.PreconditionError{}, status: 412, code: "precondition_failed", call: "Unlock"},
		bad("unlock without token", "DELETE", "/v1/lock/jobs", ""),
		bad("unlock token 0", "DELETE", "/v1/lock/jobs?token=0", ""),
		bad("unlock token negative", "DELETE", "/v1/lock/jobs?token=-1", ""),
		bad("unlock empty name", "DELETE", "/v1/lock/?token=3", ""),
		bad("unlock with wait", "DELETE", "/v1/lock/jobs?token=3&wait=1s", ""),

		// Elections.
		{name: "campaign", method: "POST", path: "/v1/election/sched?wait=1m", body: `{"value":"n1","ttl":"10s"}`, status: 200, index: "240",
			body200: `{"name":"sched","key":"_raftkv/election/sched/","token":240,"lease":"9","value":"n1","index":240}`,
			call:    "Campaign", got: &leaseCall{Name: "sched", Value: []byte("n1"), Lock: kv.LockOptions{TTL: 10 * time.Second, Wait: time.Minute}}},
		{name: "campaign bytes", method: "POST", path: "/v1/election/sched", body: `{"value_base64":"AP8=","lease":"9"}`, status: 200,
			body200: `"value_base64":"AP8="`, call: "Campaign", got: &leaseCall{Name: "sched", Value: []byte{0, 0xff}, Lock: kv.LockOptions{Lease: 9}}},
		{name: "campaign no value", method: "POST", path: "/v1/election/sched", body: `{"lease":"9"}`, status: 200,
			body200: `"value":""`, call: "Campaign", got: &leaseCall{Name: "sched", Value: []byte{}, Lock: kv.LockOptions{Lease: 9}}},
		{name: "campaign wait passes", method: "POST", path: "/v1/election/sched?wait=1ms", body: `{"value":"n1","ttl":"10s"}`,
			err: kv.ErrTimeout, status: 504, code: "timeout", call: "Campaign"},
		bad("campaign both values", "POST", "/v1/election/sched", `{"value":"a","value_base64":"AA==","ttl":"10s"}`),
		bad("campaign bad base64", "POST", "/v1/election/sched", `{"value_base64":"%%","ttl":"10s"}`),
		bad("campaign without a lease", "POST", "/v1/election/sched", `{"value":"n1"}`),
		bad("campaign with both leases", "POST", "/v1/election/sched", `{"value":"n1","lease":"9","ttl":"10s"}`),
		bad("campaign empty name", "POST", "/v1/election/", `{"value":"n1","ttl":"10s"}`),
		bad("campaign unknown field", "POST", "/v1/election/sched", `{"value":"n1","ttl":"10s","token":1}`),
		{name: "campaign value too large", method: "POST", path: "/v1/election/sched", body: `{"value":"` + strings.Repeat("v", 65) + `","ttl":"10s"}`,
			status: 413, code: "too_large"},
		{name: "resign", method: "DELETE", path: "/v1/election/sched?token=240", status: 200, body200: `{"index":250}`, index: "250",
			call: "Resign", got: &leaseCall{Name: "sched", Token: 240}},
		{name: "resign not leading", method: "DELETE", path: "/v1/election/sched?token=3", err: &kv.PreconditionError{}, status: 412, code: "precondition_failed", call: "Resign"},
		bad("resign without token", "DELETE", "/v1/election/sched", ""),
		{name: "leader", method: "GET", path: "/v1/election/sched", status: 200, index: "245", call: "ElectionLeader", got: &leaseCall{Name: "sched"},
			body200: `{"name":"sched","key":"_raftkv/election/s/9","token":240,"lease":"9","value":"n1","index":245}`},
		{name: "leader observe=false", method: "GET", path: "/v1/election/sched?observe=false", status: 200, call: "ElectionLeader"},
		{name: "no leader", method: "GET", path: "/v1/election/sched", err: fmt.Errorf("election sched: %w", kv.ErrNoElectionLeader),
			status: 404, code: "no_election_leader", call: "ElectionLeader"},
		bad("leader observe=maybe", "GET", "/v1/election/sched?observe=maybe", ""),
		bad("leader with wait", "GET", "/v1/election/sched?wait=1s", ""),
		bad("leader empty name", "GET", "/v1/election/", ""),
		{name: "election wrong method", method: "PUT", path: "/v1/election/sched", status: 405, code: "method_not_allowed", allow: "DELETE, GET, POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &leaseBackend{err: tt.err}
			h, err := New(Config{Backend: b, MaxValueSize: 64})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body := rec.Body.String()
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, body)
			}
			if rec.Header().Get(HeaderNode) != "n7" {
				t.Errorf("%s = %q", HeaderNode, rec.Header().Get(HeaderNode))
			}
			if tt.status >= 400 {
				var er kv.ErrorResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || er.Error.Code != tt.code || er.Error.Message == "" {
					t.Errorf("error body %q, want code %s (%v)", body, tt.code, err)
				}
			} else if !strings.Contains(body, tt.body200) {
				t.Errorf("body %s, want it to hold %s", body, tt.body200)
			}
			if tt.index != "" && rec.Header().Get(HeaderIndex) != tt.index {
				t.Errorf("%s = %q, want %s", HeaderIndex, rec.Header().Get(HeaderIndex), tt.index)
			}
			if tt.allow != "" && rec.Header().Get("Allow") != tt.allow {
				t.Errorf("Allow = %q, want %q", rec.Header().Get("Allow"), tt.allow)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			switch {
			case tt.call == "" && len(b.calls) > 0:
				t.Errorf("the Backend got %v, want no call", b.calls)
			case tt.call != "" && !reflect.DeepEqual(b.calls, []string{tt.call}):
				t.Errorf("the Backend got %v, want [%s]", b.calls, tt.call)
			case tt.got != nil && !reflect.DeepEqual(b.got, *tt.got):
				t.Errorf("the Backend got\n%+v, want\n%+v", b.got, *tt.got)
			}
		})
	}
}

// blockingLock is a Backend whose Lock blocks until its context ends.
type blockingLock struct {
	leaseBackend
	entered chan struct{}
	ended   chan error
}

func (b *blockingLock) Lock(ctx context.Context, _ string, _ kv.LockOptions) (kv.Hold, error) {
	close(b.entered)
	<-ctx.Done()
	b.ended <- ctx.Err()
	return kv.Hold{}, ctx.Err()
}

// A lock waits under the request's context: when the client goes away,
// the Backend's wait ends (and with it the waiter's place in the queue).
func TestLockWaitEndsWithTheRequest(t *testing.T) {
	b := &blockingLock{entered: make(chan struct{}), ended: make(chan error, 1)}
	url := serveWatch(t, b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/lock/jobs", strings.NewReader(`{"ttl":"10s"}`))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			err = fmt.Errorf("answered %s while the lock was not held", resp.Status)
		}
		done <- err
	}()
	select {
	case <-b.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not call Lock")
	}
	cancel()
	select {
	case err := <-b.ended:
		if err != context.Canceled {
			t.Errorf("Lock's context ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lock's context did not end with the request")
	}
	if err := <-done; ctx.Err() == nil || err == nil {
		t.Errorf("client: %v", err)
	}
}

// observeStep is what the scripted observation yields next.
type observeStep struct {
	hold kv.Hold
	err  error
}

// observeBackend observes elections from a script: it yields the steps
// the test sends until one is an error, the script closes, or ctx ends.
type observeBackend struct {
	leaseBackend
	steps chan observeStep
	ended chan struct{} // closed when the observation returns
	names chan string
}

func newObserveBackend() *observeBackend {
	return &observeBackend{steps: make(chan observeStep), ended: make(chan struct{}), names: make(chan string, 1)}
}

func (b *observeBackend) ObserveElection(ctx context.Context, name string) iter.Seq2[kv.Hold, error] {
	b.names <- name
	return func(yield func(kv.Hold, error) bool) {
		defer close(b.ended)
		for {
			select {
			case st, ok := <-b.steps:
				if !ok || !yield(st.hold, st.err) || st.err != nil {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}
}

// send hands the observation its next step; it fails the test (without
// stopping it: send may run in a goroutine of its own) if the handler
// does not ask for one in time.
func (b *observeBackend) send(t *testing.T, st observeStep) {
	t.Helper()
	select {
	case b.steps <- st:
	case <-time.After(10 * time.Second):
		t.Error("the handler did not ask for the next leader")
	}
}

var (
	leaderN1 = kv.Hold{Name: "sched", Key: []byte("_raftkv/election/sched/9"), Token: 240, Lease: 9, Value: []byte("n1"), Index: 240}
	leaderN2 = kv.Hold{Name: "sched", Key: []byte("_raftkv/election/sched/12"), Token: 246, Lease: 12, Value: []byte{0xff}, Index: 251}
)

const (
	lineN1   = `{"leader":{"name":"sched","key":"_raftkv/election/sched/9","token":240,"lease":"9","value":"n1","index":240},"index":240}`
	lineNone = `{"leader":null,"index":250}`
	lineN2   = `{"leader":{"name":"sched","key":"_raftkv/election/sched/12","token":246,"lease":"12","value_base64":"/w==","index":251},"index":251}`
)

// The observe stream in NDJSON and in SSE: the first line is the leader
// read before the status, each change one line flushed at once, no leader
// a null leader, and the end the server gives (here shutting down) an
// error line.
func TestObserveElectionStream(t *testing.T) {
	for _, sse := range []bool{false, true} {
		t.Run(fmt.Sprintf("sse=%v", sse), func(t *testing.T) {
			b := newObserveBackend()
			url := serveWatch(t, b, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			t.Cleanup(cancel)

			type answer struct {
				resp *http.Response
				err  error
			}
			got := make(chan answer, 1)
			go func() {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/election/sched?observe", nil)
				if err != nil {
					got <- answer{err: err}
					return
				}
				if sse {
					req.Header.Set("Accept", "text/event-stream")
				}
				resp, err := http.DefaultClient.Do(req)
				got <- answer{resp, err}
			}()
			// The status waits for the first leader.
			b.send(t, observeStep{hold: leaderN1})
			a := <-got
			if a.err != nil {
				t.Fatal(a.err)
			}
			t.Cleanup(func() { _ = a.resp.Body.Close() })
			if name := <-b.names; name != "sched" {
				t.Errorf("observed %q", name)
			}
			wantType := "application/x-ndjson"
			if sse {
				wantType = "text/event-stream"
			}
			for name, want := range map[string]string{"Content-Type": wantType, HeaderIndex: "240", HeaderNode: "n7", "Cache-Control": "no-cache"} {
				if got := a.resp.Header.Get(name); a.resp.StatusCode != 200 || got != want {
					t.Errorf("%d: %s = %q, want %q", a.resp.StatusCode, name, got, want)
				}
			}
			br := bufio.NewReader(a.resp.Body)
			expect := func(index, line string) {
				t.Helper()
				if sse {
					want := []string{"id: " + index + "\n", "data: " + line + "\n", "\n"}
					for _, w := range want {
						if got := readLine(t, br); got != w {
							t.Fatalf("got %q, want %q", got, w)
						}
					}
					return
				}
				if got := readLine(t, br); got != line+"\n" {
					t.Fatalf("got %q, want %q", got, line)
				}
			}
			expect("240", lineN1)
			// The leader resigned: no leader, whose index the node's
			// applied index stands for when the hold has none.
			b.send(t, observeStep{hold: kv.Hold{Index: 250}})
			expect("250", lineNone)
			b.send(t, observeStep{hold: leaderN2})
			expect("251", lineN2)
			b.send(t, observeStep{err: fmt.Errorf("observe: %w", kv.ErrClosed)})
			errLine := `{"error":{"code":"shutting_down","message":"observe: ` + kv.ErrClosed.Error() + `"}}`
			if sse {
				for _, w := range []string{"event: error\n", "data: " + errLine + "\n", "\n"} {
					if got := readLine(t, br); got != w {
						t.Fatalf("got %q, want %q", got, w)
					}
				}
			} else if got := readLine(t, br); got != errLine+"\n" {
				t.Fatalf("got %q, want %q", got, errLine)
			}
			if rest, err := br.ReadString('\n'); rest != "" || err == nil {
				t.Fatalf("after the error line: %q, %v", rest, err)
			}
			waitClosedChan(t, b.ended, "the observation did not end")
		})
	}
}

// An observation that cannot start (its first answer an error) is an
// ordinary error answer; one whose script ends without a reason ends with
// an error line; one whose client goes away ends the observation.
func TestObserveElectionEnds(t *testing.T) {
	t.Run("first answer an error", func(t *testing.T) {
		b := newObserveBackend()
		url := serveWatch(t, b, nil)
		go b.send(t, observeStep{err: kv.ErrNoLeader})
		resp, err := http.Get(url + "/v1/election/sched?observe")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var er kv.ErrorResponse
		if err := json.NewDecoder(resp.Body).Decode(&er); err != nil || resp.StatusCode != 503 || er.Error.Code != "no_leader" {
			t.Fatalf("%d %+v %v", resp.StatusCode, er, err)
		}
		waitClosedChan(t, b.ended, "the observation did not end")
	})
	t.Run("ended without a reason", func(t *testing.T) {
		b := newObserveBackend()
		url := serveWatch(t, b, nil)
		go func() {
			b.send(t, observeStep{hold: leaderN1})
			close(b.steps)
		}()
		resp, err := http.Get(url + "/v1/election/sched?observe")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		if got := readLine(t, br); got != lineN1+"\n" {
			t.Fatalf("got %q", got)
		}
		var line kv.ErrorResponse
		if err := json.Unmarshal([]byte(readLine(t, br)), &line); err != nil || line.Error.Code != kv.CodeInternal {
			t.Fatalf("last line %+v, %v", line, err)
		}
	})
	t.Run("client gone", func(t *testing.T) {
		b := newObserveBackend()
		url := serveWatch(t, b, nil)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go b.send(t, observeStep{hold: kv.Hold{}})
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/election/sched?observe", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// No leader and no index: the node's applied index.
		if got := readLine(t, bufio.NewReader(resp.Body)); got != `{"leader":null,"index":99}`+"\n" {
			t.Fatalf("got %q", got)
		}
		cancel()
		waitClosedChan(t, b.ended, "the observation outlived its client")
	})
}

// waitClosedChan fails the test unless c is closed in time.
func waitClosedChan(t *testing.T, c <-chan struct{}, msg string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal(msg)
	}
}
