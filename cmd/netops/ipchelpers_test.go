package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ipchandlerMain implements `ipchandler LOG [FAIL-PREFIX]`, an `ipc consume
// --exec` handler: it reads the message body from stdin and appends
// "BODY ID DELIVERIES UNIXNANO" to LOG (one write with O_APPEND, so lines of
// concurrent handlers do not mix). A body starting with FAIL-PREFIX makes
// it exit 3 instead.
func ipchandlerMain() {
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipchandler:", err)
		os.Exit(2)
	}
	if len(os.Args) > 2 && bytes.HasPrefix(body, []byte(os.Args[2])) {
		fmt.Fprintf(os.Stderr, "ipchandler: failing on %q\n", body)
		os.Exit(3)
	}
	line := fmt.Sprintf("%s %s %s %d\n", body, os.Getenv("NETOPS_MSG_ID"), os.Getenv("NETOPS_MSG_DELIVERIES"), time.Now().UnixNano())
	f, err := os.OpenFile(os.Args[1], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipchandler:", err)
		os.Exit(2)
	}
	if _, err := f.WriteString(line); err != nil {
		fmt.Fprintln(os.Stderr, "ipchandler:", err)
		os.Exit(2)
	}
	if err := f.Close(); err != nil {
		os.Exit(2)
	}
}

