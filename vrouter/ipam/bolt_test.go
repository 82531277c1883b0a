package ipam

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func openTestBolt(t *testing.T) *BoltStore {
	t.Helper()
	s, err := OpenBolt(filepath.Join(t.TempDir(), "ipam.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBoltStoreConformance(t *testing.T) {
	testDatastoreConformance(t, func(t *testing.T) Datastore { return openTestBolt(t) })
}

// Two BoltStores on one file (as two node processes have) see each other's
// writes.
func TestBoltStoreSharedFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ipam.db")
	s1, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	m1, _ := New(s1, []Pool{bigPool})
	m2, _ := New(s2, []Pool{bigPool})
	if _, err := m1.AutoAssign(ctx, AssignArgs{Node: "node1", Handle: "h1"}); err != nil {
		t.Fatal(err)
	}
	if err := m2.AssignIP(ctx, ap("10.244.197.0"), AssignArgs{Node: "node1", Handle: "h2"}); !errors.Is(err, ErrAddressInUse) {
		t.Fatalf("second store did not see the first one's assignment: %v", err)
	}
	a, err := m2.AddressByHandle(ctx, "h1")
	if err != nil || a != ap("10.244.197.0") {
		t.Fatalf("AddressByHandle via the second store = %s, %v", a, err)
	}
}

// The file is plain bbolt with JSON values under the documented buckets.
func TestBoltFileFormat(t *testing.T) {
	ctx := context.Background()
	s := openTestBolt(t)
	m, _ := New(s, []Pool{bigPool})
	err := m.AssignIP(ctx, ap("10.244.166.128"), AssignArgs{Node: "node1", Handle: "calico-bgp.web-1",
		Attrs: map[string]string{"workload": "web-1", "node": "node1"}})
	if err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(s.Path(), 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket([]byte("meta")).Get([]byte("schema")); string(v) != "vrouter-ipam/v1" {
			t.Errorf("schema %q", v)
		}
		got := tx.Bucket([]byte("blocks")).Get([]byte("10.244.166.128/26"))
		want := `{"cidr":"10.244.166.128/26","affinity":"host:node1","allocations":[` +
			`{"ordinal":0,"address":"10.244.166.128","handle":"calico-bgp.web-1","node":"node1","attrs":{"node":"node1","workload":"web-1"}}]}`
		if string(got) != want {
			t.Errorf("stored block\n%s\nwant\n%s", got, want)
		}
		h := tx.Bucket([]byte("handles")).Get([]byte("calico-bgp.web-1"))
		if string(h) != `{"id":"calico-bgp.web-1","blocks":{"10.244.166.128/26":1}}` {
			t.Errorf("stored handle %s", h)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBoltSchemaMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return b.Put([]byte("schema"), []byte("something-else/v9"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(path); err == nil || !strings.Contains(err.Error(), "something-else/v9") {
		t.Fatalf("OpenBolt of a foreign file: %v", err)
	}
}

func TestBoltOpenErrors(t *testing.T) {
	if _, err := OpenBolt(filepath.Join(t.TempDir(), "missing-dir", "ipam.db")); err == nil {
		t.Error("OpenBolt in a missing directory succeeded")
	}
	path := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a bbolt file\n", 500)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(path); err == nil {
		t.Error("OpenBolt of a garbage file succeeded")
	}
}

func TestBoltClosed(t *testing.T) {
	s := openTestBolt(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err := s.Update(context.Background(), func(tx Tx) error { return nil })
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Update after Close: %v", err)
	}
}

// A transaction waiting for the lock gives up when its context ends or the
// lock timeout passes, and an abandoned wait does not keep the lock.
func TestBoltLockWait(t *testing.T) {
	s := openTestBolt(t)
	holding, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.Update(context.Background(), func(tx Tx) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Update(ctx, func(tx Tx) error { t.Error("ran without the lock"); return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Update while locked: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %v, want about 100ms", d)
	}
	vctx, vcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer vcancel()
	err = s.View(vctx, func(tx Tx) error { t.Error("read without the lock"); return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("View while write-locked: %v, want context.DeadlineExceeded", err)
	}

	short := &BoltStore{path: s.path, lockTimeout: 50 * time.Millisecond}
	err = short.Update(context.Background(), func(tx Tx) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "still locked by another process after 50ms") {
		t.Errorf("Update past the lock timeout: %v", err)
	}

	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	// The abandoned waiters hold nothing: a new transaction gets the lock.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := s.Update(ctx2, func(tx Tx) error { return nil }); err != nil {
		t.Fatalf("Update after the holder left: %v", err)
	}
}

// A waiting writer gets the lock as soon as the holder releases it, not at
// bbolt's next 50 ms poll. The holder is a reader, so that releasing is
// only closing the file (no commit, no fsync).
func TestBoltLockHandover(t *testing.T) {
	s := openTestBolt(t)
	var late []time.Duration
	for range 9 {
		holding := make(chan struct{})
		var released time.Time
		done := make(chan error, 1)
		go func() {
			done <- s.View(context.Background(), func(tx Tx) error {
				close(holding)
				time.Sleep(20 * time.Millisecond)
				released = time.Now()
				return nil
			})
		}()
		<-holding
		var got time.Time
		err := s.Update(context.Background(), func(tx Tx) error { got = time.Now(); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		late = append(late, got.Sub(released))
	}
	slices.Sort(late)
	t.Logf("lock handover: %v", late)
	// Polling every 50 ms would make the median about 25 ms.
	if med := late[len(late)/2]; med > 10*time.Millisecond {
		t.Errorf("median handover %v, want about a millisecond", med)
	}
}

// One claim (a new block and its first address) on a bbolt file takes
// milliseconds.
func TestBoltClaimLatency(t *testing.T) {
	ctx := context.Background()
	s := openTestBolt(t)
	m, _ := New(s, []Pool{bigPool})
	var claim, assign []time.Duration
	for i := range 20 {
		node := fmt.Sprint("node-", i)
		start := time.Now()
		if _, err := m.AutoAssign(ctx, AssignArgs{Node: node, Handle: node + "-a"}); err != nil {
			t.Fatal(err)
		}
		claim = append(claim, time.Since(start))
		start = time.Now()
		if _, err := m.AutoAssign(ctx, AssignArgs{Node: node, Handle: node + "-b"}); err != nil {
			t.Fatal(err)
		}
		assign = append(assign, time.Since(start))
	}
	if n := len(nodeBlocksAll(t, m)); n != 20 {
		t.Fatalf("%d blocks, want 20", n)
	}
	slices.Sort(claim)
	slices.Sort(assign)
	t.Logf("block claim: median %v, max %v; assign in own block: median %v, max %v",
		claim[len(claim)/2], claim[len(claim)-1], assign[len(assign)/2], assign[len(assign)-1])
	if med := claim[len(claim)/2]; med > 50*time.Millisecond {
		t.Errorf("median claim %v, want milliseconds", med)
	}
}

func nodeBlocksAll(t *testing.T, m *IPAM) []Block {
	t.Helper()
	bs, err := m.Blocks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func BenchmarkBoltClaim(b *testing.B) {
	ctx := context.Background()
	s, err := OpenBolt(filepath.Join(b.TempDir(), "ipam.db"))
	if err != nil {
		b.Fatal(err)
	}
	m, _ := New(s, []Pool{{Name: "big", CIDR: pp("10.0.0.0/8"), BlockSize: 26}}) // 262144 blocks
	i := 0
	for b.Loop() {
		node := fmt.Sprint("node-", i)
		i++
		if _, err := m.AutoAssign(ctx, AssignArgs{Node: node, Handle: node}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBoltAssign(b *testing.B) {
	ctx := context.Background()
	s, err := OpenBolt(filepath.Join(b.TempDir(), "ipam.db"))
	if err != nil {
		b.Fatal(err)
	}
	m, _ := New(s, []Pool{{Name: "big", CIDR: pp("10.0.0.0/8"), BlockSize: 26}})
	i := 0
	for b.Loop() {
		h := fmt.Sprint("h-", i)
		i++
		if _, err := m.AutoAssign(ctx, AssignArgs{Node: "node1", Handle: h}); err != nil {
			b.Fatal(err)
		}
	}
}
