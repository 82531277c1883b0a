//go:build unix

package ipam

import (
	"context"
	"errors"
	"os"
	"syscall"
)

// lockFile takes an flock(2) lock on f, exclusive or shared, and returns
// once it holds it or ctx is done. A contended lock is waited for in the
// kernel's queue, so a waiter gets the lock as soon as its holder drops it
// (bbolt's own wait polls every 50 ms). The lock belongs to f's open file
// description: closing f releases it, and bbolt's own flock on the same
// descriptor then succeeds at once. On failure lockFile closes f (at once,
// or when an abandoned wait ends).
func lockFile(ctx context.Context, f *os.File, exclusive bool) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	fd := int(f.Fd())
	err := flockRetry(fd, how|syscall.LOCK_NB)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- flockRetry(fd, how) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
		}
		return err
	case <-ctx.Done():
		// The blocked flock cannot be interrupted; close f when it returns,
		// which releases the lock if it was granted meanwhile.
		go func() {
			<-done
			f.Close()
		}()
		return context.Cause(ctx)
	}
}

func flockRetry(fd, how int) error {
	for {
		err := syscall.Flock(fd, how)
		if err != syscall.EINTR {
			return err
		}
	}
}
