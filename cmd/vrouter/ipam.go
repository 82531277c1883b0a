package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/vrouter/agent"
	"github.com/vrouter-lab/vrouter/vrouter/config"
	"github.com/vrouter-lab/vrouter/vrouter/ipam"
)

func newIPAMCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ipam",
		Short: "Show, check and release IPAM state in a datastore, as calicoctl ipam does",
	}
	cmd.AddCommand(newIPAMShowCommand(), newIPAMCheckCommand(), newIPAMReleaseCommand())
	return cmd
}

func newIPAMShowCommand() *cobra.Command {
	var ds datastoreFlags
	var db string
	var pools []string
	var showBlocks bool
	cmd := &cobra.Command{
		Use:   "show [--show-blocks] (--lab LAB | --db FILE | --datastore etcd --etcd-endpoints URL,...) [--pool CIDR]...",
		Short: "Print addresses in use and free per IP pool (and per block), as 'calicoctl ipam show' does",
		Long: `show reads the IPAM datastore, a bbolt file (--db, the default datastore),
etcd (--datastore etcd with --etcd-endpoints and, for TLS, --etcd-cert,
--etcd-key and --etcd-ca) or a lab's (--lab: its file, or the etcd cluster
of a lab with datastore: etcd, reached through the lab's etcd network), and
prints for each pool given with --pool how
many of its addresses are in use and free; with --show-blocks, every
block too. Without --pool it prints the total over all blocks.`,
		Example: "  vrouter ipam show --db /run/vrouter/calico-bgp/ipam.db --pool 10.244.0.0/16 --show-blocks\n" +
			"  vrouter ipam show --lab calico-etcd --show-blocks\n" +
			"  vrouter ipam show --datastore etcd --etcd-endpoints https://10.0.0.1:2379 \\\n" +
			"      --etcd-cert client.pem --etcd-key client-key.pem --etcd-ca ca.pem --show-blocks",
		Args: cobra.NoArgs,
	}
	ds.register(cmd)
	cmd.Flags().StringVar(&db, "db", "", "the bbolt datastore file (for --datastore bbolt)")
	load := labFlag(cmd)
	cmd.Flags().StringSliceVar(&pools, "pool", nil, "an IP pool's CIDR to group by (repeatable)")
	cmd.Flags().BoolVar(&showBlocks, "show-blocks", false, "print every block as well")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var cidrs []netip.Prefix
		for _, p := range pools {
			c, err := netip.ParsePrefix(p)
			if err != nil || c.Masked() != c {
				return fmt.Errorf("--pool %q is not a CIDR like 10.244.0.0/16", p)
			}
			cidrs = append(cidrs, c)
		}
		var store interface {
			ipam.Datastore
			Close() error
		}
		var err error
		if cmd.Flags().Changed("lab") {
			// A lab's store: its bbolt file, or its etcd (reached
			// through the lab's etcd network).
			if db != "" || cmd.Flags().Changed("datastore") {
				return fmt.Errorf("--lab and --db or --datastore: give one")
			}
			st, err := load()
			if err != nil {
				return err
			}
			if store, err = st.OpenIPAM(cmd.Context()); err != nil {
				return err
			}
		} else {
			cfg := &config.Node{Datastore: db}
			if err := ds.apply(cmd, cfg); err != nil {
				return err
			}
			if cfg.DatastoreType != config.DatastoreEtcd {
				// Show, do not create: OpenBolt makes a missing file.
				if _, err := os.Stat(db); err != nil {
					return fmt.Errorf("datastore file: %w", err)
				}
			}
			if store, err = agent.OpenDatastore(cmd.Context(), cfg); err != nil {
				return err
			}
		}
		defer store.Close()
		var blocks []ipam.Block
		err = store.View(cmd.Context(), func(tx ipam.Tx) error {
			blocks, err = tx.Blocks()
			return err
		})
		if err != nil {
			return err
		}
		return writeIPAMShow(cmd.OutOrStdout(), blocks, cidrs, showBlocks)
	}
	return cmd
}

// writeIPAMShow prints calicoctl ipam show's table: a row per pool (or
// one for all blocks when no pool is given) and, with showBlocks, a row per
// block.
func writeIPAMShow(w io.Writer, blocks []ipam.Block, pools []netip.Prefix, showBlocks bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "GROUPING\tCIDR\tIPS TOTAL\tIPS IN USE\tIPS FREE")
	row := func(group, cidr string, total, inUse uint64) {
		pct := func(n uint64) string {
			if total == 0 {
				return fmt.Sprint(n)
			}
			return fmt.Sprintf("%d (%.0f%%)", n, 100*float64(n)/float64(total))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", group, cidr, total, pct(inUse), pct(total-inUse))
	}
	inUse := func(in func(netip.Prefix) bool) (total, used uint64) {
		for _, b := range blocks {
			if in(b.CIDR) {
				total += uint64(b.NumAddresses())
				used += uint64(len(b.Allocations))
			}
		}
		return total, used
	}
	for _, p := range pools {
		_, used := inUse(func(b netip.Prefix) bool { return p.Overlaps(b) })
		size := uint64(1) << min(63, p.Addr().BitLen()-p.Bits())
		row("IP Pool", p.String(), size, used)
	}
	if len(pools) == 0 {
		total, used := inUse(func(netip.Prefix) bool { return true })
		row("All blocks", "-", total, used)
	}
	if showBlocks {
		for _, b := range blocks {
			row("Block", b.CIDR.String(), uint64(b.NumAddresses()), uint64(len(b.Allocations)))
		}
	}
	return tw.Flush()
}
