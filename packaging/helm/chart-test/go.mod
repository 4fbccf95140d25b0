module github.com/duo-confidential/duo-confidential/packaging/helm/chart-test

go 1.26.8

require (
	helm.sh/helm/v3 v3.22.0 // indirect
	k8s.io/api v0.37.2 // indirect
	k8s.io/pod-security-admission v0.37.2 // indirect
)
