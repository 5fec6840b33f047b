package lock_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/netops-dev/netops/internal/lock"
)

// lateLocker grants leases that are nearly run out, as when a backend took
// most of the TTL to confirm the grant; Renew answers renewErr.
type lateLocker struct {
	left     time.Duration
	renewErr error
	renewed  int
}

func (l *lateLocker) Acquire(_ context.Context, req lock.Request) (*lock.Lease, error) {
	now := time.Now()
	return &lock.Lease{Name: req.Name, Owner: req.Owner, Mode: req.Mode, Token: 7, TTL: req.TTL,
		Acquired: now, Expires: now.Add(l.left)}, nil
}

func (l *lateLocker) Renew(_ context.Context, le *lock.Lease) error {
	l.renewed++
	if l.renewErr != nil {
		return l.renewErr
	}
	le.Expires = time.Now().Add(le.TTL)
	return nil
}

func (l *lateLocker) Release(context.Context, string, string) error         { return nil }
func (l *lateLocker) Status(context.Context, string) ([]lock.Status, error) { return nil, nil }
func (l *lateLocker) Cleanup(context.Context, time.Duration) (lock.Cleaned, error) {
	return lock.Cleaned{}, nil
}
func (l *lateLocker) Close() error { return nil }

func runTouch(t *testing.T, lk lock.Locker) (string, lock.RunResult, error) {
	t.Helper()
	marker := filepath.Join(t.TempDir(), "ran")
	req := lock.Request{Name: "late", Holder: lock.Holder{Owner: "o"}, Mode: lock.Exclusive, TTL: 30 * time.Second}
	res, err := lock.RunCommand(context.Background(), lk, req, []string{"touch", marker}, lock.RunOptions{})
	return marker, res, err
}

func TestRunCommandDoesNotStartOnALostLease(t *testing.T) {
	lk := &lateLocker{left: time.Second, renewErr: lock.ErrLost}
	marker, res, err := runTouch(t, lk)
	if !errors.Is(err, lock.ErrLost) {
		t.Fatalf("err = %v, want ErrLost", err)
	}
	if !res.LeaseLost || lk.renewed != 1 {
		t.Errorf("LeaseLost %v, renewals %d; want true, 1", res.LeaseLost, lk.renewed)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the command ran on a lease that could not be renewed (stat: %v)", err)
	}
}

func TestRunCommandRenewsAShortLeaseBeforeStarting(t *testing.T) {
	lk := &lateLocker{left: time.Second}
	marker, res, err := runTouch(t, lk)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("err %v, exit %d", err, res.ExitCode)
	}
	if lk.renewed < 1 {
		t.Error("a lease with less than the grace period left was not renewed before the command started")
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the command did not run: %v", err)
	}
}

func TestRunCommandStartsAtOnceOnAFreshLease(t *testing.T) {
	lk := &lateLocker{left: 30 * time.Second}
	marker, _, err := runTouch(t, lk)
	if err != nil {
		t.Fatal(err)
	}
	if lk.renewed != 0 {
		t.Errorf("a fresh lease was renewed %d times before a short command", lk.renewed)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the command did not run: %v", err)
	}
}
