package ipam

import (
	"context"
	"errors"
	"net/netip"
)

// Datastore is where IPAM keeps its blocks and handles, shared by every node
// of a lab or cluster. It is transactional: Update runs fn as one atomic,
// serializable transaction, so that two nodes (processes, hosts) claiming a
// block or an address at the same time can never both succeed.
//
// The interface is a transaction over individual records (one per block and
// one per handle, keyed like Calico's /calico/ipam/v2/assignment/… and
// …/handle/… keys) rather than a snapshot of the whole state, because that
// maps onto both backends without a single hot record:
//
//   - bbolt (BoltStore): a read-write bbolt transaction under the file's
//     exclusive lock; fn runs once.
//   - etcd (EtcdStore): optimistic concurrency, as etcd's STM does it. fn
//     runs against a consistent read revision while the backend records
//     what it read (keys, and the block prefix for Blocks); the commit is
//     one etcd Txn whose compares check that none of it changed since, and
//     a failed compare re-runs fn from the start. (A key deleted under a
//     listed prefix that fn neither read by name nor writes goes unnoticed:
//     etcd cannot compare a range's size. See EtcdStore.)
//
// Hence the rules for fn, which every backend may rely on: fn may be called
// more than once, so it must have no effects other than through tx and must
// not keep tx or anything from a failed attempt; fn must not start another
// transaction on the same store (with BoltStore it would wait for the lock
// its own transaction holds); records that tx returns are copies the caller
// owns, and PutBlock and PutHandle store their argument as it is at the
// call; tx must not be used after fn returns. If fn
// returns an error, nothing it wrote is kept and Update returns that error
// unchanged (errors.Is works on it). View runs fn in a read-only transaction
// that sees one consistent state; writes in it fail with ErrReadOnly.
type Datastore interface {
	View(ctx context.Context, fn func(tx Tx) error) error
	Update(ctx context.Context, fn func(tx Tx) error) error
}

// Tx reads and writes blocks and handles inside one Datastore transaction.
// Reads see the transaction's own earlier writes.
type Tx interface {
	// Block returns the block with exactly this CIDR, or an error wrapping
	// ErrNotFound.
	Block(cidr netip.Prefix) (Block, error)
	// Blocks returns every block, sorted by CIDR.
	Blocks() ([]Block, error)
	// PutBlock creates or replaces the block with b's CIDR. A malformed
	// block (a CIDR with host bits set or of more than 4096 addresses, an
	// ordinal out of range or without a handle) is an error.
	PutBlock(b Block) error
	// DeleteBlock removes the block with this CIDR; removing a missing
	// block is not an error.
	DeleteBlock(cidr netip.Prefix) error

	// Handle returns the handle with this id, or an error wrapping
	// ErrNotFound.
	Handle(id string) (Handle, error)
	// Handles returns every handle, sorted by id.
	Handles() ([]Handle, error)
	// PutHandle creates or replaces the handle with h's id.
	PutHandle(h Handle) error
	// DeleteHandle removes the handle with this id; removing a missing
	// handle is not an error.
	DeleteHandle(id string) error
}

// Errors of the Datastore and Tx contract.
var (
	// ErrNotFound is returned (wrapped) for a block, handle or address that
	// does not exist.
	ErrNotFound = errors.New("ipam: not found")
	// ErrReadOnly is returned by writes inside View.
	ErrReadOnly = errors.New("ipam: write in a read-only transaction")
	// ErrClosed is returned by a BoltStore used after Close.
	ErrClosed = errors.New("ipam: datastore closed")
)
