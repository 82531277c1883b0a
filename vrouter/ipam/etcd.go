package ipam

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Defaults of EtcdConfig.
const (
	DefaultEtcdDialTimeout = 5 * time.Second
	DefaultEtcdTimeout     = 10 * time.Second
)

// EtcdConfig says how to reach etcd.
type EtcdConfig struct {
	// Endpoints are the client URLs of the cluster's members, e.g.
	// "https://10.0.0.1:2379"; with CertFile or CAFile set they must be
	// https.
	Endpoints []string
	// CertFile and KeyFile are the client certificate and its key (PEM),
	// for a cluster that authenticates clients (etcd --client-cert-auth).
	// Both or neither.
	CertFile, KeyFile string
	// CAFile is the CA bundle (PEM) that signed the members' certificates;
	// empty means the system's roots.
	CAFile string
	// DialTimeout bounds the connectivity check of OpenEtcd; zero means
	// DefaultEtcdDialTimeout.
	DialTimeout time.Duration
	// Timeout bounds one View or Update, retries on conflict included;
	// zero means DefaultEtcdTimeout. With every member down, a transaction
	// fails after this long with an error naming etcd and its endpoints.
	Timeout time.Duration
	// Dialer, when set, opens the client's connections to the members
	// (addr is HOST:PORT), e.g. from another network namespace; nil means
	// an ordinary TCP dial.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
}

// TLS reports whether the configuration uses TLS.
func (c EtcdConfig) TLS() bool {
	return c.CertFile != "" || c.KeyFile != "" || c.CAFile != ""
}

