//go:build !duo_production

package main

import (
	"fmt"
	"io"

	"github.com/duo-confidential/duo-confidential/appliance"
)

// printDemoFlow prints the command that runs DAP Code Review on the demo
// GitLab's sample merge request and shows the notes it posted.
func printDemoFlow(out io.Writer, a *appliance.Appliance, addr, headers, gitlabURL, gitlabCA string) {
	ca := ""
	if f := a.CACertificateFile(); f != "" {
		ca = " --ca " + f
	}
	fmt.Fprintf(out, `
A Code Review flow (code_review/v1) on the demo GitLab's merge request !1, then the notes it posted:

  duo-confidential agent flow --addr %[1]s%[2]s --headers %[3]s \
    --gitlab %[4]s --gitlab-ca %[5]s --workflow-id 2 code_review/v1 1

  (The sandbox model cannot write a review: with it the flow shows its steps and ends FAILED, posting
  nothing — never a malformed review. Point the appliance at a real model to see comments.)
`, addr, ca, headers, gitlabURL, gitlabCA)
}
