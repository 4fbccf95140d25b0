//go:build !duo_production

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/codereview"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/workhorse"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"google.golang.org/grpc/metadata"
)

// The demo's Code Review flow: the demo GitLab's sample merge request !1
// of project 1, as Rails workflow 2.
const (
	demoFlowDefinition = "code_review/v1"
	demoFlowMR         = "1"
	demoFlowProject    = "1"
	demoFlowWorkflowID = "2"
)

// printDemoFlow prints the command that runs DAP Code Review on the demo
// GitLab's sample merge request and shows the notes it posted.
func printDemoFlow(out io.Writer, a *appliance.Appliance, addr, headers, gitlabURL, gitlabCA string) {
	ca := ""
	if f := a.CACertificateFile(); f != "" {
		ca = " --ca " + f
	}
	fmt.Fprintf(out, `
A Code Review flow (%[6]s) on the demo GitLab's merge request !%[7]s, then the notes it posted:

  duo-confidential agent flow --addr %[1]s%[2]s --headers %[3]s \
    --gitlab %[4]s --gitlab-ca %[5]s --workflow-id %[8]s %[6]s %[7]s

  (The sandbox model's review is deterministic and labelled as such: one comment on the first
  changed line of each file, posted through GitLab's add_comments endpoint. Point the appliance at
  a real model for a real review.)
`, addr, ca, headers, gitlabURL, gitlabCA, demoFlowDefinition, demoFlowMR, demoFlowWorkflowID)
}

// checkDemoFlow runs that flow in-process (demo --check): it must finish
// and post a review with comments, which it prints.
func checkDemoFlow(ctx context.Context, out io.Writer, a *appliance.Appliance, addr string, md metadata.MD, api *gitlabtest.API) error {
	conn, err := dialDemoAgent(a, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	fmt.Fprintln(out, "\nA Code Review flow through the Agent Platform (this process plays Workhorse):")
	status, err := runFlow(ctx, contract.NewDuoWorkflowClient(conn), workhorse.Session{Metadata: md, GitLab: api, OAuthToken: api.Token},
		demoFlowWorkflowID, demoFlowDefinition, demoFlowMR, out)
	if err != nil {
		return fmt.Errorf("demo code review: %w", err)
	}
	if status != "FINISHED" {
		return fmt.Errorf("demo code review ended with %s", status)
	}
	posts := api.ReviewPosts()
	if len(posts) == 0 {
		return fmt.Errorf("demo code review: no review was posted")
	}
	if p := codereview.Parse(posts[len(posts)-1].ReviewOutput); len(p.Comments) == 0 || p.Invalid > 0 {
		return fmt.Errorf("demo code review: the posted review has %d comments (%d invalid)", len(p.Comments), p.Invalid)
	}
	printNotes(out, api, api.Token, demoFlowProject, demoFlowMR)
	return nil
}
