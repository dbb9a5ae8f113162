package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// logFlags are serve's --log-level and --log-format.
type logFlags struct {
	level  string
	format string
}

// newLogger builds the process's logger. Durations print as "1.5s" rather
// than slog's nanoseconds, in both formats: an operator reads them.
func (f logFlags) newLogger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.level)
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: readableDurations}
	switch strings.ToLower(f.format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", f.format)
}

func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		d := a.Value.Duration()
		if d > time.Millisecond {
			d = d.Round(time.Millisecond)
		}
		a.Value = slog.StringValue(d.String())
	}
	return a
}
