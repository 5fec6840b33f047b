package transfer

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/config"
)

// rangeServer serves data with http.ServeContent (Range, If-Range, ETag).
// While cutAt > 0, a request without Range is aborted after cutAt bytes
// (once). It records the Range and If-Range headers it saw.
type rangeServer struct {
	data    []byte
	etag    string
	cutAt   atomic.Int64
	mu      sync.Mutex
	ranges  []string
	ifRange []string
	sent    atomic.Int64
}

func (s *rangeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	s.ifRange = append(s.ifRange, r.Header.Get("If-Range"))
	s.mu.Unlock()
	if s.etag != "" {
		w.Header().Set("ETag", s.etag)
	}
	if r.Method != http.MethodGet {
		http.ServeContent(w, r, "file.bin", time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), bytes.NewReader(s.data))
		return
	}
	if cut := s.cutAt.Swap(0); cut > 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(s.data)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(s.data[:cut])
		s.sent.Add(cut)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection is cut mid-body
	}
	cw := &countingWriter{ResponseWriter: w, n: &s.sent}
	http.ServeContent(cw, r, "file.bin", time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), bytes.NewReader(s.data))
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func httpOpts() Options {
	o := localOpts()
	o.Retries = 3
	return o
}

func TestHTTPDownloadResumesWithRange(t *testing.T) {
	size := 8 << 20
	rs := &rangeServer{data: randBytes(9, size), etag: `"v1"`}
	rs.cutAt.Store(int64(size / 2))
	srv := httptest.NewServer(rs)
	defer srv.Close()
	dst := t.TempDir()
	res, err := Run(context.Background(), loc(t, srv.URL+"/dir/file.bin"), loc(t, dst), httpOpts())
	if err != nil {
		t.Fatal(err)
	}
	got := readFile(t, filepath.Join(dst, "file.bin"))
	if sum(got) != sum(rs.data) {
		t.Fatal("downloaded file has the wrong hash")
	}
	r := res.Receipts[0]
	if r.Attempts != 2 || r.ResumedFrom <= 0 || r.ResumedFrom > int64(size/2) {
		t.Fatalf("receipt %+v: want a resume from at most the cut", r)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	last := len(rs.ranges) - 1
	if rs.ranges[last] != "bytes="+strconv.FormatInt(r.ResumedFrom, 10)+"-" || rs.ifRange[last] != `"v1"` {
		t.Errorf("resume request had Range %q If-Range %q", rs.ranges[last], rs.ifRange[last])
	}
	if sent := rs.sent.Load(); sent > int64(size)*110/100 {
		t.Errorf("server sent %d bytes for a %d-byte file", sent, size)
	}
	fi, _ := os.Stat(filepath.Join(dst, "file.bin"))
	if !fi.ModTime().Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("mtime %v, want the Last-Modified date", fi.ModTime())
	}
	noTemps(t, dst)
}

// A file that changed between the cut and the resume: If-Range makes the
// server send it whole, and the result is the new file, not a splice.
func TestHTTPResumeAfterChangeStartsOver(t *testing.T) {
	size := 4 << 20
	rs := &rangeServer{data: randBytes(10, size), etag: `"v1"`}
	rs.cutAt.Store(int64(size / 2))
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			once.Do(func() { rs.data = randBytes(11, size); rs.etag = `"v2"` })
		}
		rs.ServeHTTP(w, r)
	}))
	defer srv.Close()
	dst := t.TempDir()
	if _, err := Run(context.Background(), loc(t, srv.URL+"/f"), loc(t, dst), httpOpts()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dst, "f")); sum(got) != sum(randBytes(11, size)) {
		t.Fatal("the result is not the new version of the file")
	}
}

func TestHTTPPinnedSHA256AndErrors(t *testing.T) {
	rs := &rangeServer{data: []byte("payload")}
	mux := http.NewServeMux()
	mux.Handle("/f", rs)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	dst := t.TempDir()
	o := httpOpts()
	o.SHA256 = sum([]byte("other"))
	_, err := Run(context.Background(), loc(t, srv.URL+"/f"), loc(t, filepath.Join(dst, "f")), o)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("pinned mismatch: %v, want ErrChecksum", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "f")); err == nil {
		t.Error("file failing its pinned hash landed")
	}
	noTemps(t, dst)
	o.SHA256 = sum([]byte("payload"))
	if _, err := Run(context.Background(), loc(t, srv.URL+"/f"), loc(t, filepath.Join(dst, "f")), o); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), loc(t, srv.URL+"/missing"), loc(t, dst), httpOpts())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("404: %v, want fs.ErrNotExist", err)
	}
}

// A 503 is temporary: retried; a 403 is not.
func TestHTTPRetriesServerErrors(t *testing.T) {
	var calls atomic.Int64
	data := []byte("eventually")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/forbidden":
			if r.Method == http.MethodGet {
				calls.Add(1)
			}
			http.Error(w, "no", http.StatusForbidden)
		case r.Method == http.MethodGet && calls.Add(1) == 1:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
		}
	}))
	defer srv.Close()
	dst := t.TempDir()
	res, err := Run(context.Background(), loc(t, srv.URL+"/f"), loc(t, dst), httpOpts())
	if err != nil {
		t.Fatal(err)
	}
	if res.Receipts[0].Attempts != 2 {
		t.Errorf("attempts %d, want 2 (one 503, then success)", res.Receipts[0].Attempts)
	}
	checkFile(t, filepath.Join(dst, "f"), "eventually")
	calls.Store(0)
	_, err = Run(context.Background(), loc(t, srv.URL+"/forbidden"), loc(t, dst), httpOpts())
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("403: %v, want fs.ErrPermission", err)
	}
	if calls.Load() != 1 {
		t.Errorf("403: %d GETs, want one (never retried)", calls.Load())
	}
}

// A server that stops sending in the middle of the body: the idle timeout
// turns the hang into an error, the retry resumes, the file completes.
func TestHTTPStalledDownloadResumes(t *testing.T) {
	size := 1 << 20
	data := randBytes(18, size)
	release := make(chan struct{})
	defer close(release)
	var stalled atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"s1"`)
		if r.Method == http.MethodGet && r.Header.Get("Range") == "" && stalled.CompareAndSwap(false, true) {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(data[:size/2])
			w.(http.Flusher).Flush()
			select { // then nothing: a stalled server
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	o := httpOpts()
	o.Dial = func(ctx context.Context, e config.Endpoint) (FS, error) {
		if e.Kind == config.EndpointHTTP {
			return NewHTTP(NewHTTPClient(300*time.Millisecond), "t"), nil
		}
		return Local{}, nil
	}
	dst := t.TempDir()
	res, err := Run(context.Background(), loc(t, srv.URL+"/f"), loc(t, dst), o)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Receipts[0]; r.Attempts != 2 || r.ResumedFrom <= 0 {
		t.Errorf("receipt %+v: want a second attempt resuming", r)
	}
	if sum(readFile(t, filepath.Join(dst, "f"))) != sum(data) {
		t.Fatal("wrong hash")
	}
}
