package scenarios

import (
	"context"
	"net/netip"
	"regexp"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
)

// Scenario is one parsed, validated scenario file.
type Scenario struct {
	// File is the scenario file's path, as given to Load or Parse.
	File string
	// Name names the scenario in progress lines and JUnit.
	Name string
	// Description says what the scenario checks.
	Description string
	// RFC names the RFC section or seed behaviour checked, e.g.
	// "RFC 4271 4.2".
	RFC string
	// Lab is the scenario's lab, as its file says; the runner deploys it
	// under a unique name of its own.
	Lab *topology.Lab
	// LabFile is the path of the lab file when the scenario names one
	// instead of giving the lab inline.
	LabFile string
	// DUT is the device under test: a node or router of the lab, the
	// default node of the routes and bgp assertions. Empty when not given.
	DUT string
	// Steps run in order; the first failing one ends the scenario.
	Steps []Step
}

// Step is one action or assertion of a scenario.
type Step struct {
	// Line is the step's line in the scenario file.
	Line int
	// Kind is the step's key, such as "deploy" or "routes".
	Kind string
	// Assert is true for assertions: they are polled until they hold or
	// Timeout passes.
	Assert bool
	// Timeout bounds an assertion's polling, or how long deploy and
	// restart wait for BGP.
	Timeout time.Duration
	act     action
}

// Describe returns a short text of the step, e.g. "routes node1".
func (s Step) Describe() string { return s.act.describe() }

// action is what a step does. An assertion returns an error saying what it
// observed and what it expected while it does not hold.
type action interface {
	describe() string
	run(ctx context.Context, r *scenarioRun) error
}

// Default timeouts.
const (
	// DefaultAssertTimeout bounds an assertion without a timeout.
	DefaultAssertTimeout = 30 * time.Second
	// DefaultDeployTimeout bounds deploy and restart waiting for BGP.
	DefaultDeployTimeout = 60 * time.Second
	// maxTimeout is the longest timeout a scenario may give.
	maxTimeout = time.Hour
)

type (
	deployStep struct {
		noWait  bool
		timeout time.Duration
	}
	destroyStep     struct{}
	workloadAddStep struct {
		name, node string
		addr       netip.Addr
	}
	workloadDelStep struct{ name string }
	applyStep       struct{ lab *topology.Lab }
	linkStep        struct {
		node, iface string
		up          bool
	}
	restartStep struct {
		node         string
		mode         string // restart, stop or start
		kill, noWait bool
		timeout      time.Duration
	}
	pauseStep struct {
		name  string
		pause bool // false: resume
	}
	captureStartStep struct{ network, name string }
	captureStopStep  struct{ name string }
	waitStep         struct{ d time.Duration }

	routesAssert struct {
		node       string
		contains   []string
		lacks      []string
		matches    []string // regular expressions, checked at parse time
		notMatches []string
		equals     *string
	}
	bgpAssert struct {
		node  string
		peer  netip.Addr
		state string // up, start or down, as node status prints it; empty: any
		info  *regexp.Regexp
	}
	pingAssert struct {
		from, to string
		success  bool
		count    int
		ttl      int
		size     int // payload bytes, sent with DF (-M do); 0: ping's default
		output   *regexp.Regexp
	}
	tracerouteAssert struct {
		from, to string
		hops     []string // address, "*" for no answer, optionally with an annotation such as "!N"
		maxHops  int
	}
	tcpAssert struct {
		from, to string
		port     uint16
		listen   bool
		expect   string // connected, refused or unreachable
	}
	packetsAssert struct {
		capture string
		match   *filter
		check   *filter
		count   countSpec
	}
	bgpMessagesAssert struct {
		capture  string
		match    *msgFilter
		count    countSpec
		interval *interval
	}
)

// countSpec says how many packets or messages an assertion wants: none
// (absent), exactly N, or at least Min.
type countSpec struct {
	absent bool
	exact  int // -1: not given
	min    int
}

// interval bounds the gap between consecutive matching messages of one
// direction of a session.
type interval struct{ min, max time.Duration }

// Expectation values.
const (
	expectConnected   = "connected"
	expectRefused     = "refused"
	expectUnreachable = "unreachable"
)