// tlsConfig builds the client's TLS configuration from the files.
func (c EtcdConfig) tlsConfig() (*tls.Config, error) {
	if !c.TLS() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("ipam: etcd: a client certificate needs its key and a key its certificate (--etcd-cert and --etcd-key)")
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("ipam: etcd client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ipam: etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ipam: etcd CA %s: no PEM certificate in it", c.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// EtcdStore is the Datastore of a cluster of hosts: etcd, in Calico's key
// layout, with values in Calico's JSON field names:
//
//	/calico/ipam/v2/assignment/ipv4/block/10.244.166.128-26   a block (Calico's AllocationBlock)
//	/calico/ipam/v2/host/<node>/ipv4/block/10.244.166.128-26  the node's affinity to it
//	/calico/ipam/v2/handle/<id>                                a handle (Calico's IPAMHandle)
//	/calico/ipam/v2/config                                     IPAM configuration (Calico's IPAMConfig)
//
// Transactions are optimistic, as in etcd's STM and Calico's etcdv3
// backend: fn runs against one read revision while the store records what
// it read; the commit is one etcd Txn that writes only if every key read or
// written is as it was (a key read as absent must still have version 0, so
// a block is created only if nobody created it; a key read as present must
// have the same mod revision) and no key under a listed prefix changed or
// appeared since the read revision. A failed compare re-runs fn on fresh
// data. A node's affinity key is written confirmed in the same Txn that
// writes the block, so Calico's pending state is never needed.
//
// One limit of etcd compares: a key deleted under a listed prefix, that the
// transaction neither read by name nor writes, does not fail the commit
// (etcd cannot compare a range's key count). IPAM never relies on a block
// it only saw in a list: it reads by name, and its writes are compared,
// every block it assigns in or claims.
//
// etcd bounds a Txn to 128 compares and 128 writes by default
// (--max-txn-ops); a transaction beyond that fails with etcd's "too many
// operations in txn request". IPAM's transactions touch a few keys each,
// except ReleaseNodeBlocks, which deletes two keys per empty block of the
// node (so at most 64 blocks at once).
//
// An EtcdStore is safe for concurrent use; any number of them, on any
// hosts, may share a cluster.
type EtcdStore struct {
	cli     *clientv3.Client
	cfg     EtcdConfig
	closed  atomic.Bool
	where   string // "etcd at ENDPOINTS", for errors
	retries atomic.Int64
}

// OpenEtcd connects to etcd and checks that it answers within
// cfg.DialTimeout (or ctx's deadline, if earlier).
func OpenEtcd(ctx context.Context, cfg EtcdConfig) (*EtcdStore, error) {
	s, err := NewEtcd(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Ping(ctx); err != nil {
		s.cli.Close()
		return nil, err
	}
	return s, nil
}

// NewEtcd returns a store of the etcd cluster cfg names without waiting
// for it to answer: the client connects in the background, and every
// transaction fails after cfg.Timeout while no member answers. An agent
// that must start while etcd is down opens its store so.
func NewEtcd(cfg EtcdConfig) (*EtcdStore, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("ipam: etcd: no endpoints")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultEtcdDialTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultEtcdTimeout
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	for _, ep := range cfg.Endpoints {
		if tc != nil && strings.HasPrefix(ep, "http://") {
			return nil, fmt.Errorf("ipam: etcd endpoint %s is plain http but TLS files are given", ep)
		}
	}
	s := &EtcdStore{cfg: cfg, where: "etcd at " + strings.Join(cfg.Endpoints, ",")}
	// No DialTimeout in clientv3.Config: that would block in New; the Get
	// below checks connectivity with a deadline instead.
	ccfg := clientv3.Config{
		Endpoints: cfg.Endpoints,
		TLS:       tc,
		Logger:    zap.NewNop(),
		Context:   context.Background(),
	}
	if cfg.Dialer != nil {
		ccfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(cfg.Dialer)}
	}
	s.cli, err = clientv3.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("ipam: %s: %w", s.where, err)
	}
	return s, nil
}

// Ping checks that etcd answers within the store's DialTimeout (or ctx's
// deadline, if earlier).
func (s *EtcdStore) Ping(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	if _, err := s.cli.Get(cctx, calicoConfigKey); err != nil {
		if ctx.Err() == nil && cctx.Err() != nil {
			hint := "is etcd running and reachable?"
			if s.cfg.TLS() {
				hint = "is etcd running and reachable, and do its CA and the client certificate match?"
			}
			return fmt.Errorf("ipam: %s: no answer within %v (%s): %w", s.where, s.cfg.DialTimeout, hint, err)
		}
		return fmt.Errorf("ipam: %s: %w", s.where, err)
	}
	return nil
}

// Client returns the store's etcd client (package resources shares it).
func (s *EtcdStore) Client() *clientv3.Client { return s.cli }

// Where returns "etcd at ENDPOINTS", as errors name the cluster.
func (s *EtcdStore) Where() string { return s.where }

// Config returns the configuration the store was opened with, with
// defaults filled in.
func (s *EtcdStore) Config() EtcdConfig { return s.cfg }

// Close closes the connection; later transactions fail with ErrClosed.
func (s *EtcdStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.cli.Close()
}

// Retries returns how many times an Update re-ran fn after a conflict,
// over the store's life.
func (s *EtcdStore) Retries() int64 { return s.retries.Load() }

// IPAMConfig reads the IPAM configuration (Calico's IPAMConfig at
// /calico/ipam/v2/config) as Options; ok is false when there is none.
func (s *EtcdStore) IPAMConfig(ctx context.Context) (opts Options, ok bool, err error) {
	if s.closed.Load() {
		return Options{}, false, ErrClosed
	}
	tctx, cancel := s.txContext(ctx)
	defer cancel()
	resp, err := s.cli.Get(tctx, calicoConfigKey)
	if err != nil {
		return Options{}, false, s.etcdErr(tctx, "read "+calicoConfigKey, err)
	}
	if len(resp.Kvs) == 0 {
		return Options{}, false, nil
	}
	var c calicoIPAMConfig
	if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil {
		return Options{}, false, fmt.Errorf("ipam: %s: %s: %w", s.where, calicoConfigKey, err)
	}
	return Options{StrictAffinity: c.StrictAffinity}, true, nil
}

// PutIPAMConfig writes opts as the IPAM configuration.
func (s *EtcdStore) PutIPAMConfig(ctx context.Context, opts Options) error {
	if s.closed.Load() {
		return ErrClosed
	}
	v, err := json.Marshal(calicoIPAMConfig{StrictAffinity: opts.StrictAffinity, AutoAllocateBlocks: true})
	if err != nil {
		return err
	}
	tctx, cancel := s.txContext(ctx)
	defer cancel()
	if _, err := s.cli.Put(tctx, calicoConfigKey, string(v)); err != nil {
		return s.etcdErr(tctx, "write "+calicoConfigKey, err)
	}
	return nil
}

// errEtcdTimeout is the cause of a transaction that ran out of time.
var errEtcdTimeout = errors.New("etcd timeout")

// txContext bounds a transaction by the configured timeout.
func (s *EtcdStore) txContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, s.cfg.Timeout, errEtcdTimeout)
}

// etcdErr wraps an error of an etcd call: a transaction that ran out of
// time says so, naming etcd; the caller's own cancellation stays
// recognizable with errors.Is.
func (s *EtcdStore) etcdErr(ctx context.Context, op string, err error) error {
	if context.Cause(ctx) == errEtcdTimeout {
		return fmt.Errorf("ipam: %s: %s: no answer within %v (are all etcd members down?): %w", s.where, op, s.cfg.Timeout, err)
	}
	return fmt.Errorf("ipam: %s: %s: %w", s.where, op, err)
}

