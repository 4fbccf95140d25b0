package tls

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	"go.uber.org/zap"
)

func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	zl := newZapLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	zl.Debug("dropped at info level")
	zl.Info("certmagic narration, dropped at info level")
	zl.Named("obtain").With(zap.String("identifier", "duo.example.internal")).
		Error("could not get certificate", zap.Error(errors.New("HTTP 503")), zap.Int("attempt", 2), zap.Strings("names", []string{"a", "b"}))
	zl.Warn("renewal window")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2 (debug and info dropped):\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal(lines[0], &rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"level": "ERROR", "msg": "could not get certificate", "certmagic": "obtain",
		"identifier": "duo.example.internal", "error": "HTTP 503", "attempt": float64(2)}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v (record %s)", k, rec[k], v, lines[0])
		}
	}
	if names, _ := rec["names"].([]any); len(names) != 2 {
		t.Errorf("names = %v", rec["names"])
	}
	if !bytes.Contains(lines[1], []byte(`"level":"WARN"`)) {
		t.Errorf("second line %s, want WARN", lines[1])
	}
}
