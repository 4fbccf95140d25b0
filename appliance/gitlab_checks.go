package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/duo-confidential/duo-confidential/appliance/config"
)

// ErrApplianceNotRunning means no appliance answers on this machine's admin
// listener, so its own count of GitLab's calls cannot be read.
var ErrApplianceNotRunning = errors.New("the appliance is not running here")

// gatewayCheckCount counts the gateway's successful answers to GitLab's
// connection check (POST /v1/prompts/model_configuration%2Fcheck) in
// gathered metric families.
func gatewayCheckCount(fams []*dto.MetricFamily) uint64 {
	var n uint64
	for _, f := range fams {
		if f.GetName() != "duo_gateway_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["route"] == "prompts" && l["prompt"] == "model_configuration/check" && l["code"] == "200" {
				n += uint64(m.GetCounter().GetValue())
			}
		}
	}
	return n
}

// RunningGatewayChecks reads, from the running appliance's /metrics on the
// admin listener, how many of GitLab's connection checks its gateway has
// answered since it started. adminToken is an admin API token; empty works
// only with admin.metrics_auth: none. ErrApplianceNotRunning when nothing
// listens there (or the admin listener is off).
func RunningGatewayChecks(ctx context.Context, cfg *config.Config, adminToken string) (uint64, error) {
	if !cfg.Admin.Enabled() {
		return 0, fmt.Errorf("%w (admin.listen is off)", ErrApplianceNotRunning)
	}
	tlsConf, err := cfg.ListenerClientTLS()
	if err != nil {
		return 0, fmt.Errorf("TLS for the admin listener: %w", err)
	}
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	url := scheme + "://" + config.ProbeAddr(cfg.Admin.Listen) + "/metrics"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	if adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf, Proxy: nil}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return 0, fmt.Errorf("%w (nothing listens on admin.listen %s)", ErrApplianceNotRunning, cfg.Admin.Listen)
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return 0, fmt.Errorf("%s needs an admin API token (--admin-token-file; `duo-confidential admin token` makes one) or admin.metrics_auth: none", url)
	case resp.StatusCode != http.StatusOK:
		return 0, fmt.Errorf("%s answered HTTP %d", url, resp.StatusCode)
	}
	dec := expfmt.NewDecoder(io.LimitReader(resp.Body, 16<<20), expfmt.ResponseFormat(resp.Header))
	var fams []*dto.MetricFamily
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return 0, fmt.Errorf("parse %s: %w", url, err)
		}
		fams = append(fams, mf)
	}
	return gatewayCheckCount(fams), nil
}

// WriteGatewayChecks reports the appliance's own view of the connection
// checks GitLab just made: n answered (HTTP 200) while want were asked for.
func WriteGatewayChecks(w io.Writer, n uint64, want int) {
	fmt.Fprintf(w, "\nThis appliance's gateway answered %d connection check(s) from GitLab during this run (HTTP 200).\n", n)
	if n == 0 && want > 0 {
		fmt.Fprintln(w, "GitLab's connection checks did not reach this appliance: check gitlab_admin.gateway_url and GitLab's trust of the appliance's certificate.")
	}
}

// gitlabWarning is /monitoring/ready's warning while the drift watch finds
// GitLab's Duo configuration drifted or unreadable: a warning, never a
// reason to be unready (the appliance itself can serve). The endpoint is
// public, so it names no features or models.
func (a *Appliance) gitlabWarning() string {
	r := a.GitLabDrift()
	switch {
	case r == nil:
		return ""
	case r.Err != "":
		return "GitLab drift watch: cannot read GitLab's Duo configuration; see the admin UI or `duo-confidential gitlab verify`"
	case len(r.Problems) > 0:
		return fmt.Sprintf("GitLab drift: %d problem(s) in GitLab's Duo configuration; see the admin UI or `duo-confidential gitlab verify`", len(r.Problems))
	}
	return ""
}
