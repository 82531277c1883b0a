// Package nftpolicy is kernel mode's policy enforcement: it writes Calico
// policy, compiled per endpoint by vrouter/policy, as nftables rules in one
// table of a network namespace (a node's, or the host's), the way Felix's
// nftables dataplane does.
//
// It owns exactly one table, "ip vrouter", and nothing else: Apply
// replaces the whole table in one nftables transaction (the kernel swaps
// the old rules for the new ones atomically, so no packet sees a half
// written policy), Remove deletes it, and no other table or chain is ever
// read for writing or touched. The table holds:
//
//	chain filter-FORWARD  hook forward, policy accept
//	chain filter-INPUT    hook input, policy accept (workload to host)
//	chain cali-fw-<if>    from the workload on <if>: its egress policy
//	chain cali-tw-<if>    to the workload on <if>: its ingress policy
//
// Both base chains first accept replies of tracked flows and related
// packets (ICMP errors), then jump to the endpoint chains of the
// workloads that policies select. An endpoint chain drops invalid
// packets, then runs the endpoint's compiled rules in order: Allow and
// Pass return (the packet goes on to the next check, then is accepted by
// the base chain's policy), Deny drops, Log logs ("calico-packet: ") and
// continues; what no rule allows is dropped. Every rule counts its
// packets and carries a comment naming its policy, direction and index,
// which is how Counters reads the hit counts back.
//
// Packets in a flow's original direction go through the rules every time
// (only replies and related packets are accepted by conntrack): a flow
// allowed before a policy change keeps flowing if the new policy allows
// it and is cut if it denies it — the userspace engine's behaviour too.
// Traffic from the host to its own workloads is not policed (as Calico
// lets a host reach its workloads); host endpoints are out of scope.
package nftpolicy

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
	"golang.org/x/sys/unix"
)

// TableName is the name of the table the package owns (family ip).
const TableName = "vrouter"

// Names of the chains.
const (
	chainForward = "filter-FORWARD"
	chainInput   = "filter-INPUT"
	// LogPrefix starts the kernel log line of a Log rule, as Calico's.
	LogPrefix = "calico-packet: "
)

// FromChain and ToChain name the chains of the workload on the host-side
// interface ifname: its egress (packets from it) and its ingress.
func FromChain(ifname string) string { return "cali-fw-" + ifname }

// ToChain names the ingress chain of the workload on ifname.
func ToChain(ifname string) string { return "cali-tw-" + ifname }

// Table is the policy table of one network namespace.
type Table struct {
	conn  *nftables.Conn
	nsfd  int
	table *nftables.Table
}

