//go:build unix

package local_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netops-dev/netops/internal/lock"
)

// The process tests re-execute the test binary: with helperEnv set,
// TestHelperProcess plays one netops process (see helperMain) instead of
// being a test.
const helperEnv = "NETOPS_LOCAL_LOCK_HELPER"

// childTimeout bounds every child process.
const childTimeout = 60 * time.Second

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return // a normal test run: nothing to do
	}
	if err := helperMain(t, mode); err != nil {
		t.Fatalf("helper %s: %v", mode, err)
	}
}

func helperMain(t *testing.T, mode string) error {
	ctx, cancel := context.WithTimeout(context.Background(), childTimeout)
	defer cancel()
	dir := os.Getenv("STATE_DIR")
	l := openLocker(t, dir)
	defer l.Close()
	name := os.Getenv("LOCK_NAME")
	req := lock.Request{
		Name:   name,
		Mode:   lock.Exclusive,
		Holder: lock.Holder{Owner: fmt.Sprintf("pid-%d", os.Getpid()), Host: "localhost", PID: os.Getpid(), Command: "helper " + mode},
		Wait:   lock.WaitForever,
		TTL:    time.Minute,
	}
	switch mode {
	case "counter":
		rounds, err := strconv.Atoi(os.Getenv("ROUNDS"))
		if err != nil {
			return err
		}
		req.Session = true
		return countRounds(ctx, l, req, os.Getenv("WORK_DIR"), rounds)
	case "hold", "wait":
		// Acquire (a waiter shows in the status meanwhile), say so, and
		// stay until killed.
		req.Session = os.Getenv("SESSION") == "1"
		ls, err := l.Acquire(ctx, req)
		if err != nil {
			return err
		}
		fmt.Printf("granted %d\n", ls.Token)
		time.Sleep(childTimeout)
		return errors.New("not killed")
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// countRounds increments the counter file in work under the lock, rounds
// times, logging "token enter exit" (CLOCK_MONOTONIC ns, which all processes
// share) for each round.
func countRounds(ctx context.Context, l lock.Locker, req lock.Request, work string, rounds int) error {
	logf, err := os.OpenFile(filepath.Join(work, "log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	counter := filepath.Join(work, "counter")
	for range rounds {
		ls, err := l.Acquire(ctx, req)
		if err != nil {
			return err
		}
		enter := monotonic()
		n := 0
		if b, err := os.ReadFile(counter); err == nil {
			if n, err = strconv.Atoi(string(b)); err != nil {
				return fmt.Errorf("counter file: %w", err)
			}
		}
		if err := os.WriteFile(counter, []byte(strconv.Itoa(n+1)), 0o600); err != nil {
			return err
		}
		exit := monotonic()
		// One write with O_APPEND: lines of processes do not mix.
		if _, err := fmt.Fprintf(logf, "%d %d %d\n", ls.Token, enter, exit); err != nil {
			return err
		}
		if err := l.Release(ctx, req.Name, req.Owner); err != nil {
			return err
		}
	}
	return nil
}

func monotonic() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// child is a helper process.
type child struct {
	cmd   *exec.Cmd
	lines chan string // its stdout, line by line
}

func startChild(t *testing.T, mode string, env ...string) *child {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), childTimeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode}, env...)...)
	cmd.Stderr = &lockedBuffer{}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, lines: make(chan string, 16)}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return c
}

