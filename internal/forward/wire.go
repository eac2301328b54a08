package forward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/raftkv/raftkv/kv"
	"github.com/raftkv/raftkv/store"
)

// Path is the leader's endpoint for forwarded batches.
const Path = "/v1/internal/apply"

// ContentType marks a batch's body, request and response.
const ContentType = "application/x-raftkv-batch"

// wireVersion is the first byte of every request and response.
const wireVersion = 1

// MaxCommands bounds the commands of one batch.
const MaxCommands = 4096

// ErrMalformed is wrapped by every decoding failure.
var ErrMalformed = errors.New("forward: malformed batch")

// Outcome is what applying one command of a batch came to: Res (whose Err
// may be the command's own failed condition or reused idempotency key), or
// Err, the error applying it returned.
type Outcome struct {
	Res *store.Result
	Err error
}

// AppendRequest appends the request carrying cmds to dst; timeouts[i] is
// how long the leader may spend on cmds[i] (zero: no limit of its own).
func AppendRequest(dst []byte, cmds []*store.Command, timeouts []time.Duration) []byte {
	dst = append(dst, wireVersion)
	dst = binary.AppendUvarint(dst, uint64(len(cmds)))
	for _, t := range timeouts {
		ms := uint64(0)
		if t > 0 {
			ms = uint64((t + time.Millisecond - 1) / time.Millisecond)
		}
		dst = binary.AppendUvarint(dst, ms)
	}
	return store.EncodeEntry(dst, cmds)
}

// DecodeRequest decodes a request. The commands share memory with b.
func DecodeRequest(b []byte) ([]store.Command, []time.Duration, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != wireVersion {
		return nil, nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, v, wireVersion)
	}
	n := d.count()
	timeouts := make([]time.Duration, 0, n)
	for range n {
		ms := d.uvarint()
		if ms > uint64(time.Hour/time.Millisecond) {
			ms = uint64(time.Hour / time.Millisecond)
		}
		timeouts = append(timeouts, time.Duration(ms)*time.Millisecond)
	}
	if d.err != nil {
		return nil, nil, d.err
	}
	cmds, err := store.DecodeEntry(d.b)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(cmds) != n {
		return nil, nil, fmt.Errorf("%w: %d timeouts for %d commands", ErrMalformed, n, len(cmds))
	}
	return cmds, timeouts, nil
}

// AppendResponse appends the response carrying outs to dst.
func AppendResponse(dst []byte, outs []Outcome) []byte {
	dst = append(dst, wireVersion)
	dst = binary.AppendUvarint(dst, uint64(len(outs)))
	for _, o := range outs {
		if o.Err != nil || o.Res == nil {
			err := o.Err
			if err == nil {
				err = fmt.Errorf("%w: no result", kv.ErrOutcomeUnknown)
			}
			dst = append(dst, 1)
			dst = appendString(dst, kv.Code(err))
			dst = appendString(dst, err.Error())
			continue
		}
		dst = append(dst, 0)
		dst = store.AppendResult(dst, o.Res)
		code, msg := "", ""
		if o.Res.Err != nil {
			code, msg = kv.Code(o.Res.Err), o.Res.Err.Error()
		}
		dst = appendString(dst, code)
		dst = appendString(dst, msg)
	}
	return dst
}

// DecodeResponse decodes a response that must carry n outcomes. Errors are
// rebuilt from their codes, so errors.Is works on them; a failed condition
// is a *kv.PreconditionError.
func DecodeResponse(b []byte, n int) ([]Outcome, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != wireVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, v, wireVersion)
	}
	if got := d.count(); d.err == nil && got != n {
		return nil, fmt.Errorf("%w: %d outcomes for %d commands", ErrMalformed, got, n)
	}
	outs := make([]Outcome, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		switch kind := d.byte(); kind {
		case 0:
			res, rest, err := store.DecodeResult(d.b)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
			}
			d.b = rest
			code, msg := d.string(), d.string()
			switch {
			case code == "":
				res.Err = nil
			case code == kv.Code(kv.ErrPreconditionFailed):
				res.Err = &kv.PreconditionError{CurrentModIndex: res.CurrentModIndex}
			default:
				res.Err = kv.FromCode(code, msg)
			}
			outs = append(outs, Outcome{Res: res})
		case 1:
			code, msg := d.string(), d.string()
			outs = append(outs, Outcome{Err: kv.FromCode(code, msg)})
		default:
			if d.err == nil {
				d.err = fmt.Errorf("%w: outcome kind %d", ErrMalformed, kind)
			}
		}
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return outs, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or bad %s", ErrMalformed, what)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) count() int {
	v := d.uvarint()
	if d.err == nil && v > MaxCommands {
		d.err = fmt.Errorf("%w: %d commands, the limit is %d", ErrMalformed, v, MaxCommands)
		return 0
	}
	return int(v)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail("string")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
