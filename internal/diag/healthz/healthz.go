// Package healthz serves diag results over HTTP: a health endpoint for load
// balancers and uptime checkers (200 or 503) and a Prometheus scrape endpoint.
package healthz

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/diag/probe"
	"github.com/netops-dev/netops/internal/render"
)

// Runner runs one diag round.
type Runner func(ctx context.Context) *diag.Report

// Handler runs checks on demand and caches the report for CacheFor, so a
// scraper polling every second does not turn into a probe storm. Requests that
// arrive while a round runs wait for that round and get its report.
type Handler struct {
	Run      Runner
	CacheFor time.Duration
	Now      func() time.Time

	mu      sync.Mutex
	last    *diag.Report
	lastAt  time.Time
	running *round
	rounds  sync.WaitGroup
}

// round is one run of the checks, shared by every request waiting for it.
type round struct {
	done chan struct{}
	rep  *diag.Report
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// report returns a fresh enough report, running checks when needed.
func (h *Handler) report(ctx context.Context) *diag.Report {
	h.mu.Lock()
	if h.last != nil && h.now().Sub(h.lastAt) < h.CacheFor {
		rep := h.last
		h.mu.Unlock()
		return rep
	}
	r := h.running
	if r == nil {
		r = &round{done: make(chan struct{})}
		h.running = r
		h.rounds.Add(1)
		go func() {
			defer h.rounds.Done()
			// The round belongs to every waiter, not to the request that started it.
			rep := h.Run(context.WithoutCancel(ctx))
			h.mu.Lock()
			r.rep = rep
			h.last, h.lastAt, h.running = rep, h.now(), nil
			h.mu.Unlock()
			close(r.done)
		}()
	}
	h.mu.Unlock()
	select {
	case <-r.done:
		return r.rep
	case <-ctx.Done():
		return nil
	}
}

// Wait blocks until no round is running (for a clean shutdown).
func (h *Handler) Wait() { h.rounds.Wait() }

// ServeHTTP answers:
//
//	GET /         and /healthz: 200 when the worst status is OK or WARNING, else 503;
//	              JSON report, or Prometheus text when the Accept header asks for
//	              text/plain or OpenMetrics (or ?format=prometheus)
//	GET /metrics: Prometheus text, always 200
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case "/", "/healthz", "/metrics":
	default:
		http.NotFound(w, r)
		return
	}
	rep := h.report(r.Context())
	if rep == nil {
		return // client went away
	}
	prom := r.URL.Path == "/metrics" || r.URL.Query().Get("format") == "prometheus" || wantsText(r.Header.Get("Accept"))
	code := http.StatusOK
	if r.URL.Path != "/metrics" && (rep.Status == probe.Critical || rep.Status == probe.Unknown) {
		code = http.StatusServiceUnavailable
	}
	var buf bytes.Buffer
	var err error
	if prom {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		err = render.DiagReport(&buf, render.Prometheus, render.Mode{}, rep)
	} else {
		w.Header().Set("Content-Type", "application/json")
		err = render.DiagReport(&buf, render.JSON, render.Mode{}, rep)
	}
	if err != nil {
		http.Error(w, "rendering failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method == http.MethodGet {
		w.Write(buf.Bytes())
	}
}

func wantsText(accept string) bool {
	a := strings.ToLower(accept)
	return strings.Contains(a, "openmetrics") ||
		(strings.Contains(a, "text/plain") && !strings.Contains(a, "application/json"))
}
