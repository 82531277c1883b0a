package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// DefaultLockTimeout is how long a BoltStore transaction waits for the
// file lock before it fails.
const DefaultLockTimeout = 10 * time.Second

// Bucket names and schema of a BoltStore file.
var (
	bucketMeta    = []byte("meta")
	bucketBlocks  = []byte("blocks")
	bucketHandles = []byte("handles")
	keySchema     = []byte("schema")
	schemaV1      = []byte("vrouter-ipam/v1")
)

// errLockTimeout is the cause of a lock wait that ran out of time.
var errLockTimeout = errors.New("lock timeout")

// BoltStore is the embedded Datastore: one bbolt file, typically in the
// lab's state directory, shared by the node processes of a lab. No server
// runs; the file's lock serializes writers.
//
// bbolt lets one process at a time open a file read-write and holds the
// lock for as long as it is open, so a BoltStore does not keep the file
// open: every transaction opens it, locks it (exclusively for Update,
// shared for View), runs, commits and closes it again. A transaction waits
// for the lock at most DefaultLockTimeout or until its context is done. The
// file layout is three buckets: "meta" (the schema version), "blocks"
// (key: the block's CIDR, e.g. "10.244.166.128/26") and "handles" (key: the
// handle id), with JSON values as Block.MarshalJSON and Handle.MarshalJSON
// write them, so `bbolt get FILE blocks 10.244.166.128/26` shows a block.
//
// A BoltStore is safe for concurrent use by multiple goroutines, and any
// number of BoltStores in any number of processes may share one file.
type BoltStore struct {
	path        string
	lockTimeout time.Duration
	closed      atomic.Bool
}

