// Package charttest checks the duo-confidential Helm chart without a
// cluster: helm lint, helm template over a values matrix (TLS modes,
// air-gapped, existing Secrets, 1 and 3 replicas), every rendered object
// strictly decoded into the Kubernetes API types, pod specs against the
// restricted Pod Security Standard (k8s.io/pod-security-admission), and the
// rendered appliance configuration through the real binary's `config
// check`. It is a Go module of its own so Helm's and Kubernetes'
// dependencies stay out of the appliance's and packaging's builds; all of
// it is in the tests.
package charttest
