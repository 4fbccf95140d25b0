package gitlabconnect

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// DefaultPollInterval is how often the drift watch looks at GitLab.
const DefaultPollInterval = 5 * time.Minute

// MinPollInterval keeps the watch from hammering GitLab: every poll makes
// GitLab fetch model definitions from its cloud gateway and run its probes.
const MinPollInterval = 30 * time.Second

// WatchOptions configures a Watcher.
type WatchOptions struct {
	Client *Client
	Target Target
	// State returns the ids and features of the last apply (read at every
	// poll, so a connect made meanwhile counts); nil means none.
	State func() *State
	// Interval between polls; DefaultPollInterval if zero.
	Interval time.Duration
	// AutoRepair re-assigns drifted features to the appliance's model
	// records, and nothing else: it never changes settings or records,
	// never deletes, never chooses a GitLab-managed model.
	AutoRepair bool
	// SkipStatus skips cloudConnectorStatus (tests of feature drift alone).
	SkipStatus bool
	// OnReport receives every poll's report (readiness, metrics, trust log,
	// admin UI). It must not block for long.
	OnReport func(*Report)
	Logger   *slog.Logger
}

// Watcher polls GitLab for drift from the appliance's configuration.
type Watcher struct {
	o    WatchOptions
	mu   sync.Mutex
	last *Report
}

// NewWatcher checks o and returns a Watcher; Run starts it.
func NewWatcher(o WatchOptions) (*Watcher, error) {
	if o.Client == nil {
		return nil, errors.New("drift watch: no GitLab client")
	}
	if _, err := o.Target.Check(); err != nil {
		return nil, err
	}
	if o.Interval == 0 {
		o.Interval = DefaultPollInterval
	}
	if o.Interval < MinPollInterval {
		o.Interval = MinPollInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.State == nil {
		o.State = func() *State { return &State{} }
	}
	return &Watcher{o: o}, nil
}

// Run polls at once and then every Interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.o.Interval)
	defer t.Stop()
	for {
		w.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Last is the latest report, nil before the first poll ends.
func (w *Watcher) Last() *Report {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Poll looks at GitLab once, repairs if allowed, and reports. It is safe to
// call while Run runs (after a connect, say).
func (w *Watcher) Poll(ctx context.Context) *Report {
	r := w.look(ctx)
	if w.o.AutoRepair && r.Err == "" && slices.ContainsFunc(r.Problems, func(p Problem) bool { return p.Repairable }) {
		repaired := w.repair(ctx)
		if len(repaired) > 0 {
			r = w.look(ctx)
			r.Repaired = repaired
		}
	}
	w.mu.Lock()
	prev := w.last
	w.last = r
	w.mu.Unlock()
	w.logChanges(prev, r)
	if w.o.OnReport != nil {
		w.o.OnReport(r)
	}
	return r
}

// look reads GitLab and evaluates it.
func (w *Watcher) look(ctx context.Context) *Report {
	s, err := w.o.Client.Read(ctx, w.o.State().IDs())
	if err != nil {
		return &Report{Checked: time.Now().UTC(), Err: err.Error(), Counts: map[string]int{}}
	}
	var probes []string
	if !w.o.SkipStatus {
		if _, names, err := w.o.Client.ConnectorStatus(ctx); err == nil {
			probes = names
		} else {
			w.o.Logger.Warn("GitLab drift watch: cloudConnectorStatus", "error", err)
		}
	}
	return Evaluate(s, w.o.Target, w.o.State().Managed(), probes)
}

// repair re-assigns drifted features, and only that.
func (w *Watcher) repair(ctx context.Context) []string {
	s, err := w.o.Client.Read(ctx, w.o.State().IDs())
	if err != nil {
		return nil
	}
	p, err := PlanFrom(s, w.o.Target)
	if err != nil {
		return nil
	}
	var keep []Change
	for _, c := range p.Changes {
		if c.Kind != ChangeAssign && c.Kind != ChangeAssignPlatform {
			continue
		}
		if _, ok := s.Models[c.Model]; !ok {
			continue // the record is gone: that needs connect, not a repair
		}
		keep = append(keep, c)
	}
	if len(keep) == 0 {
		return nil
	}
	p.Changes = keep
	res := w.o.Client.Apply(ctx, p, w.o.Target)
	var done []string
	for _, c := range res.Changes {
		if c.Outcome == OutcomeDone {
			done = append(done, c.Target)
		} else {
			w.o.Logger.Warn("GitLab drift watch: repair failed", "feature", c.Target, "error", c.Error)
		}
	}
	w.o.Logger.Info("GitLab drift watch: re-assigned features to the appliance's models", "features", done)
	return done
}

// logChanges logs what is new in r compared with prev (every problem once,
// when it appears, and when it is gone), so a lasting drift does not fill
// the log every few minutes.
func (w *Watcher) logChanges(prev, r *Report) {
	var before []Problem
	prevErr := ""
	if prev != nil {
		before, prevErr = prev.Problems, prev.Err
	}
	if r.Err != "" && r.Err != prevErr {
		w.o.Logger.Warn("GitLab drift watch: cannot read GitLab", "gitlab", w.o.Client.GitLabURL(), "error", r.Err)
	}
	has := func(list []Problem, p Problem) bool {
		return slices.ContainsFunc(list, func(q Problem) bool { return q.What == p.What })
	}
	for _, p := range r.Problems {
		if !has(before, p) {
			w.o.Logger.Warn("GitLab drift", "feature", p.Feature, "problem", p.What, "fix", p.Fix)
		}
	}
	if r.Err == "" {
		for _, p := range before {
			if !has(r.Problems, p) {
				w.o.Logger.Info("GitLab drift resolved", "feature", p.Feature, "problem", p.What)
			}
		}
	}
}