// View implements Datastore: fn reads one revision of the store.
func (s *EtcdStore) View(ctx context.Context, fn func(tx Tx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	tctx, cancel := s.txContext(ctx)
	defer cancel()
	return fn(s.newTx(tctx, true))
}

// Update implements Datastore: fn runs against one revision and its writes
// are committed in one etcd Txn if nothing it read changed since; otherwise
// fn runs again, until the store's timeout or ctx ends.
func (s *EtcdStore) Update(ctx context.Context, fn func(tx Tx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	tctx, cancel := s.txContext(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.retries.Add(1)
			// Back off a little, with jitter, so that writers racing
			// for one block do not collide in lockstep.
			if attempt > 1 {
				d := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(time.Millisecond)))
				select {
				case <-time.After(d):
				case <-tctx.Done():
				}
			}
			if err := tctx.Err(); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return s.etcdErr(tctx, "commit", err)
			}
		}
		tx := s.newTx(tctx, false)
		if err := fn(tx); err != nil {
			if errors.Is(err, errConflict) {
				continue
			}
			return err
		}
		ok, err := tx.commit()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
}

// errConflict is what a read inside a transaction returns when its
// revision was compacted away: the transaction must start over.
var errConflict = errors.New("ipam: etcd: read revision compacted, retry")

// etcdEntry is what a transaction knows of one key at its read revision.
type etcdEntry struct {
	value  []byte
	modRev int64 // 0: absent
}

// etcdTx is one attempt of a transaction.
type etcdTx struct {
	s        *EtcdStore
	ctx      context.Context
	readOnly bool
	rev      int64                // read revision; 0 until the first read
	seen     map[string]etcdEntry // keys read, by name or in a list
	named    map[string]bool      // keys read by name: compared at commit
	listed   []string             // prefixes listed: compared at commit
	writes   map[string]*string   // key → new value; nil deletes
}

func (s *EtcdStore) newTx(ctx context.Context, readOnly bool) *etcdTx {
	return &etcdTx{
		s: s, ctx: ctx, readOnly: readOnly,
		seen: map[string]etcdEntry{}, named: map[string]bool{}, writes: map[string]*string{},
	}
}

// read runs a Get at the transaction's revision (fixing it on the first
// read).
func (tx *etcdTx) read(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if tx.rev != 0 {
		opts = append(opts, clientv3.WithRev(tx.rev))
	}
	resp, err := tx.s.cli.Get(tx.ctx, key, opts...)
	if err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil, errConflict
		}
		return nil, tx.s.etcdErr(tx.ctx, "read "+key, err)
	}
	if tx.rev == 0 {
		tx.rev = resp.Header.Revision
	}
	return resp, nil
}

// get returns the value of key as the transaction sees it (its own writes
// first), and whether it exists.
func (tx *etcdTx) get(key string) ([]byte, bool, error) {
	if w, ok := tx.writes[key]; ok {
		if w == nil {
			return nil, false, nil
		}
		return []byte(*w), true, nil
	}
	tx.named[key] = true
	if e, ok := tx.seen[key]; ok {
		return e.value, e.modRev != 0, nil
	}
	resp, err := tx.read(key)
	if err != nil {
		return nil, false, err
	}
	var e etcdEntry
	if len(resp.Kvs) == 1 {
		e = etcdEntry{value: resp.Kvs[0].Value, modRev: resp.Kvs[0].ModRevision}
	}
	tx.seen[key] = e
	return e.value, e.modRev != 0, nil
}

