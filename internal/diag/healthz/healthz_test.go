package healthz

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/diag"
	"github.com/netops-dev/netops/internal/diag/probe"
)

func TestHandler(t *testing.T) {
	var runs atomic.Int32
	status := probe.OK
	var mu sync.Mutex
	h := &Handler{CacheFor: time.Hour, Run: func(ctx context.Context) *diag.Report {
		runs.Add(1)
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return &diag.Report{Status: status, Score: 100, Band: "EXCELLENT", Counts: map[string]int{},
			Targets: []diag.TargetReport{{Name: "web", Checks: []diag.CheckResult{{Rule: "http", Check: "http", Status: status}}}}}
	}}
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(path, accept string) (int, string, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	// Ten concurrent requests share one round.
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); get("/healthz", "") }()
	}
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Errorf("%d rounds for concurrent requests, want 1", n)
	}
	code, ct, body := get("/", "")
	if code != 200 || ct != "application/json" || !strings.Contains(body, `"status": "OK"`) {
		t.Errorf("GET / = %d %s %q", code, ct, body)
	}
	code, ct, body = get("/", "text/plain")
	if code != 200 || !strings.HasPrefix(ct, "text/plain") || !strings.Contains(body, "netops_diag_score 100") {
		t.Errorf("GET / text = %d %s %q", code, ct, body)
	}
	if code, _, _ := get("/nope", ""); code != 404 {
		t.Errorf("GET /nope = %d", code)
	}

	// A failing report: 503 on the health endpoint, 200 on /metrics.
	mu.Lock()
	status = probe.Critical
	mu.Unlock()
	h.CacheFor = 0
	if code, _, body := get("/healthz", ""); code != 503 || !strings.Contains(body, "CRITICAL") {
		t.Errorf("critical health = %d %q", code, body)
	}
	if code, _, _ := get("/metrics", ""); code != 200 {
		t.Errorf("metrics = %d, want 200", code)
	}

	// Without caching, requests that arrive during a round share it rather
	// than queueing one round each.
	runs.Store(0)
	var wg2 sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg2.Add(1)
		go func() { defer wg2.Done(); get("/healthz", "") }()
	}
	wg2.Wait()
	h.Wait()
	if n := runs.Load(); n > 3 {
		t.Errorf("%d rounds for 5 concurrent uncached requests; waiters should share a round", n)
	}
}