// Open connects to nftables in the named network namespace (never the
// root one: package netns refuses it), or in the process's own namespace
// for "" (a real host). It changes nothing.
func Open(namespace string) (*Table, error) {
	t := &Table{nsfd: -1, table: &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}}
	var opts []nftables.ConnOption
	if namespace != "" {
		err := netns.Do(namespace, func() error {
			fd, err := unix.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			t.nsfd = fd
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("nftables in namespace %s: %w", namespace, err)
		}
		opts = append(opts, nftables.WithNetNSFd(t.nsfd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("nftables: %w", err)
	}
	t.conn = c
	return t, nil
}

// Close releases the connection; the table stays as it is.
func (t *Table) Close() error {
	if t.nsfd >= 0 {
		unix.Close(t.nsfd)
		t.nsfd = -1
	}
	return nil
}

// Apply replaces the table with the rules of compiled for the endpoints
// of this host: ifaces maps an endpoint's name to its host-side interface
// (endpoints of other hosts are left out; their addresses are in the
// rules' selectors all the same). A nil compiled, or one selecting no
// local endpoint, leaves an empty table (everything accepted).
func (t *Table) Apply(compiled *policy.Compiled, ifaces map[string]string) error {
	c := t.conn
	// Add (a no-op if it exists), delete and add again: one transaction
	// that replaces whatever the table held.
	c.AddTable(t.table)
	c.DelTable(t.table)
	c.AddTable(t.table)
	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{Name: chainForward, Table: t.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	in := c.AddChain(&nftables.Chain{Name: chainInput, Table: t.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	for _, base := range []*nftables.Chain{fwd, in} {
		b := t.builder()
		b.ctState(expr.CtStateBitESTABLISHED)
		b.ctReply()
		b.verdict(expr.VerdictAccept, "")
		t.add(base, b, "reply of a tracked flow")
		b = t.builder()
		b.ctState(expr.CtStateBitRELATED)
		b.verdict(expr.VerdictAccept, "")
		t.add(base, b, "related to a tracked flow")
	}
	var errs []error
	for _, name := range sortedKeys(ifaces) {
		var ep *policy.EndpointRules
		if compiled != nil {
			ep = compiled.Endpoints[name]
		}
		if ep == nil {
			continue
		}
		ifname := ifaces[name]
		if ep.Egress.Policed {
			errs = append(errs, t.endpointChain(FromChain(ifname), policy.Egress, &ep.Egress))
			for _, base := range []*nftables.Chain{fwd, in} {
				b := t.builder()
				b.ifname(expr.MetaKeyIIFNAME, ifname)
				b.verdict(expr.VerdictJump, FromChain(ifname))
				t.add(base, b, "from "+name)
			}
		}
		if ep.Ingress.Policed {
			errs = append(errs, t.endpointChain(ToChain(ifname), policy.Ingress, &ep.Ingress))
			b := t.builder()
			b.ifname(expr.MetaKeyOIFNAME, ifname)
			b.verdict(expr.VerdictJump, ToChain(ifname))
			t.add(fwd, b, "to "+name)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write nftables table ip %s: %w", TableName, err)
	}
	return nil
}

// endpointChain adds the chain of one endpoint's direction.
func (t *Table) endpointChain(name string, dir policy.Direction, ch *policy.Chain) error {
	chain := t.conn.AddChain(&nftables.Chain{Name: name, Table: t.table})
	b := t.builder()
	b.ctState(expr.CtStateBitINVALID)
	b.counter()
	b.verdict(expr.VerdictDrop, "")
	t.add(chain, b, "invalid")
	for i := range ch.Rules {
		r := &ch.Rules[i]
		b := t.builder()
		if !b.rule(r) {
			continue
		}
		if b.err != nil {
			return b.err
		}
		b.counter()
		switch r.Action {
		case policy.Allow, policy.Pass:
			b.verdict(expr.VerdictReturn, "")
		case policy.Deny:
			b.verdict(expr.VerdictDrop, "")
		case policy.Log:
			b.exprs = append(b.exprs, &expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(LogPrefix)})
		default:
			return fmt.Errorf("policy %s: rule %d: action %q", r.Policy, r.Index, r.Action)
		}
		t.add(chain, b, ruleComment(policy.RuleID{Policy: r.Policy, Direction: dir, Index: r.Index}))
	}
	b = t.builder()
	b.counter()
	b.verdict(expr.VerdictDrop, "")
	t.add(chain, b, "default deny")
	return nil
}

func (t *Table) builder() *builder { return &builder{conn: t.conn, table: t.table} }

// add queues the rule built by b in chain, with a comment.
func (t *Table) add(chain *nftables.Chain, b *builder, comment string) {
	t.conn.AddRule(&nftables.Rule{Table: t.table, Chain: chain, Exprs: b.exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, comment)})
}

// ruleComment is the comment of a policy rule: "policy KEY ingress rule N".
func ruleComment(id policy.RuleID) string {
	return fmt.Sprintf("policy %s %s rule %d", id.Policy, strings.ToLower(string(id.Direction)), id.Index)
}

// parseComment reads a rule comment back.
func parseComment(s string) (policy.RuleID, bool) {
	f := strings.Fields(s)
	if len(f) != 5 || f[0] != "policy" || f[3] != "rule" {
		return policy.RuleID{}, false
	}
	i, err := strconv.Atoi(f[4])
	if err != nil {
		return policy.RuleID{}, false
	}
	var dir policy.Direction
	switch f[2] {
	case "ingress":
		dir = policy.Ingress
	case "egress":
		dir = policy.Egress
	default:
		return policy.RuleID{}, false
	}
	return policy.RuleID{Policy: f[1], Direction: dir, Index: i}, true
}

// Counters returns the packets each policy rule matched, summed over the
// endpoints it applies to, and the packets dropped by each endpoint's
// default deny (under the RuleID with Index -1 and Policy "" of its
// direction). No table: no counters.
func (t *Table) Counters() (rules map[policy.RuleID]uint64, defaultDenied map[policy.Direction]uint64, err error) {
	rules = map[policy.RuleID]uint64{}
	defaultDenied = map[policy.Direction]uint64{}
	chains, err := t.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, nil, fmt.Errorf("list nftables chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		var dir policy.Direction
		switch {
		case strings.HasPrefix(ch.Name, "cali-fw-"):
			dir = policy.Egress
		case strings.HasPrefix(ch.Name, "cali-tw-"):
			dir = policy.Ingress
		default:
			continue
		}
		rs, err := t.conn.GetRules(t.table, ch)
		if err != nil {
			return nil, nil, fmt.Errorf("list rules of %s: %w", ch.Name, err)
		}
		for _, r := range rs {
			comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			n := packets(r)
			if id, ok := parseComment(comment); ok {
				rules[id] += n
			} else if comment == "default deny" {
				defaultDenied[dir] += n
			}
		}
	}
	return rules, defaultDenied, nil
}

// packets is the packet count of a rule's counter.
func packets(r *nftables.Rule) uint64 {
	for _, e := range r.Exprs {
		if c, ok := e.(*expr.Counter); ok {
			return c.Packets
		}
	}
	return 0
}

// Remove deletes the table, if there is one (agent shutdown with
// cleanup). Nothing else is touched.
func (t *Table) Remove() error {
	tables, err := t.conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == TableName }) {
		return nil
	}
	t.conn.DelTable(t.table)
	if err := t.conn.Flush(); err != nil {
		return fmt.Errorf("delete nftables table ip %s: %w", TableName, err)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
