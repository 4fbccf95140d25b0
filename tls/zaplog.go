package tls

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// certmagic logs through zap; the appliance logs through slog. zapToSlog
// is the zap core that forwards each entry to a slog handler, so
// certmagic's lines share our format, level and destination. (zap's own
// zapslog bridge goes the other way.)
type zapToSlog struct {
	h     slog.Handler
	attrs []slog.Attr // from With, already encoded
}

// newZapLogger returns a zap logger writing to log. certmagic narrates
// every step at Info (locks, storage checks); those become Debug, and the
// Manager logs the outcomes at Info itself. Warnings and errors keep
// their level.
func newZapLogger(log *slog.Logger) *zap.Logger {
	return zap.New(&zapToSlog{h: log.Handler()})
}

var _ zapcore.Core = (*zapToSlog)(nil)

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelDebug
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (z *zapToSlog) Enabled(l zapcore.Level) bool {
	return z.h.Enabled(context.Background(), slogLevel(l))
}

func (z *zapToSlog) With(fields []zapcore.Field) zapcore.Core {
	return &zapToSlog{h: z.h, attrs: append(append([]slog.Attr(nil), z.attrs...), fieldAttrs(fields)...)}
}

func (z *zapToSlog) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if z.Enabled(e.Level) {
		return ce.AddCore(e, z)
	}
	return ce
}

func (z *zapToSlog) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	r.AddAttrs(z.attrs...)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("certmagic", e.LoggerName))
	}
	r.AddAttrs(fieldAttrs(fields)...)
	return z.h.Handle(context.Background(), r)
}

func (z *zapToSlog) Sync() error { return nil }

// fieldAttrs encodes zap fields with zap's own map encoder, so every field
// type (errors, durations, arrays, objects) renders as zap would.
func fieldAttrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields))
	for _, f := range fields {
		if v, ok := enc.Fields[f.Key]; ok {
			attrs = append(attrs, slog.Any(f.Key, v))
			delete(enc.Fields, f.Key)
		}
	}
	// Fields whose encoder added other keys (zap.Error adds "errorVerbose").
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	return attrs
}
