package appliance

import "strings"

// Serving is closed once RunListeners has every listener serving (TLS
// started, certificates loaded); it never closes if RunListeners fails
// before that.
func (a *Appliance) Serving() <-chan struct{} { return a.serving }

// Readiness reports whether the whole appliance can serve Duo now: the
// backend attested with a secret, the gateway (when configured) with
// GitLab's keys and its models (which the Agent Platform shares), and
// every certificate in place; if not,
// every reason, joined with "; ".
func (a *Appliance) Readiness() (bool, string) {
	var why []string
	ready := a.Ready
	if a.front != nil {
		ready = a.GatewayReady // which includes the backend's state
	}
	if ok, reason := ready(); !ok {
		why = append(why, reason)
	}
	if ok, reason := a.certs.Ready(); !ok {
		why = append(why, reason)
	}
	return len(why) == 0, strings.Join(why, "; ")
}