// ipcstressMain implements
//
//	ipcstress recv|consume PRODUCERS MSGS CONSUMERS DIR QUEUE VISIBILITY
//
// PRODUCERS processes send MSGS messages each ("p<i>-<j>") to QUEUE with
// `netops ipc send --lines` (in 5 sends each, so that producers interleave),
// while CONSUMERS loops run netops consumers on QUEUE: `ipc recv --count 0
// --output json` (recv) or `ipc consume --exec ipchandler` with concurrency
// 2 (consume). With IPCSTRESS_KILL=1 consumers are killed with SIGKILL at
// random moments (the first two runs of each loop, then at random, at most
// 5 per loop) and started again. When the producers
// are done and a consumer finds the queue idle, the loops end; a last
// consumer (not killed) drains what killed ones left in flight.
//
// Then it checks: every message was processed at least once (none lost);
// every processing of one message has a different delivery count (a message
// is handed out again only after a nack or a visibility timeout, and the
// consumers never nack); in consume mode, a message processed twice was
// processed again at least VISIBILITY/2 later (its visibility timeout had
// to pass: the slack is for handler start-up); at most 2 duplicates per
// killed consume process (its in-flight messages) in consume mode; and the
// queue ends empty.
func ipcstressMain() {
	if len(os.Args) != 8 {
		fmt.Fprintln(os.Stderr, "usage: ipcstress recv|consume PRODUCERS MSGS CONSUMERS DIR QUEUE VISIBILITY")
		os.Exit(2)
	}
	mode := os.Args[1]
	producers, _ := strconv.Atoi(os.Args[2])
	msgs, _ := strconv.Atoi(os.Args[3])
	consumers, _ := strconv.Atoi(os.Args[4])
	dir, queue := os.Args[5], os.Args[6]
	vis, err := time.ParseDuration(os.Args[7])
	if err != nil || (mode != "recv" && mode != "consume") || producers < 1 || msgs < 5 || consumers < 1 {
		fmt.Fprintln(os.Stderr, "ipcstress: bad arguments")
		os.Exit(2)
	}
	kill := os.Getenv("IPCSTRESS_KILL") == "1"
	// Cluster runs (lock_cluster-style): IPCSTRESS_PRODUCER_URL and
	// IPCSTRESS_CONSUMER_URLS ("U1 U2 ...", loop c uses U(c mod n)) set
	// NETOPS_BACKEND_URL per role; IPCSTRESS_MARK is a file created once
	// the producers are half done (the script kills a node then);
	// IPCSTRESS_RETRY=1 retries sends and consumers that fail while a node
	// is down (exit 69 or 75). A retried send may have landed in part, so
	// duplicates are then allowed: only "none lost" is checked.
	prodURL := os.Getenv("IPCSTRESS_PRODUCER_URL")
	consURLs := strings.Fields(os.Getenv("IPCSTRESS_CONSUMER_URLS"))
	mark := os.Getenv("IPCSTRESS_MARK")
	retry := os.Getenv("IPCSTRESS_RETRY") == "1"
	withURL := func(cmd *exec.Cmd, url string) {
		if url != "" {
			cmd.Env = append(os.Environ(), "NETOPS_BACKEND_URL="+url)
		}
	}
	consURL := func(c int) string {
		if len(consURLs) == 0 {
			return ""
		}
		return consURLs[c%len(consURLs)]
	}
	var markOnce sync.Once
	start := time.Now()
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "ipcstress: "+format+"\n", args...)
		os.Exit(1)
	}

	var prodWG sync.WaitGroup
	prodErr := make(chan error, producers)
	for p := range producers {
		prodWG.Go(func() {
			per := msgs / 5
			for part := range 5 {
				n := per
				if part == 4 {
					n = msgs - 4*per
				}
				var in strings.Builder
				for j := part * per; j < part*per+n; j++ {
					fmt.Fprintf(&in, "p%d-%d\n", p, j)
				}
				for attempt := 1; ; attempt++ {
					cmd := exec.Command("netops", "ipc", "send", queue, "--lines", "--quiet")
					withURL(cmd, prodURL)
					cmd.Stdin = strings.NewReader(in.String())
					out, err := cmd.CombinedOutput()
					if err == nil {
						break
					}
					var ee *exec.ExitError
					if retry && attempt < 60 && errors.As(err, &ee) && (ee.ExitCode() == 69 || ee.ExitCode() == 75) {
						time.Sleep(time.Second)
						continue
					}
					prodErr <- fmt.Errorf("producer %d: %v: %s", p, err, out)
					return
				}
				if mark != "" && p == 0 && part == 2 {
					markOnce.Do(func() { _ = os.WriteFile(mark, nil, 0o600) })
				}
			}
		})
	}
	prodDone := make(chan struct{})
	go func() { prodWG.Wait(); close(prodDone) }()

	consumerArgs := func(wait string) []string {
		if mode == "recv" {
			return []string{"ipc", "recv", queue, "--count", "0", "--wait", wait, "--output", "json"}
		}
		return []string{"ipc", "consume", queue, "--exec", "ipchandler", filepath.Join(dir, "handled.log"),
			"--concurrency", "2", "--wait", wait, "--quiet"}
	}
	var (
		mu     sync.Mutex
		killed int
		runs   int
		errs   []string
	)
	// run starts one consumer; it returns whether it was killed and its
	// exit code.
	run := func(name, url string, args []string, killAfter time.Duration) (bool, int) {
		out, err := os.Create(filepath.Join(dir, name+".out"))
		if err != nil {
			fail("%v", err)
		}
		defer out.Close()
		var stderr bytes.Buffer
		cmd := exec.Command("netops", args...)
		withURL(cmd, url)
		cmd.Stdout, cmd.Stderr = out, &stderr
		if err := cmd.Start(); err != nil {
			fail("%v", err)
		}
		var t *time.Timer
		if killAfter > 0 {
			t = time.AfterFunc(killAfter, func() { _ = cmd.Process.Kill() })
		}
		err = cmd.Wait()
		if t != nil {
			t.Stop()
		}
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
			if code == -1 {
				return true, -1
			}
		} else if err != nil {
			fail("%v", err)
		}
		if retry && (code == 69 || code == 75) {
			time.Sleep(500 * time.Millisecond)
			return false, code // a node is down: the loop runs it again
		}
		if code != 0 && code != 1 {
			mu.Lock()
			errs = append(errs, fmt.Sprintf("%s exited %d: %s", name, code, stderr.String()))
			mu.Unlock()
		}
		return false, code
	}
	var consWG sync.WaitGroup
	for c := range consumers {
		consWG.Go(func() {
			kills := 0
			for r := 0; ; r++ {
				var killAfter time.Duration
				// The first two runs of each loop are killed, later ones
				// at random (at most 5 kills per loop).
				if kill && (kills < 2 || kills < 5 && rand.IntN(2) == 0) {
					killAfter = time.Duration(50+rand.IntN(700)) * time.Millisecond
				}
				wasKilled, code := run(fmt.Sprintf("c%d-%d", c, r), consURL(c), consumerArgs("1500ms"), killAfter)
				mu.Lock()
				runs++
				if wasKilled {
					killed++
					kills++
				}
				mu.Unlock()
				if wasKilled {
					continue
				}
				select {
				case <-prodDone:
					// Idle after the producers finished: done. (recv exits
					// 1 when it got nothing, consume 0.)
					if code == 1 || mode == "consume" {
						return
					}
				default:
				}
			}
		})
	}
	consWG.Wait()
	close(prodErr)
	for err := range prodErr {
		fail("%v", err)
	}
	// Messages of killed consumers come back after the visibility timeout.
	for r := 0; ; r++ {
		if _, code := run(fmt.Sprintf("final-%d", r), consURL(0), consumerArgs((vis + 2*time.Second).String()), 0); !retry || code != 69 && code != 75 || r == 30 {
			break
		}
	}
	if len(errs) > 0 {
		fail("%d consumer runs failed; first: %s", len(errs), errs[0])
	}

	// What was processed: body -> deliveries (and times in consume mode).
	type proc struct {
		id         string
		deliveries int
		at         int64
	}
	seen := map[string][]proc{}
	add := func(body string, p proc) { seen[body] = append(seen[body], p) }
	if mode == "recv" {
		files, _ := filepath.Glob(filepath.Join(dir, "*.out"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				fail("%v", err)
			}
			lines := strings.Split(string(data), "\n")
			// A killed recv may have written part of its last line.
			for _, l := range lines[:len(lines)-1] {
				var m struct {
					ID         string `json:"id"`
					Deliveries int    `json:"deliveries"`
					Body       string `json:"body"`
				}
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					fail("%s: bad line %q: %v", f, l, err)
				}
				add(m.Body, proc{m.ID, m.Deliveries, 0})
			}
		}
	} else {
		f, err := os.Open(filepath.Join(dir, "handled.log"))
		if err != nil {
			fail("%v", err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var body, id string
			var p proc
			if _, err := fmt.Sscanf(sc.Text(), "%s %s %d %d", &body, &id, &p.deliveries, &p.at); err != nil {
				fail("bad handler log line %q", sc.Text())
			}
			p.id = id
			add(body, p)
		}
		f.Close()
	}
	total := producers * msgs
	dups := 0
	for p := range producers {
		for j := range msgs {
			body := fmt.Sprintf("p%d-%d", p, j)
			ps := seen[body]
			if len(ps) == 0 {
				fail("message %s was never processed (lost)", body)
			}
			delete(seen, body)
			dups += len(ps) - 1
			sort.Slice(ps, func(a, b int) bool { return ps[a].deliveries < ps[b].deliveries })
			for i := 1; i < len(ps) && !retry; i++ {
				if ps[i].deliveries == ps[i-1].deliveries {
					fail("message %s (id %s) was processed twice in delivery %d: handed out again before its visibility timeout", body, ps[i].id, ps[i].deliveries)
				}
				if mode == "consume" && time.Duration(ps[i].at-ps[i-1].at) < vis/2 {
					fail("message %s processed again %s after delivery %d: before its visibility timeout (%s)",
						body, time.Duration(ps[i].at-ps[i-1].at), ps[i-1].deliveries, vis)
				}
			}
		}
	}
	if len(seen) > 0 {
		for b := range seen {
			fail("processed a message nobody sent: %q", b)
		}
	}
	if mode == "consume" && dups > 2*killed && !retry {
		fail("%d duplicates for %d killed consumers (at most 2 in flight each)", dups, killed)
	}
	if !kill && !retry && dups > 0 {
		fail("%d duplicates without any consumer killed", dups)
	}
	statsCmd := exec.Command("netops", "ipc", "queue", "stats", queue, "--output", "json")
	withURL(statsCmd, consURL(0))
	out, err := statsCmd.Output()
	if err != nil {
		fail("queue stats: %v", err)
	}
	var st struct {
		Ready    int `json:"ready"`
		InFlight int `json:"in_flight"`
		Dead     int `json:"dead_letters"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		fail("queue stats: %v", err)
	}
	if st.Ready != 0 || st.InFlight != 0 || st.Dead != 0 {
		fail("queue not empty at the end: %s", out)
	}
	fmt.Printf("ipcstress %s: %d messages from %d producers, %d consumer runs (%d killed with SIGKILL): all processed, none lost, %d duplicates, all after a visibility timeout; in %s\n",
		mode, total, producers, runs, killed, dups, time.Since(start).Round(time.Millisecond))
}
