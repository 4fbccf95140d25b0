# The developer's fast loop. `make check` runs without root in a few minutes:
# formatting, vet, the pinned linters (go.mod `tool` directives, so they
# cannot silently go missing) and the unit tests of both modules. The full
# CI run (packages, VM image, fuzzing, -race) is `.ci/run`.
#
#   make check      gofmt + goimports, vet, staticcheck, go test ./... (both modules)
#   make fmt        rewrite files with gofmt and goimports
#   make lint       vet and staticcheck only
#   make test       go test ./... (main module)
#   make race       go test -race ./... (main module)
#   make generate   regenerate checked-in generated code (go generate ./...)
#   make build      the binary, ./duo-confidential

GO ?= go
# -short skips the slowest end-to-end cases that set testing.Short checks.
TESTFLAGS ?= -short

.PHONY: check fmt fmt-check lint test race generate build

check: fmt-check lint test

fmt-check:
	@out="$$(gofmt -l . ; $(GO) tool goimports -l .)"; \
	if [ -n "$$out" ]; then echo "needs formatting (make fmt):"; echo "$$out" | sort -u; exit 1; fi

fmt:
	gofmt -w .
	$(GO) tool goimports -w .

lint:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	cd packaging && $(GO) vet ./...

test:
	$(GO) test $(TESTFLAGS) ./...
	cd packaging && $(GO) test $(TESTFLAGS) ./...

race:
	$(GO) test -race ./...

generate:
	$(GO) generate ./...

build:
	$(GO) build -o duo-confidential ./cmd/duo-confidential
