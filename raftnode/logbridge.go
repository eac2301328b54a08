package raftnode

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hclogBridge sends hashicorp/raft's hclog output to a *slog.Logger, keeping
// levels (raft's Trace becomes slog Debug-4) and key/value pairs. raft logs
// at DEBUG by default; the bridge drops everything below minLevel.
type hclogBridge struct {
	l        *slog.Logger
	name     string
	minLevel hclog.Level
	implied  []any
}

var _ hclog.Logger = (*hclogBridge)(nil)

func newHclogBridge(l *slog.Logger, min hclog.Level) *hclogBridge {
	return &hclogBridge{l: l, minLevel: min}
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (b *hclogBridge) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level < b.minLevel {
		return
	}
	sl := slogLevel(level)
	ctx := context.Background()
	if !b.l.Enabled(ctx, sl) {
		return
	}
	attrs := make([]any, 0, len(b.implied)+len(args)+2)
	if b.name != "" {
		attrs = append(attrs, slog.String("component", b.name))
	}
	attrs = append(attrs, b.implied...)
	attrs = append(attrs, fixArgs(args)...)
	b.l.Log(ctx, sl, msg, attrs...)
}

// fixArgs turns hclog's key/value list into slog's: keys become strings and
// hclog.Format values are rendered.
func fixArgs(args []any) []any {
	out := make([]any, 0, len(args))
	for i := 0; i < len(args); i += 2 {
		key := fmt.Sprint(args[i])
		if i+1 >= len(args) {
			out = append(out, slog.Any("!BADKEY", args[i]))
			break
		}
		v := args[i+1]
		if f, ok := v.(hclog.Format); ok && len(f) > 0 {
			v = fmt.Sprintf(fmt.Sprint(f[0]), f[1:]...)
		}
		out = append(out, slog.Any(key, v))
	}
	return out
}

func (b *hclogBridge) Trace(msg string, args ...any) { b.Log(hclog.Trace, msg, args...) }
func (b *hclogBridge) Debug(msg string, args ...any) { b.Log(hclog.Debug, msg, args...) }
func (b *hclogBridge) Info(msg string, args ...any)  { b.Log(hclog.Info, msg, args...) }
func (b *hclogBridge) Warn(msg string, args ...any)  { b.Log(hclog.Warn, msg, args...) }
func (b *hclogBridge) Error(msg string, args ...any) { b.Log(hclog.Error, msg, args...) }

func (b *hclogBridge) enabled(level hclog.Level) bool {
	return level >= b.minLevel && b.l.Enabled(context.Background(), slogLevel(level))
}

func (b *hclogBridge) IsTrace() bool { return b.enabled(hclog.Trace) }
func (b *hclogBridge) IsDebug() bool { return b.enabled(hclog.Debug) }
func (b *hclogBridge) IsInfo() bool  { return b.enabled(hclog.Info) }
func (b *hclogBridge) IsWarn() bool  { return b.enabled(hclog.Warn) }
func (b *hclogBridge) IsError() bool { return b.enabled(hclog.Error) }

func (b *hclogBridge) ImpliedArgs() []any { return b.implied }

func (b *hclogBridge) With(args ...any) hclog.Logger {
	c := *b
	c.implied = append(append([]any(nil), b.implied...), fixArgs(args)...)
	return &c
}

func (b *hclogBridge) Name() string { return b.name }

func (b *hclogBridge) Named(name string) hclog.Logger {
	c := *b
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (b *hclogBridge) ResetNamed(name string) hclog.Logger {
	c := *b
	c.name = name
	return &c
}

// SetLevel is ignored: the level is fixed when the node is opened, so that
// loggers handed out earlier cannot change under raft.
func (b *hclogBridge) SetLevel(hclog.Level) {}

func (b *hclogBridge) GetLevel() hclog.Level { return b.minLevel }

func (b *hclogBridge) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(b.StandardWriter(opts), "", 0)
}

func (b *hclogBridge) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		b.Info(strings.TrimSpace(string(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
