package resources

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vrouter-lab/vrouter/vrouter/ipam"
)

// ErrNotFound is returned (wrapped) for a resource that does not exist.
var ErrNotFound = errors.New("resource not found")

// ErrExists is returned (wrapped) by Create for a resource that exists.
var ErrExists = errors.New("resource exists")

// Store keeps resources in etcd.
type Store struct {
	cli     *clientv3.Client
	where   string // "etcd at ENDPOINTS"
	timeout time.Duration
	own     *ipam.EtcdStore // closed by Close, if the Store opened it
}

// Open connects to etcd as ipam.OpenEtcd does (checking that it answers).
func Open(ctx context.Context, cfg ipam.EtcdConfig) (*Store, error) {
	es, err := ipam.OpenEtcd(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := FromIPAM(es)
	s.own = es
	return s, nil
}

// FromIPAM returns a Store that shares an IPAM store's etcd connection
// (and its timeout); closing the IPAM store closes it.
func FromIPAM(es *ipam.EtcdStore) *Store {
	return &Store{cli: es.Client(), where: es.Where(), timeout: es.Config().Timeout}
}

// Owning returns a Store on an IPAM store's connection that closes the
// IPAM store when it is closed.
func Owning(es *ipam.EtcdStore) *Store {
	s := FromIPAM(es)
	s.own = es
	return s
}

// Close closes the connection if the Store opened it.
func (s *Store) Close() error {
	if s.own != nil {
		return s.own.Close()
	}
	return nil
}

func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

func (s *Store) err(ctx context.Context, op string, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("resources: %s: %s: no answer within %v (are all etcd members down?): %w", s.where, op, s.timeout, err)
	}
	return fmt.Errorf("resources: %s: %s: %w", s.where, op, err)
}

// Decode decodes a stored resource of kind.
func Decode(kind string, data []byte) (Resource, error) {
	r, err := New(kind)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	*r.Type() = TypeMeta{APIVersion: APIVersion, Kind: kind}
	return r, nil
}

// decodeKV decodes a key-value under Prefix.
func decodeKV(key string, value []byte, modRev int64) (Resource, error) {
	rest := strings.TrimPrefix(key, Prefix)
	plural, name, ok := strings.Cut(rest, "/")
	if !ok {
		return nil, fmt.Errorf("resources: key %s: no kind and name", key)
	}
	kind := ""
	for k, p := range plurals {
		if p == plural {
			kind = k
		}
	}
	if kind == "" {
		return nil, nil // a kind vrouter does not use
	}
	r, err := Decode(kind, value)
	if err != nil {
		return nil, fmt.Errorf("resources: key %s: %w", key, err)
	}
	if ID(r) != name {
		return nil, fmt.Errorf("resources: key %s holds %s %q", key, kind, ID(r))
	}
	r.Meta().ResourceVersion = strconv.FormatInt(modRev, 10)
	return r, nil
}

