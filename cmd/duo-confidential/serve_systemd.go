package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/duo-confidential/duo-confidential/appliance"
)

// systemd integration of `serve` (Type=notify): READY=1 once every
// listener serves, STATUS= with what is still missing, WATCHDOG=1 while
// the proxy listener answers its own /healthz, RELOADING=1 around SIGHUP
// and STOPPING=1 when the drain starts. Without NOTIFY_SOCKET every call
// is a no-op, so the same code runs outside systemd.

// sdNotify sends one state to systemd, ignoring "not under systemd".
func sdNotify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("systemd notify failed", "state", state, "err", err)
	}
}

// superviseSystemd reports the appliance's lifecycle to systemd until ctx
// ends (SIGTERM: STOPPING=1) or stop is closed (the appliance returned);
// the caller waits for it, so STOPPING=1 is sent before the process exits.
// proxyAddr is the proxy listener's address, probed for the watchdog.
func superviseSystemd(ctx context.Context, stop <-chan struct{}, a *appliance.Appliance, proxyAddr string, tlsOn bool, log *slog.Logger) {
	select {
	case <-a.Serving():
	case <-ctx.Done():
		return
	case <-stop:
		return
	}
	sdNotify(log, daemon.SdNotifyReady)
	watchdog, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog settings unreadable; not pinging", "err", err)
	}
	var ping <-chan time.Time
	if watchdog > 0 {
		t := time.NewTicker(watchdog / 2)
		defer t.Stop()
		ping = t.C
	}
	status := time.NewTicker(5 * time.Second)
	defer status.Stop()
	last := ""
	report := func() {
		s := "ready"
		if ok, why := a.Readiness(); !ok {
			s = "not ready: " + why
		}
		if s != last {
			sdNotify(log, "STATUS="+truncate(s, 400))
			last = s
		}
	}
	report()
	probe := selfProbe(proxyAddr, tlsOn, watchdog/4)
	for {
		select {
		case <-ctx.Done():
			sdNotify(log, daemon.SdNotifyStopping)
			return
		case <-stop:
			sdNotify(log, daemon.SdNotifyStopping)
			return
		case <-status.C:
			report()
		case <-ping:
			if err := probe(ctx); err != nil {
				// No ping: if this persists for WatchdogSec, systemd
				// restarts the service, which is the point.
				log.Error("watchdog: the proxy listener does not answer its own health check; not pinging systemd", "err", err)
				continue
			}
			sdNotify(log, daemon.SdNotifyWatchdog)
		}
	}
}

// selfProbe returns a liveness check of our own proxy listener over
// loopback: GET /healthz must answer 200. It checks that the accept loop
// and the handlers run; the certificate is not verified because nothing
// is trusted or sent here, and names may not cover loopback.
func selfProbe(addr string, tlsOn bool, timeout time.Duration) func(context.Context) error {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
			if ip != nil && ip.To4() == nil {
				host = "::1"
			}
		}
		addr = net.JoinHostPort(host, port)
	}
	scheme := "http://"
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	if tlsOn {
		scheme = "https://"
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // liveness of our own loopback listener
	}
	client := &http.Client{Transport: tr, Timeout: timeout}
	url := scheme + addr + "/healthz"
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
		}
		return nil
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
