// Package contract is the Agent Platform's gRPC wire contract (service
// DuoWorkflow, no proto package): contract.proto and the Go generated from
// it.
//
// Regenerate after editing contract.proto, from the repository root:
//
//	go generate ./gateway/agentplatform/contract
//
// The generators are pinned by go.mod's tool directive (protoc-gen-go from
// google.golang.org/protobuf, protoc-gen-go-grpc from
// google.golang.org/grpc/cmd/protoc-gen-go-grpc); protoc is Debian's
// protobuf-compiler (libprotoc 3.21.12 in bookworm). CI regenerates and
// fails when the committed files differ (.ci/run, "proto drift").
package contract

//go:generate sh -c "protoc -I . --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative contract.proto && go tool goimports -w contract.pb.go contract_grpc.pb.go"
