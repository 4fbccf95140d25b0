package gitlabconnect

//go:generate go tool genqlient genqlient.yaml
