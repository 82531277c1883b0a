package ipam

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// MemStore is a Datastore in memory, for tests and single-process use. It
// keeps records JSON-encoded, exactly as BoltStore stores them, so that
// what it hands out never aliases what it keeps. Transactions are
// serialized by a mutex; the zero MemStore is not usable, call NewMemStore.
type MemStore struct {
	mu      sync.RWMutex
	blocks  map[netip.Prefix][]byte
	handles map[string][]byte
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{blocks: map[netip.Prefix][]byte{}, handles: map[string][]byte{}}
}

// View implements Datastore.
func (s *MemStore) View(ctx context.Context, fn func(tx Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return fn(&memTx{blocks: s.blocks, handles: s.handles, readOnly: true})
}

// Update implements Datastore. fn works on copies of the record maps, which
// replace the store's only when fn succeeds.
func (s *MemStore) Update(ctx context.Context, fn func(tx Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tx := &memTx{blocks: maps.Clone(s.blocks), handles: maps.Clone(s.handles)}
	if err := fn(tx); err != nil {
		return err
	}
	s.blocks, s.handles = tx.blocks, tx.handles
	return nil
}

type memTx struct {
	blocks   map[netip.Prefix][]byte
	handles  map[string][]byte
	readOnly bool
}

func (tx *memTx) Block(cidr netip.Prefix) (Block, error) {
	v, ok := tx.blocks[cidr]
	if !ok {
		return Block{}, fmt.Errorf("block %s: %w", cidr, ErrNotFound)
	}
	return decodeBlock(cidr.String(), v)
}

func (tx *memTx) Blocks() ([]Block, error) {
	keys := slices.SortedFunc(maps.Keys(tx.blocks), netip.Prefix.Compare)
	out := make([]Block, 0, len(keys))
	for _, k := range keys {
		b, err := decodeBlock(k.String(), tx.blocks[k])
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func (tx *memTx) PutBlock(b Block) error {
	if tx.readOnly {
		return ErrReadOnly
	}
	v, err := json.Marshal(b)
	if err != nil {
		return err
	}
	tx.blocks[b.CIDR] = v
	return nil
}

func (tx *memTx) DeleteBlock(cidr netip.Prefix) error {
	if tx.readOnly {
		return ErrReadOnly
	}
	delete(tx.blocks, cidr)
	return nil
}

func (tx *memTx) Handle(id string) (Handle, error) {
	v, ok := tx.handles[id]
	if !ok {
		return Handle{}, fmt.Errorf("handle %q: %w", id, ErrNotFound)
	}
	return decodeHandle(id, v)
}

func (tx *memTx) Handles() ([]Handle, error) {
	keys := slices.SortedFunc(maps.Keys(tx.handles), strings.Compare)
	out := make([]Handle, 0, len(keys))
	for _, k := range keys {
		h, err := decodeHandle(k, tx.handles[k])
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

func (tx *memTx) PutHandle(h Handle) error {
	if tx.readOnly {
		return ErrReadOnly
	}
	v, err := json.Marshal(h)
	if err != nil {
		return err
	}
	tx.handles[h.ID] = v
	return nil
}

func (tx *memTx) DeleteHandle(id string) error {
	if tx.readOnly {
		return ErrReadOnly
	}
	delete(tx.handles, id)
	return nil
}

// decodeBlock decodes a stored block and checks that it is the one stored
// under key.
func decodeBlock(key string, v []byte) (Block, error) {
	var b Block
	if err := json.Unmarshal(v, &b); err != nil {
		return Block{}, fmt.Errorf("ipam: corrupt block record %q: %w", key, err)
	}
	if b.CIDR.String() != key {
		return Block{}, fmt.Errorf("ipam: corrupt block record %q: holds block %s", key, b.CIDR)
	}
	return b, nil
}

// decodeHandle decodes a stored handle and checks that it is the one stored
// under key.
func decodeHandle(key string, v []byte) (Handle, error) {
	var h Handle
	if err := json.Unmarshal(v, &h); err != nil {
		return Handle{}, fmt.Errorf("ipam: corrupt handle record %q: %w", key, err)
	}
	if h.ID != key {
		return Handle{}, fmt.Errorf("ipam: corrupt handle record %q: holds handle %q", key, h.ID)
	}
	return h, nil
}
