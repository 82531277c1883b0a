package ipam

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/vrouter/ipam/etcdtest"
)

// BenchmarkClaimTable claims blocks (every AutoAssign for a new node
// claims one: a block created and its affinity written in one
// transaction) on bbolt and on etcd in the same run, by one worker and by
// four at once, and prints claim latency p50/p99 and claims per second as
// a table. It runs once whatever b.N is:
//
//	go test -run '^$' -bench ClaimTable -benchtime 1x ./vrouter/ipam/
func BenchmarkClaimTable(b *testing.B) {
	const claims = 400
	stores := []struct {
		name string
		open func(b *testing.B) Datastore
	}{
		{"bbolt", func(b *testing.B) Datastore {
			s, err := OpenBolt(filepath.Join(b.TempDir(), "ipam.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
		{"etcd", func(b *testing.B) Datastore {
			srv := etcdtest.Start(b, etcdtest.Options{})
			s, err := OpenEtcd(context.Background(), EtcdConfig{Endpoints: srv.Endpoints, Timeout: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
	}
	var rows []string
	for range b.N {
		rows = rows[:0]
		for _, workers := range []int{1, 4} {
			for _, st := range stores {
				m, err := New(st.open(b), []Pool{{Name: "big", CIDR: pp("10.0.0.0/8"), BlockSize: 26}})
				if err != nil {
					b.Fatal(err)
				}
				var mu sync.Mutex
				var took []time.Duration
				var wg sync.WaitGroup
				start := time.Now()
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var mine []time.Duration
						for i := w; i < claims; i += workers {
							node := fmt.Sprint("node-", i)
							t0 := time.Now()
							if _, err := m.AutoAssign(context.Background(), AssignArgs{Node: node, Handle: node}); err != nil {
								b.Error(err)
								return
							}
							mine = append(mine, time.Since(t0))
						}
						mu.Lock()
						took = append(took, mine...)
						mu.Unlock()
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				if len(took) != claims {
					b.Fatalf("%s: %d of %d claims", st.name, len(took), claims)
				}
				blocks, err := m.Blocks(context.Background())
				if err != nil || len(blocks) != claims {
					b.Fatalf("%s: %d blocks after %d claims (%v)", st.name, len(blocks), claims, err)
				}
				slices.Sort(took)
				ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
				rows = append(rows, fmt.Sprintf("| %-5s | %d | %d | %.2f ms | %.2f ms | %.0f |", st.name, workers, claims,
					ms(took[len(took)/2]), ms(took[len(took)*99/100]), float64(claims)/elapsed.Seconds()))
			}
		}
	}
	b.Logf("\n| datastore | workers | block claims | p50 | p99 | claims/s |\n|---|---|---|---|---|---|\n%s", strings.Join(rows, "\n"))
}
