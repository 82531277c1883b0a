//go:build !unix

package ipam

import (
	"context"
	"os"
)

// lockFile leaves locking to bbolt's own file lock, which waits up to the
// store's lock timeout (polling every 50 ms).
func lockFile(ctx context.Context, f *os.File, exclusive bool) error {
	if err := ctx.Err(); err != nil {
		f.Close()
		return err
	}
	return nil
}
