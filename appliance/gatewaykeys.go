package appliance

import (
	"context"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/keys"
)

// gatewayKeyPoll is how often the operator's key files are re-read: the
// kubelet updates a mounted Secret within about a minute, and a rotation
// by hand needs no restart either.
const gatewayKeyPoll = 10 * time.Second

// reloadGatewayKeys re-reads the operator's signing and validation key
// files and swaps them in if they changed; keys the appliance generated
// are left alone (they rotate with `keys rotate`). On an error (a file
// half-written, a bad key) the keys in use stay.
func (a *Appliance) reloadGatewayKeys() error {
	f := a.front
	if f == nil || !f.keys.Operator() {
		return nil
	}
	ko, err := keys.LoadEnv(a.o.Config.GatewayKeyEnv(a.env()))
	if err != nil {
		return err
	}
	changed, err := f.keys.ReplaceOperator(ko)
	if err != nil {
		return err
	}
	if changed {
		a.log.Info("gateway signing keys reloaded", "part", "gateway", "signing_kid", f.keys.Signing().ID, "validation_keys", len(f.keys.Validation()))
	}
	return nil
}

// watchGatewayKeys reloads the operator's key files every gatewayKeyPoll
// until ctx ends, logging each new failure once.
func (a *Appliance) watchGatewayKeys(ctx context.Context, every time.Duration) {
	if a.front == nil || !a.front.keys.Operator() {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := a.reloadGatewayKeys()
		switch {
		case err != nil && err.Error() != last:
			last = err.Error()
			a.log.Warn("gateway key files could not be reloaded; the keys in use stay", "part", "gateway", "err", err)
		case err == nil:
			last = ""
		}
	}
}