// granted waits for a hold/wait child to report its grant.
func (c *child) granted(t *testing.T) uint64 {
	t.Helper()
	for line := range c.lines {
		if tok, ok := strings.CutPrefix(line, "granted "); ok {
			n, err := strconv.ParseUint(tok, 10, 64)
			if err != nil {
				t.Fatalf("child said %q", line)
			}
			return n
		}
	}
	err := c.cmd.Wait()
	t.Fatalf("child ended without a grant: %v\n%s", err, c.cmd.Stderr)
	return 0
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Eight processes take turns at an exclusive lock to increment a counter
// file: no increment is lost, no two processes are inside at once, and the
// fencing tokens increase in the order of the grants.
func TestProcessesMutualExclusion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	const procs, rounds = 8, 25
	state, work := t.TempDir(), t.TempDir()
	var children []*child
	for range procs {
		children = append(children, startChild(t, "counter",
			"STATE_DIR="+state, "WORK_DIR="+work, "LOCK_NAME=counter", "ROUNDS="+strconv.Itoa(rounds)))
	}
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, c.cmd.Stderr)
		}
	}
	b, err := os.ReadFile(filepath.Join(work, "counter"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != strconv.Itoa(procs*rounds) {
		t.Fatalf("counter = %s, want %d", b, procs*rounds)
	}
	logb, err := os.ReadFile(filepath.Join(work, "log"))
	if err != nil {
		t.Fatal(err)
	}
	type round struct {
		token       uint64
		enter, exit int64
	}
	var rs []round
	for line := range strings.Lines(string(logb)) {
		var r round
		if _, err := fmt.Sscanf(line, "%d %d %d", &r.token, &r.enter, &r.exit); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		rs = append(rs, r)
	}
	if len(rs) != procs*rounds {
		t.Fatalf("%d log lines, want %d", len(rs), procs*rounds)
	}
	slices.SortFunc(rs, func(a, b round) int { return int(a.enter - b.enter) })
	for i := 1; i < len(rs); i++ {
		p, r := rs[i-1], rs[i]
		if r.enter <= p.exit {
			t.Fatalf("round with token %d entered at %d, before the round with token %d left at %d", r.token, r.enter, p.token, p.exit)
		}
		if r.token <= p.token {
			t.Fatalf("token %d granted after token %d", r.token, p.token)
		}
	}
	// Every ticket is gone, and so is every lock file.
	l := openLocker(t, state)
	sts, err := l.Status(t.Context(), "")
	if err != nil || len(sts) != 0 {
		t.Fatalf("Status after the run = %+v, %v; want nothing", sts, err)
	}
	if files := lockFiles(t, state); len(files) != 0 {
		t.Fatalf("lock files left: %v", files)
	}
}

// A holder killed with SIGKILL frees the lock at once, long before its TTL:
// the waiter blocked on the holder's lock file wakes up.
func TestProcessCrashFreesLock(t *testing.T) {
	state := t.TempDir()
	holder := startChild(t, "hold", "STATE_DIR="+state, "LOCK_NAME=job", "SESSION=1")
	tok := holder.granted(t)

	l := openLocker(t, state)
	ch := make(chan error, 1)
	var got *lock.Lease
	go func() {
		var err error
		// The child's lease has a TTL of a minute: only the crash
		// detection can grant this request within its wait.
		got, err = l.Acquire(t.Context(), lock.Request{Name: "job", Mode: lock.Exclusive,
			Holder: lock.Holder{Owner: "next"}, Wait: 20 * time.Second, Session: true})
		ch <- err
	}()
	waitForWaiters(t, l, "job", 1)
	killed := time.Now()
	holder.kill(t)
	if err := <-ch; err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	t.Logf("granted %s after SIGKILL of the holder", time.Since(killed))
	if got.Token <= tok {
		t.Fatalf("token %d after the dead holder's %d", got.Token, tok)
	}
	st := status1(t, l, "job")
	if len(st.Holders) != 1 || st.Holders[0].Owner != "next" {
		t.Fatalf("status %+v: want only the new holder", st)
	}
}

// A killed waiter leaves no ticket that blocks the queue; Cleanup reports it.
func TestProcessCrashOfWaiter(t *testing.T) {
	for _, session := range []string{"0", "1"} {
		t.Run("session="+session, func(t *testing.T) {
			state := t.TempDir()
			l1, l2 := openLocker(t, state), openLocker(t, state)
			ctx := t.Context()
			if _, err := l1.Acquire(ctx, lock.Request{Name: "job", Mode: lock.Exclusive, Holder: lock.Holder{Owner: "a"}}); err != nil {
				t.Fatal(err)
			}
			w := startChild(t, "wait", "STATE_DIR="+state, "LOCK_NAME=job", "SESSION="+session)
			waitForWaiters(t, l1, "job", 1)
			w.kill(t)
			if st := status1(t, l1, "job"); len(st.Waiters) != 0 {
				t.Fatalf("status lists a dead waiter: %+v", st)
			}
			cl, err := l2.Cleanup(ctx, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if len(cl.DeadWaiters) != 1 || len(cl.ExpiredLeases) != 0 || cl.DeadWaiters[0].Lock != "job" ||
				cl.DeadWaiters[0].PID != w.cmd.Process.Pid {
				t.Fatalf("Cleanup = %+v; want the dead waiter pid %d", cl, w.cmd.Process.Pid)
			}
			if err := l1.Release(ctx, "job", "a"); err != nil {
				t.Fatal(err)
			}
			if _, err := l2.Acquire(ctx, lock.Request{Name: "job", Mode: lock.Exclusive, Holder: lock.Holder{Owner: "b"}}); err != nil {
				t.Fatalf("Acquire after the dead waiter: %v", err)
			}
		})
	}
}

// Cleanup removes the grant of a killed session holder (nobody touched the
// lock since) and its lock file.
func TestCleanupDeadSessionHolder(t *testing.T) {
	state := t.TempDir()
	holder := startChild(t, "hold", "STATE_DIR="+state, "LOCK_NAME=job", "SESSION=1")
	holder.granted(t)
	holder.kill(t)
	l := openLocker(t, state)
	cl, err := l.Cleanup(t.Context(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(cl.ExpiredLeases) != 1 || cl.ExpiredLeases[0].PID != holder.cmd.Process.Pid || cl.ExpiredLeases[0].Token == 0 {
		t.Fatalf("Cleanup = %+v; want the dead holder", cl)
	}
	if files := lockFiles(t, state); len(files) != 0 {
		t.Fatalf("lock files left: %v", files)
	}
}

func status1(t *testing.T, l lock.Locker, name string) lock.Status {
	t.Helper()
	sts, err := l.Status(t.Context(), name)
	if err != nil || len(sts) != 1 {
		t.Fatalf("Status(%s) = %+v, %v", name, sts, err)
	}
	return sts[0]
}

func waitForWaiters(t *testing.T, l lock.Locker, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(childTimeout)
	for len(status1(t, l, name).Waiters) != n {
		if time.Now().After(deadline) {
			t.Fatalf("no %d waiters on %s after %s", n, name, childTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