func encode(r Resource) (string, error) {
	m := *r.Meta()
	saved := m
	r.Meta().ResourceVersion = ""
	defer func() { *r.Meta() = saved }()
	data, err := json.Marshal(r)
	return string(data), err
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Put validates r and writes it, creating or replacing it (calicoctl
// apply); a replaced resource keeps its creation time and UID.
func (s *Store) Put(ctx context.Context, r Resource) error {
	return s.write(ctx, r, false)
}

// Create writes r only if no resource of its kind and name exists;
// otherwise it returns an error wrapping ErrExists.
func (s *Store) Create(ctx context.Context, r Resource) error {
	return s.write(ctx, r, true)
}

func (s *Store) write(ctx context.Context, r Resource, create bool) error {
	kind := r.Type().Kind
	if _, ok := plurals[kind]; !ok {
		return fmt.Errorf("resources: unknown kind %q", kind)
	}
	r.Type().APIVersion = APIVersion
	Default(r)
	if err := check(r); err != nil {
		return fmt.Errorf("%s %s: %w", kind, ID(r), err)
	}
	key := Key(kind, ID(r))
	tctx, cancel := s.ctx(ctx)
	defer cancel()
	for {
		resp, err := s.cli.Get(tctx, key)
		if err != nil {
			return s.err(tctx, "read "+key, err)
		}
		cmp := clientv3.Compare(clientv3.Version(key), "=", 0)
		if len(resp.Kvs) == 1 {
			if create {
				return fmt.Errorf("%s %s: %w", kind, ID(r), ErrExists)
			}
			kv := resp.Kvs[0]
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)
			if old, err := Decode(kind, kv.Value); err == nil {
				r.Meta().CreationTimestamp, r.Meta().UID = old.Meta().CreationTimestamp, old.Meta().UID
			}
		}
		if r.Meta().CreationTimestamp == "" {
			r.Meta().CreationTimestamp = time.Now().UTC().Format(time.RFC3339)
		}
		if r.Meta().UID == "" {
			r.Meta().UID = newUID()
		}
		v, err := encode(r)
		if err != nil {
			return err
		}
		tr, err := s.cli.Txn(tctx).If(cmp).Then(clientv3.OpPut(key, v)).Commit()
		if err != nil {
			return s.err(tctx, "write "+key, err)
		}
		if tr.Succeeded {
			r.Meta().ResourceVersion = strconv.FormatInt(tr.Header.Revision, 10)
			return nil
		}
	}
}

// Get reads the resource kind/name (name is <namespace>/<name> for a
// namespaced kind).
func (s *Store) Get(ctx context.Context, kind, name string) (Resource, error) {
	if _, ok := plurals[kind]; !ok {
		return nil, fmt.Errorf("resources: unknown kind %q", kind)
	}
	key := Key(kind, name)
	tctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Get(tctx, key)
	if err != nil {
		return nil, s.err(tctx, "read "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%s %s: %w", kind, name, ErrNotFound)
	}
	return decodeKV(key, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

// List returns every resource of kind, sorted by name.
func (s *Store) List(ctx context.Context, kind string) ([]Resource, error) {
	if _, ok := plurals[kind]; !ok {
		return nil, fmt.Errorf("resources: unknown kind %q", kind)
	}
	tctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Get(tctx, KindPrefix(kind), clientv3.WithPrefix())
	if err != nil {
		return nil, s.err(tctx, "list "+KindPrefix(kind), err)
	}
	var out []Resource
	for _, kv := range resp.Kvs {
		r, err := decodeKV(string(kv.Key), kv.Value, kv.ModRevision)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Resource) int { return strings.Compare(ID(a), ID(b)) })
	return out, nil
}

// Delete deletes the resource kind/name (<namespace>/<name> for a
// namespaced kind); deleting one that does not
// exist returns an error wrapping ErrNotFound.
func (s *Store) Delete(ctx context.Context, kind, name string) error {
	if _, ok := plurals[kind]; !ok {
		return fmt.Errorf("resources: unknown kind %q", kind)
	}
	key := Key(kind, name)
	tctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Delete(tctx, key)
	if err != nil {
		return s.err(tctx, "delete "+key, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("%s %s: %w", kind, name, ErrNotFound)
	}
	return nil
}

// Snapshot is every resource at one etcd revision, each kind sorted by
// its ID (namespace/name or name).
type Snapshot struct {
	Revision          int64
	Nodes             []*Node
	IPPools           []*IPPool
	BGPConfigurations []*BGPConfiguration
	BGPPeers          []*BGPPeer

	NetworkPolicies       []*NetworkPolicy
	GlobalNetworkPolicies []*GlobalNetworkPolicy
	WorkloadEndpoints     []*WorkloadEndpoint
}

// Node returns the node called name.
func (s *Snapshot) Node(name string) *Node {
	for _, n := range s.Nodes {
		if n.Metadata.Name == name {
			return n
		}
	}
	return nil
}

// BGPConfiguration returns the BGPConfiguration called name.
func (s *Snapshot) BGPConfiguration(name string) *BGPConfiguration {
	for _, c := range s.BGPConfigurations {
		if c.Metadata.Name == name {
			return c
		}
	}
	return nil
}

func snapshotOf(rev int64, kvs map[string]Resource) *Snapshot {
	snap := &Snapshot{Revision: rev}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range kvs {
			if !yield(k) {
				return
			}
		}
	}) {
		switch r := kvs[k].(type) {
		case *Node:
			snap.Nodes = append(snap.Nodes, r)
		case *IPPool:
			snap.IPPools = append(snap.IPPools, r)
		case *BGPConfiguration:
			snap.BGPConfigurations = append(snap.BGPConfigurations, r)
		case *BGPPeer:
			snap.BGPPeers = append(snap.BGPPeers, r)
		case *NetworkPolicy:
			snap.NetworkPolicies = append(snap.NetworkPolicies, r)
		case *GlobalNetworkPolicy:
			snap.GlobalNetworkPolicies = append(snap.GlobalNetworkPolicies, r)
		case *WorkloadEndpoint:
			snap.WorkloadEndpoints = append(snap.WorkloadEndpoints, r)
		}
	}
	return snap
}

// Load reads every resource at one revision.
func (s *Store) Load(ctx context.Context) (*Snapshot, error) {
	snap, _, err := s.load(ctx)
	return snap, err
}

// load lists everything under Prefix; a value it cannot decode is left
// out and reported in bad.
func (s *Store) load(ctx context.Context) (*Snapshot, map[string]Resource, error) {
	tctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.cli.Get(tctx, Prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, s.err(tctx, "list "+Prefix, err)
	}
	kvs := map[string]Resource{}
	var bad []error
	for _, kv := range resp.Kvs {
		r, err := decodeKV(string(kv.Key), kv.Value, kv.ModRevision)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		if r != nil {
			kvs[string(kv.Key)] = r
		}
	}
	return snapshotOf(resp.Header.Revision, kvs), kvs, errors.Join(bad...)
}

// WatchOptions tune Watch.
type WatchOptions struct {
	// OnError receives errors Watch recovers from (etcd unreachable, an
	// undecodable value); nil ignores them.
	OnError func(error)
	// Retry is how long to wait before reading again after a failure;
	// zero means one second.
	Retry time.Duration
}

// Watch calls fn with a snapshot of every resource now and after every
// change, until ctx ends. While etcd cannot be reached it keeps trying
// (reporting to opts.OnError) and calls fn again once it reads a fresh
// snapshot. fn runs on Watch's goroutine, one call at a time.
func (s *Store) Watch(ctx context.Context, fn func(*Snapshot), opts WatchOptions) {
	onErr := opts.OnError
	if onErr == nil {
		onErr = func(error) {}
	}
	retry := opts.Retry
	if retry <= 0 {
		retry = time.Second
	}
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(retry):
			return true
		}
	}
	var last int64 = -1
	for ctx.Err() == nil {
		snap, kvs, err := s.load(ctx)
		if snap == nil {
			if ctx.Err() == nil {
				onErr(err)
			}
			if !wait() {
				return
			}
			continue
		}
		if err != nil {
			onErr(err)
		}
		if snap.Revision != last {
			fn(snap)
			last = snap.Revision
		}
		// WithRequireLeader: a watch on a member that lost its quorum
		// ends, so that an outage shows and a fresh read follows.
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, Prefix, clientv3.WithPrefix(), clientv3.WithRev(snap.Revision+1))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				onErr(fmt.Errorf("resources: %s: watch: %w", s.where, err))
				break
			}
			for _, ev := range resp.Events {
				k := string(ev.Kv.Key)
				if ev.Type == clientv3.EventTypeDelete {
					delete(kvs, k)
					continue
				}
				r, err := decodeKV(k, ev.Kv.Value, ev.Kv.ModRevision)
				if err != nil {
					onErr(err)
					delete(kvs, k)
					continue
				}
				if r != nil {
					kvs[k] = r
				}
			}
			if len(resp.Events) > 0 {
				last = resp.Header.Revision
				fn(snapshotOf(last, kvs))
			}
		}
		cancel()
		if ctx.Err() == nil && !wait() {
			return
		}
	}
}