// OpenBolt opens the datastore file at path, creating and initializing it
// when it does not exist (its directory must). The file is not held open:
// OpenBolt only checks that it is usable.
func OpenBolt(path string) (*BoltStore, error) {
	s := &BoltStore{path: path, lockTimeout: DefaultLockTimeout}
	err := s.do(context.Background(), true, func(btx *bbolt.Tx) error {
		meta, err := btx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keySchema); {
		case v == nil:
			if err := meta.Put(keySchema, schemaV1); err != nil {
				return err
			}
		case string(v) != string(schemaV1):
			return fmt.Errorf("ipam: datastore %s has schema %q, want %q", path, v, schemaV1)
		}
		for _, name := range [][]byte{bucketBlocks, bucketHandles} {
			if _, err := btx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Path returns the file's path.
func (s *BoltStore) Path() string { return s.path }

// Close makes later transactions fail with ErrClosed. Since the file is
// open only during a transaction, there is nothing else to release.
func (s *BoltStore) Close() error {
	s.closed.Store(true)
	return nil
}

// View implements Datastore.
func (s *BoltStore) View(ctx context.Context, fn func(tx Tx) error) error {
	return s.do(ctx, false, func(btx *bbolt.Tx) error {
		return fn(&boltTx{btx: btx})
	})
}

// Update implements Datastore. fn runs once, under the file's exclusive
// lock.
func (s *BoltStore) Update(ctx context.Context, fn func(tx Tx) error) error {
	return s.do(ctx, true, func(btx *bbolt.Tx) error {
		return fn(&boltTx{btx: btx})
	})
}

// do opens the file, locks it, runs fn in a bbolt transaction and closes
// the file.
func (s *BoltStore) do(ctx context.Context, write bool, fn func(*bbolt.Tx) error) (err error) {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	lockCtx, cancel := context.WithTimeoutCause(ctx, s.lockTimeout, errLockTimeout)
	defer cancel()
	opts := &bbolt.Options{
		ReadOnly: !write,
		// lockFile has taken the lock on the descriptor bbolt locks, so
		// bbolt's own (polling) flock succeeds at once; the timeout only
		// matters on systems where lockFile leaves locking to bbolt.
		Timeout: s.lockTimeout,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			if err != nil {
				return nil, err
			}
			if err := lockFile(lockCtx, f, write); err != nil {
				return nil, err
			}
			return f, nil
		},
	}
	db, err := bbolt.Open(s.path, 0o600, opts)
	if err != nil {
		if errors.Is(err, errLockTimeout) {
			return fmt.Errorf("ipam: datastore %s: still locked by another process after %v", s.path, s.lockTimeout)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("ipam: datastore %s: %w", s.path, err)
		}
		return fmt.Errorf("ipam: open datastore %s: %w", s.path, err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("ipam: close datastore %s: %w", s.path, cerr)
		}
	}()
	if write {
		return db.Update(fn)
	}
	return db.View(fn)
}

// boltTx implements Tx over a bbolt transaction.
type boltTx struct {
	btx *bbolt.Tx
}

func (tx *boltTx) bucket(name []byte) (*bbolt.Bucket, error) {
	b := tx.btx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("ipam: datastore %s has no %q bucket", tx.btx.DB().Path(), name)
	}
	return b, nil
}

func (tx *boltTx) writable() error {
	if !tx.btx.Writable() {
		return ErrReadOnly
	}
	return nil
}

func (tx *boltTx) Block(cidr netip.Prefix) (Block, error) {
	bk, err := tx.bucket(bucketBlocks)
	if err != nil {
		return Block{}, err
	}
	key := cidr.String()
	v := bk.Get([]byte(key))
	if v == nil {
		return Block{}, fmt.Errorf("block %s: %w", cidr, ErrNotFound)
	}
	return decodeBlock(key, v)
}

func (tx *boltTx) Blocks() ([]Block, error) {
	bk, err := tx.bucket(bucketBlocks)
	if err != nil {
		return nil, err
	}
	var out []Block
	err = bk.ForEach(func(k, v []byte) error {
		b, err := decodeBlock(string(k), v)
		if err != nil {
			return err
		}
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Keys sort as strings ("10.244.100.0/26" < "10.244.11.0/26"); the
	// contract is CIDR order.
	slices.SortFunc(out, func(a, b Block) int { return a.CIDR.Compare(b.CIDR) })
	return out, nil
}

func (tx *boltTx) PutBlock(b Block) error {
	if err := tx.writable(); err != nil {
		return err
	}
	v, err := json.Marshal(b)
	if err != nil {
		return err
	}
	bk, err := tx.bucket(bucketBlocks)
	if err != nil {
		return err
	}
	return bk.Put([]byte(b.CIDR.String()), v)
}

func (tx *boltTx) DeleteBlock(cidr netip.Prefix) error {
	if err := tx.writable(); err != nil {
		return err
	}
	bk, err := tx.bucket(bucketBlocks)
	if err != nil {
		return err
	}
	return bk.Delete([]byte(cidr.String()))
}

func (tx *boltTx) Handle(id string) (Handle, error) {
	bk, err := tx.bucket(bucketHandles)
	if err != nil {
		return Handle{}, err
	}
	v := bk.Get([]byte(id))
	if v == nil {
		return Handle{}, fmt.Errorf("handle %q: %w", id, ErrNotFound)
	}
	return decodeHandle(id, v)
}

func (tx *boltTx) Handles() ([]Handle, error) {
	bk, err := tx.bucket(bucketHandles)
	if err != nil {
		return nil, err
	}
	var out []Handle
	err = bk.ForEach(func(k, v []byte) error {
		h, err := decodeHandle(string(k), v)
		if err != nil {
			return err
		}
		out = append(out, h)
		return nil
	})
	// bbolt keys are byte-ordered, which is the order strings compare in.
	return out, err
}

func (tx *boltTx) PutHandle(h Handle) error {
	if err := tx.writable(); err != nil {
		return err
	}
	v, err := json.Marshal(h)
	if err != nil {
		return err
	}
	bk, err := tx.bucket(bucketHandles)
	if err != nil {
		return err
	}
	return bk.Put([]byte(h.ID), v)
}

func (tx *boltTx) DeleteHandle(id string) error {
	if err := tx.writable(); err != nil {
		return err
	}
	if id == "" {
		return nil
	}
	bk, err := tx.bucket(bucketHandles)
	if err != nil {
		return err
	}
	return bk.Delete([]byte(id))
}
