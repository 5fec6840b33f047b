package transfer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HTTP is a read-only HTTP(S) source. Paths are URLs. A resumed download
// asks for the rest with Range and If-Range (the ETag, else the
// Last-Modified date of the first response), so a file that changed on the
// server is sent whole again instead of being spliced.
type HTTP struct {
	Client    *http.Client
	UserAgent string
}

var _ FS = (*HTTP)(nil)

// DefaultHTTPIdle is how long a download may go without receiving data.
const DefaultHTTPIdle = 60 * time.Second

// NewHTTP returns an HTTP source using client (NewHTTPClient(60s) when nil).
func NewHTTP(client *http.Client, userAgent string) *HTTP {
	if client == nil {
		client = NewHTTPClient(DefaultHTTPIdle)
	}
	return &HTTP{Client: client, UserAgent: userAgent}
}

func (h *HTTP) String() string { return "http" }

// Close implements FS.
func (h *HTTP) Close() error {
	h.Client.CloseIdleConnections()
	return nil
}

// HTTPStatusError is a response status that is not a success.
type HTTPStatusError struct {
	Method string
	URL    string
	Status int
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
}

// Unwrap maps 404/410 to fs.ErrNotExist and 401/403 to fs.ErrPermission.
func (e *HTTPStatusError) Unwrap() error {
	switch e.Status {
	case http.StatusNotFound, http.StatusGone:
		return fs.ErrNotExist
	case http.StatusUnauthorized, http.StatusForbidden:
		return fs.ErrPermission
	}
	return nil
}

// Temporary reports whether retrying may help (5xx, 408, 429).
func (e *HTTPStatusError) Temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout
}

func (h *HTTP) newRequest(ctx context.Context, method, url string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	if h.UserAgent != "" {
		req.Header.Set("User-Agent", h.UserAgent)
	}
	// Identity encoding: byte ranges and sizes must refer to the file itself.
	req.Header.Set("Accept-Encoding", "identity")
	return req, nil
}

// Stat implements FS with a HEAD request; a server that refuses HEAD
// (405, 501, 401, 403) gives an Info of unknown size and the GET decides.
func (h *HTTP) Stat(ctx context.Context, url string) (Info, error) {
	req, err := h.newRequest(ctx, http.MethodHead, url)
	if err != nil {
		return Info{}, err
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return Info{}, err
	}
	resp.Body.Close()
	info := Info{Path: url, Size: -1, Mode: 0o644}
	switch {
	case resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotImplemented ||
		resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		// Some servers refuse HEAD (or sign URLs per method): the GET decides.
		return info, nil
	case resp.StatusCode >= 300:
		return Info{}, &HTTPStatusError{Method: http.MethodHead, URL: url, Status: resp.StatusCode}
	}
	if resp.ContentLength >= 0 {
		info.Size = resp.ContentLength
	}
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		info.ModTime = t
	}
	return info, nil
}

// Walk implements FS: HTTP has no directory listing.
func (h *HTTP) Walk(context.Context, string, func(Info) error) error {
	return errors.New("an http(s) source is a single file: it has no directory listing")
}

// Open implements FS: OpenRange without a validator.
func (h *HTTP) Open(ctx context.Context, url string, offset int64) (*Reader, error) {
	return h.OpenRange(ctx, url, offset, "")
}

// OpenRange opens url at offset. With offset > 0 it sends Range, and
// If-Range with validator (the Reader.Validator of the first response: its
// strong ETag, else its Last-Modified date), so the server sends the whole
// file instead of a range of a different version; the Reader's Offset is 0
// then.
func (h *HTTP) OpenRange(ctx context.Context, url string, offset int64, validator string) (*Reader, error) {
	req, err := h.newRequest(ctx, http.MethodGet, url)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
		if validator != "" {
			req.Header.Set("If-Range", validator)
		}
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return nil, err
	}
	r := &Reader{Reader: resp.Body, Closer: resp.Body, Size: -1}
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		r.ModTime = t
	}
	switch resp.StatusCode {
	case http.StatusOK:
		r.Offset = 0
		r.Size = resp.ContentLength
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || offset == 0 || start != offset {
			resp.Body.Close()
			return nil, fmt.Errorf("GET %s: unusable Content-Range %q for a request from byte %d", url, resp.Header.Get("Content-Range"), offset)
		}
		r.Offset, r.Size = start, total
	case http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		if offset > 0 {
			// The file shrank or our prefix is already all of it: start over.
			return h.OpenRange(ctx, url, 0, "")
		}
		return nil, &HTTPStatusError{Method: http.MethodGet, URL: url, Status: resp.StatusCode}
	default:
		resp.Body.Close()
		return nil, &HTTPStatusError{Method: http.MethodGet, URL: url, Status: resp.StatusCode}
	}
	if v := resp.Header.Get("ETag"); v != "" && !strings.HasPrefix(v, "W/") {
		r.Validator = v
	} else if v := resp.Header.Get("Last-Modified"); v != "" {
		r.Validator = v
	}
	if r.ModTime.IsZero() {
		r.ModTime = time.Now()
	}
	return r, nil
}

// parseContentRange parses "bytes START-END/TOTAL" (TOTAL may be "*").
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

// NewHTTPClient returns the client netops downloads with: proxies from the
// environment, 10 s to connect and 30 s for the response headers, and a
// connection that stays silent for idle fails (an error that is retried
// and resumed) instead of hanging a cron job forever.
func NewHTTPClient(idle time.Duration) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 30 * time.Second
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: c, idle: idle}, nil
	}
	return &http.Client{Transport: t}
}

// idleConn fails a Read that waits longer than idle for data.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if c.idle > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Read(p)
}