// list returns every key under prefix with its value as the transaction
// sees it, sorted by key.
func (tx *etcdTx) list(prefix string) (map[string][]byte, error) {
	resp, err := tx.read(prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	if !slices.Contains(tx.listed, prefix) {
		tx.listed = append(tx.listed, prefix)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if _, ok := tx.seen[k]; !ok {
			tx.seen[k] = etcdEntry{value: kv.Value, modRev: kv.ModRevision}
		}
		out[k] = kv.Value
	}
	for k, w := range tx.writes {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if w == nil {
			delete(out, k)
		} else {
			out[k] = []byte(*w)
		}
	}
	return out, nil
}

func (tx *etcdTx) put(key, value string) error {
	if tx.readOnly {
		return ErrReadOnly
	}
	tx.writes[key] = &value
	return nil
}

func (tx *etcdTx) del(key string) error {
	if tx.readOnly {
		return ErrReadOnly
	}
	tx.writes[key] = nil
	return nil
}

// commit writes the transaction's writes in one Txn guarded by compares on
// everything it read, and reports whether the compares held.
func (tx *etcdTx) commit() (bool, error) {
	if len(tx.writes) == 0 {
		return true, nil
	}
	var cmps []clientv3.Cmp
	cmpKey := func(k string) {
		e := tx.seen[k]
		if e.modRev == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.Version(k), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", e.modRev))
		}
	}
	for _, k := range slices.Sorted(mapKeys(tx.named)) {
		cmpKey(k)
	}
	for _, p := range tx.listed {
		// Nothing under the prefix was created or changed after the read
		// revision (an empty range passes).
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p), "<", tx.rev+1).WithPrefix())
	}
	var ops []clientv3.Op
	for _, k := range slices.Sorted(mapKeys(tx.writes)) {
		if _, ok := tx.seen[k]; ok && !tx.named[k] {
			cmpKey(k) // written after being seen in a list only
		}
		if w := tx.writes[k]; w == nil {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, *w))
		}
	}
	resp, err := tx.s.cli.Txn(tx.ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, tx.s.etcdErr(tx.ctx, "commit", err)
	}
	return resp.Succeeded, nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (tx *etcdTx) Block(cidr netip.Prefix) (Block, error) {
	v, ok, err := tx.get(blockKey(cidr))
	if err != nil {
		return Block{}, err
	}
	if !ok {
		return Block{}, fmt.Errorf("block %s: %w", cidr, ErrNotFound)
	}
	return decodeStoredBlock(cidr, v)
}

// decodeStoredBlock decodes the value of cidr's key and checks that it is
// that block.
func decodeStoredBlock(cidr netip.Prefix, v []byte) (Block, error) {
	b, err := decodeCalicoBlock(v)
	if err != nil {
		return Block{}, err
	}
	if b.CIDR != cidr {
		return Block{}, fmt.Errorf("ipam: key of block %s holds block %s", cidr, b.CIDR)
	}
	return b, nil
}

func (tx *etcdTx) Blocks() ([]Block, error) {
	kvs, err := tx.list(calicoBlockPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]Block, 0, len(kvs))
	for k, v := range kvs {
		cidr, err := parseBlockKey(k)
		if err != nil {
			return nil, err
		}
		b, err := decodeStoredBlock(cidr, v)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Block) int { return a.CIDR.Compare(b.CIDR) })
	return out, nil
}

// PutBlock writes the block and keeps its affinity key in step: the old
// node's key goes when the affinity changes, the new node's is written
// confirmed.
func (tx *etcdTx) PutBlock(b Block) error {
	if tx.readOnly {
		return ErrReadOnly
	}
	v, err := encodeCalicoBlock(b)
	if err != nil {
		return err
	}
	old, err := tx.Block(b.CIDR)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if exists && old.Affinity != "" && old.Affinity != b.Affinity {
		if err := tx.del(affinityKey(old.Affinity, b.CIDR)); err != nil {
			return err
		}
	}
	if b.Affinity != "" && (!exists || old.Affinity != b.Affinity) {
		if err := tx.put(affinityKey(b.Affinity, b.CIDR), confirmedAffinity); err != nil {
			return err
		}
	}
	return tx.put(blockKey(b.CIDR), string(v))
}

func (tx *etcdTx) DeleteBlock(cidr netip.Prefix) error {
	if tx.readOnly {
		return ErrReadOnly
	}
	old, err := tx.Block(cidr)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if old.Affinity != "" {
		if err := tx.del(affinityKey(old.Affinity, cidr)); err != nil {
			return err
		}
	}
	return tx.del(blockKey(cidr))
}

func (tx *etcdTx) Handle(id string) (Handle, error) {
	if id == "" {
		return Handle{}, fmt.Errorf("handle %q: %w", id, ErrNotFound)
	}
	v, ok, err := tx.get(handleKey(id))
	if err != nil {
		return Handle{}, err
	}
	if !ok {
		return Handle{}, fmt.Errorf("handle %q: %w", id, ErrNotFound)
	}
	return decodeCalicoHandle(id, v)
}

func (tx *etcdTx) Handles() ([]Handle, error) {
	kvs, err := tx.list(calicoHandlePrefix)
	if err != nil {
		return nil, err
	}
	out := make([]Handle, 0, len(kvs))
	for k, v := range kvs {
		h, err := decodeCalicoHandle(strings.TrimPrefix(k, calicoHandlePrefix), v)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Handle) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (tx *etcdTx) PutHandle(h Handle) error {
	if tx.readOnly {
		return ErrReadOnly
	}
	v, err := encodeCalicoHandle(h)
	if err != nil {
		return err
	}
	return tx.put(handleKey(h.ID), string(v))
}

func (tx *etcdTx) DeleteHandle(id string) error {
	if tx.readOnly {
		return ErrReadOnly
	}
	if id == "" {
		return nil
	}
	return tx.del(handleKey(id))
}
