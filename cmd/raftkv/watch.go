package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

const watchSummary = `Prints the changes to KEY (with --prefix, to every key that starts with KEY;
"" is every key) as they happen, one line per event, until interrupted
(Ctrl-C):

  PUT key value
  DELETE key

A prefix delete or a transaction prints a line for each key it changed, in
the order it changed them. Keys and values that are not printable text are
quoted, as ls prints them. With --prev a line ends with the value the event
replaced, as "(prev VALUE)", when the key existed.

With --json it prints the stream's NDJSON lines instead, one JSON object per
raft index ({"index":N,"events":[...]}), progress notifications
({"index":N,"events":[]}, every 10s without events) included.

Without --from-index the watch starts with the changes after the moment it
opens. It survives the loss of the node it reads from: it resumes on another
node where it was, without missing or repeating an event. Exits 0 when
interrupted or at --timeout (none by default), 1 when the events it needs are
no longer kept (compacted).`

func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newCommand("watch", "KEY", watchSummary, stderr).clientFlagsTimeout(0)
	prefix := c.fs.Bool("prefix", false, "watch every key that starts with KEY")
	from := c.fs.Uint64("from-index", 0, "start with the events at raft index `N` and after (0: from now on)")
	prev := c.fs.Bool("prev", false, "print the value each event replaced")
	asJSON := c.fs.Bool("json", false, "print the stream's NDJSON lines (progress notifications included)")
	pos, err := c.parse(args, 1, 1)
	if err != nil {
		return err
	}
	opts := kv.WatchOptions{Key: []byte(pos[0]), Prefix: *prefix, FromIndex: *from, PrevValue: *prev}
	if err := opts.Validate(); err != nil {
		return usagef("%v", err)
	}
	return c.with(ctx, func(ctx context.Context, cl *client.Client) error {
		for resp, err := range cl.Watch(ctx, opts) {
			if err != nil {
				return watchError(ctx, err)
			}
			if *asJSON {
				err = writeJSON(stdout, kv.EncodeWatchResponse(resp))
			} else {
				err = printEvents(stdout, resp.Events)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// printEvents writes one line per event.
func printEvents(w io.Writer, events []kv.Event) error {
	for _, e := range events {
		var line string
		switch e.Type {
		case kv.EventPut:
			line = "PUT " + printable(e.Key) + " " + printable(e.Value)
		case kv.EventDelete:
			line = "DELETE " + printable(e.Key)
		default:
			line = fmt.Sprintf("%s %s", e.Type, printable(e.Key))
		}
		if e.Prev != nil {
			line += " (prev " + printable(e.Prev.Value) + ")"
		}
		if _, err := io.WriteString(w, line+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// watchError is the command's result for the error that ended a watch:
// none when ctx ended (Ctrl-C, --timeout), else the error, spelled out for
// compacted history.
func watchError(ctx context.Context, err error) error {
	var ce *kv.CompactedError
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.As(err, &ce):
		return fmt.Errorf("the events from index %d are no longer kept (the node keeps indexes %d to %d): watch from a later --from-index, or without one to start from now: %w",
			ce.FromIndex, ce.OldestIndex, ce.CurrentIndex, err)
	}
	return err
}
