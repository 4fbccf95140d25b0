package agentplatform

import "time"

// Metrics receives the service's observations; labels are from fixed sets
// (gRPC code names, action kinds, outcome names), so cardinality stays
// bounded. Implemented by the admin UI's instruments.
type Metrics interface {
	SessionStarted()
	// SessionEnded records a finished or refused session and its gRPC
	// code; started says SessionStarted was called for it.
	SessionEnded(code string, started bool)
	// Action records one action sent and, for answered ones, its round trip.
	Action(kind string, roundTrip time.Duration)
	// AuthFailed records a refused call by gRPC code.
	AuthFailed(code string)
}

type nopMetrics struct{}

func (nopMetrics) SessionStarted()              {}
func (nopMetrics) SessionEnded(string, bool)    {}
func (nopMetrics) Action(string, time.Duration) {}
func (nopMetrics) AuthFailed(string)            {}
