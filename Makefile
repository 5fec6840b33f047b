# netops — build, run, test, bench.
#   make run    build and run `netops diag` on configs/netops.example.yaml (loopback only)
#   make test   go vet, gofmt check, go test -race ./... (unit + testscript end-to-end)
#   make bench  benchmarks against anchor tools (installs them with apt-get; see bench/)

GO       ?= go
PREFIX   ?= /usr/local
DESTDIR  ?=
BIN      := bin/netops
PKG      := github.com/netops-dev/netops
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse -q --verify HEAD 2>/dev/null || echo unknown)
DATE     ?= $(shell git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
GOFILES   = $(shell git ls-files -co --exclude-standard -- '*.go')

.PHONY: all build run test vet fmt-check lint bench man install clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/netops

# The example has checks that fail on a machine without sshd or a web server on
# 127.0.0.1:8080: that is the point of a diagnosis, so the exit code is shown,
# not treated as a build failure.
run: build
	@./$(BIN) --config configs/netops.example.yaml diag; rc=$$?; \
	  echo "netops diag exited $$rc (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)"; \
	  case $$rc in 0|1|2|3) ;; *) exit $$rc ;; esac

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

test: vet fmt-check
	$(GO) test -race -count=1 ./...

lint: vet fmt-check
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck ./...; else echo "staticcheck not installed; ran go vet and gofmt only"; fi

bench: build
	bench/run.sh

man:
	$(GO) run ./cmd/genman man
	@echo "man pages written to man/ (man -l man/netops.1)"

install: build man
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/netops
	install -m 0644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	./$(BIN) completion bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/netops
	./$(BIN) completion zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_netops
	./$(BIN) completion fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/netops.fish

clean:
	rm -rf bin man
