package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// lockworkerMain implements `lockworker DIR`, the command that `netops lock run`
// runs in the stress scripts: under the lock it reads DIR/counter, writes it
// back incremented and appends "TOKEN ENTER_NS EXIT_NS" to DIR/log. Without
// mutual exclusion the counter loses increments and intervals overlap.
func lockworkerMain() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: lockworker DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	token := os.Getenv("NETOPS_LOCK_TOKEN")
	if token == "" {
		fmt.Fprintln(os.Stderr, "lockworker: NETOPS_LOCK_TOKEN not set")
		os.Exit(2)
	}
	enter := time.Now().UnixNano()
	// LOCKWORKER_KILL_PARENT=1: every third holder SIGKILLs the netops that
	// holds the lock for it, then goes on working: the lock must stay held
	// until this command exits.
	if os.Getenv("LOCKWORKER_KILL_PARENT") == "1" {
		if tok, _ := strconv.Atoi(token); tok%3 == 0 {
			_ = syscall.Kill(os.Getppid(), syscall.SIGKILL)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "counter"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	// Widen the window a broken lock would show (LOCKWORKER_MS, default 1).
	ms, err := strconv.Atoi(os.Getenv("LOCKWORKER_MS"))
	if err != nil || ms < 1 {
		ms = 1
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	if err := os.WriteFile(filepath.Join(dir, "counter"), []byte(strconv.Itoa(n+1)), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exit := time.Now().UnixNano()
	f, err := os.OpenFile(filepath.Join(dir, "log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(f, "%s %d %d\n", token, enter, exit)
	f.Close()
	os.Exit(0)
}

// lockstressMain implements `lockstress PROCS ROUNDS DIR NETOPS-ARGS...`: PROCS
// concurrent loops each run `netops NETOPS-ARGS... -- lockworker DIR` ROUNDS
// times, then it checks DIR/log and DIR/counter: counter exact, no two
// intervals overlap, tokens strictly increasing in interval order.
func lockstressMain() {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: lockstress PROCS ROUNDS DIR NETOPS-ARGS...")
		os.Exit(2)
	}
	procs, _ := strconv.Atoi(os.Args[1])
	rounds, _ := strconv.Atoi(os.Args[2])
	dir := os.Args[3]
	args := append(append([]string{}, os.Args[4:]...), "--", "lockworker", dir)
	// LOCKSTRESS_KILL=1: SIGKILL some netops processes at random moments. The
	// lock must stay safe (no overlap) and live (no deadlock); killed runs
	// simply do not count.
	kill := os.Getenv("LOCKSTRESS_KILL") == "1"
	// LOCKSTRESS_URLS="U1 U2 ...": loop p uses NETOPS_BACKEND_URL=U(p mod n),
	// so each client can prefer its own node of a cluster.
	urls := strings.Fields(os.Getenv("LOCKSTRESS_URLS"))
	// LOCKSTRESS_ALLOW_LOST=1: a run that lost its lease (exit 76, as when
	// the node a holder talks to dies) is counted, not failed; its worker
	// may or may not have run, so the log decides the expected count.
	allowLost := os.Getenv("LOCKSTRESS_ALLOW_LOST") == "1"
	lost := 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	killed := 0
	start := time.Now()
	for p := 0; p < procs; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				cmd := exec.Command("netops", args...)
				if len(urls) > 0 {
					cmd.Env = append(os.Environ(), "NETOPS_BACKEND_URL="+urls[p%len(urls)])
				}
				var out strings.Builder
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				if kill && (p+r)%3 == 0 {
					time.AfterFunc(time.Duration((p*7+r*13)%40)*time.Millisecond, func() { _ = cmd.Process.Kill() })
				}
				err := cmd.Wait()
				var ee *exec.ExitError
				if kill && errors.As(err, &ee) && ee.ExitCode() == -1 {
					mu.Lock()
					killed++
					mu.Unlock()
					continue
				}
				if allowLost && errors.As(err, &ee) && ee.ExitCode() == 76 {
					mu.Lock()
					lost++
					mu.Unlock()
					continue
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("netops %s: %v: %s", strings.Join(args, " "), err, out.String()))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		fmt.Fprintf(os.Stderr, "lockstress: %d runs failed; first: %s\n", len(failures), failures[0])
		os.Exit(1)
	}
	want := procs * rounds
	if allowLost {
		fmt.Printf("lockstress: %d runs lost their lease (exit 76)\n", lost)
		if lost > 0 {
			want = -1
		}
	}
	if kill {
		want = -1 // workers of killed runs may or may not have run: count the log
		fmt.Printf("lockstress: %d netops processes killed with SIGKILL\n", killed)
	}
	if err := checkLockLog(dir, want); err != nil {
		fmt.Fprintf(os.Stderr, "lockstress: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("lockstress: %d runs by %d processes in %s: counter exact, no overlap, tokens increasing\n",
		procs*rounds, procs, time.Since(start).Round(time.Millisecond))
	_ = want
	os.Exit(0)
}

// retryMain implements `retry TIMES PROG ARGS...`: run PROG until it
// succeeds, at most TIMES times, 500ms apart; a readiness wait for servers
// that accept connections before they can serve (a cluster electing its
// JetStream leader), not a timing assertion.
func retryMain() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: retry TIMES PROG ARGS...")
		os.Exit(2)
	}
	times, _ := strconv.Atoi(os.Args[1])
	var last []byte
	for i := 0; i < times; i++ {
		out, err := exec.Command(os.Args[2], os.Args[3:]...).CombinedOutput()
		if err == nil {
			os.Stdout.Write(out)
			os.Exit(0)
		}
		last = out
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "retry: %s failed %d times; last output:\n%s", os.Args[2], times, last)
	os.Exit(1)
}

// tokengtMain implements `tokengt [-eq] A.json B.json`: succeed when the
// "token" of the lease in B (`lock acquire -o json` output) is greater
// than in A (with -eq: the same, as for a reentrant acquire).
func tokengtMain() {
	eq := len(os.Args) > 1 && os.Args[1] == "-eq"
	if eq {
		os.Args = append(os.Args[:1], os.Args[2:]...)
	}
	read := func(path string) uint64 {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		var v struct {
			Token uint64 `json:"token"`
		}
		if err := json.Unmarshal(data, &v); err != nil || v.Token == 0 {
			fmt.Fprintf(os.Stderr, "tokengt: no token in %s: %v\n", path, err)
			os.Exit(2)
		}
		return v.Token
	}
	a, b := read(os.Args[1]), read(os.Args[2])
	if eq {
		if a != b {
			fmt.Fprintf(os.Stderr, "tokengt: token %d differs from %d\n", b, a)
			os.Exit(1)
		}
		fmt.Printf("token %d = %d\n", b, a)
		return
	}
	if b <= a {
		fmt.Fprintf(os.Stderr, "tokengt: token %d is not greater than %d\n", b, a)
		os.Exit(1)
	}
	fmt.Printf("token %d > %d\n", b, a)
}

// checkLockLog verifies the log; want < 0 means "as many as the log has lines".
func checkLockLog(dir string, want int) error {
	data, err := os.ReadFile(filepath.Join(dir, "counter"))
	if err != nil {
		return err
	}
	counter, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	f, err := os.Open(filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	defer f.Close()
	type iv struct {
		token       uint64
		enter, exit int64
	}
	var ivs []iv
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v iv
		if _, err := fmt.Sscanf(sc.Text(), "%d %d %d", &v.token, &v.enter, &v.exit); err != nil {
			return fmt.Errorf("bad log line %q", sc.Text())
		}
		ivs = append(ivs, v)
	}
	if want < 0 {
		want = len(ivs)
	}
	if counter != want {
		return fmt.Errorf("counter is %d, want %d: increments were lost", counter, want)
	}
	if len(ivs) != want {
		return fmt.Errorf("%d log lines, want %d", len(ivs), want)
	}
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].enter < ivs[j].enter })
	// around shows the intervals next to a violation (times in ms from the
	// first entry), for whoever has to find out why.
	around := func(i int) string {
		var b strings.Builder
		for k := max(0, i-4); k < min(len(ivs), i+4); k++ {
			fmt.Fprintf(&b, "\n  token %d: %.1f-%.1f ms", ivs[k].token,
				float64(ivs[k].enter-ivs[0].enter)/1e6, float64(ivs[k].exit-ivs[0].enter)/1e6)
		}
		return b.String()
	}
	for i := 1; i < len(ivs); i++ {
		if ivs[i].enter < ivs[i-1].exit {
			return fmt.Errorf("overlap: token %d entered at %d before token %d exited at %d%s",
				ivs[i].token, ivs[i].enter, ivs[i-1].token, ivs[i-1].exit, around(i))
		}
		if ivs[i].token <= ivs[i-1].token {
			return fmt.Errorf("tokens not increasing: %d after %d%s", ivs[i].token, ivs[i-1].token, around(i))
		}
	}
	return nil
}
