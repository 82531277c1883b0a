package scenarios

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/topology/lab"
)

// Options tune a Runner.
type Options struct {
	// Binary is the vrouter executable the lab's nodes run; default: this
	// one (the runner runs inside `vrouter test`).
	Binary string
	// Artifacts is the directory each scenario's captures (and, when it
	// fails, its nodes' logs and tables) go to, one directory per
	// scenario. Required.
	Artifacts string
	// KeepOnFailure leaves the lab of a failed scenario deployed.
	KeepOnFailure bool
	// Progress receives progress lines; nil for none.
	Progress io.Writer
	// LockWait is how long to wait for a lab's lock; default 3m.
	LockWait time.Duration
	// Parallel is how many scenarios RunAll runs at once, each on its
	// own lab; 0 or 1 runs them one after another. With more, each
	// scenario's progress lines are written together when it ends.
	Parallel int
}

// Result is the outcome of one scenario.
type Result struct {
	Scenario *Scenario
	// Lab is the name the scenario's lab was deployed under.
	Lab string
	// Passed is true when every step passed.
	Passed bool
	// Failure says which step failed and why: "step 3 (routes node1):
	// observed ..., expected ...". Empty when Passed.
	Failure string
	// FailedStep is the 1-based index of the failed step, 0 if none (or
	// the scenario failed around its steps, e.g. destroying its lab).
	FailedStep int
	Steps      []StepResult
	Start      time.Time
	Duration   time.Duration
	// Dir is the scenario's artifacts directory.
	Dir string
	// Captures are the pcapng files the scenario wrote.
	Captures []string
	// Kept is true when the lab was left deployed (KeepOnFailure).
	Kept bool
}

// StepResult is the outcome of one step.
type StepResult struct {
	Step     Step
	Elapsed  time.Duration // since the scenario started, when the step started
	Duration time.Duration
	Err      error
}

// Runner runs scenarios, each on a lab of its own.
type Runner struct {
	opt    Options
	prefix string // random, so that names never collide with other runs
	mu     sync.Mutex
	n      int
}

// NewRunner returns a runner.
func NewRunner(opt Options) (*Runner, error) {
	if opt.Artifacts == "" {
		return nil, errors.New("scenarios: Options.Artifacts is required")
	}
	if opt.LockWait == 0 {
		opt.LockWait = 3 * time.Minute
	}
	if opt.Binary == "" {
		var err error
		if opt.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find vrouter executable: %w", err)
		}
	}
	if err := os.MkdirAll(opt.Artifacts, 0o755); err != nil {
		return nil, err
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return &Runner{opt: opt, prefix: "sc" + hex.EncodeToString(b[:])[:5]}, nil
}

// labName returns a lab name no deployed lab has: sc<random>-<n>.
func (r *Runner) labName() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		r.n++
		name := fmt.Sprintf("%s-%d", r.prefix, r.n)
		if dir, err := lab.Dir(name); err == nil {
			if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
				return name
			}
		}
	}
}

// progress writes a progress line to out, if not nil.
func progress(out io.Writer, format string, args ...any) {
	if out != nil {
		fmt.Fprintf(out, format+"\n", args...)
	}
}

// Run runs one scenario and returns its result. The scenario's lab is
// destroyed before Run returns (unless it failed and KeepOnFailure is
// set), also when ctx is cancelled, which fails the running step.
func (r *Runner) Run(ctx context.Context, s *Scenario) *Result {
	return r.run(ctx, s, r.opt.Progress)
}

// run runs one scenario, writing its progress lines to out.
func (r *Runner) run(ctx context.Context, s *Scenario, out io.Writer) *Result {
	res := &Result{Scenario: s, Lab: r.labName(), Start: time.Now()}
	res.Dir = r.artifactDir(s)
	dut := ""
	if s.DUT != "" {
		dut = ", dut " + s.DUT
	}
	progress(out, "=== RUN   %s (%s, lab %s%s)", s.Name, s.File, res.Lab, dut)
	run := &scenarioRun{s: s, r: r, res: res, name: res.Lab, captures: map[string]*captureRun{}, out: out}
	unlock, err := lab.Lock(res.Lab, "test "+s.File, r.opt.LockWait, out)
	if err != nil {
		res.Failure = err.Error()
		res.Duration = time.Since(res.Start)
		progress(out, "--- FAIL: %s (%s)\n    %s", s.Name, res.Duration.Round(time.Millisecond), res.Failure)
		return res
	}
	defer unlock()
	res.Passed = true
	for i, st := range s.Steps {
		sr := StepResult{Step: st, Elapsed: time.Since(res.Start)}
		t0 := time.Now()
		sr.Err = run.step(ctx, st)
		sr.Duration = time.Since(t0)
		res.Steps = append(res.Steps, sr)
		verdict := "ok"
		if sr.Err != nil {
			verdict = "FAIL"
		}
		progress(out, "    %7s  step %d/%d %-44s %s (%s)", sr.Elapsed.Round(100*time.Millisecond), i+1, len(s.Steps), cut(st.Describe(), 44), verdict, sr.Duration.Round(10*time.Millisecond))
		if sr.Err != nil {
			res.Passed = false
			res.FailedStep = i + 1
			res.Failure = fmt.Sprintf("step %d (%s, line %d): %v", i+1, st.Describe(), st.Line, sr.Err)
			progress(out, "        %s", indent(sr.Err.Error(), "        "))
			break
		}
	}
	run.finish(!res.Passed)
	res.Duration = time.Since(res.Start)
	verdict := "PASS"
	if !res.Passed {
		verdict = "FAIL"
	}
	progress(out, "--- %s: %s (%s)", verdict, s.Name, res.Duration.Round(time.Millisecond))
	if res.Kept {
		progress(out, "    lab %s kept; remove it with: vrouter destroy --lab %s", res.Lab, res.Lab)
	}
	return res
}

// cut shortens s to n characters, marking the cut with "...".
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func indent(s, prefix string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix)
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// artifactDir returns a new directory for the scenario's artifacts, named
// after it.
func (r *Runner) artifactDir(s *Scenario) string {
	base := strings.Trim(unsafeChars.ReplaceAllString(s.Name, "-"), "-.")
	if base == "" {
		base = "scenario"
	}
	if len(base) > 80 {
		base = base[:80]
	}
	dir := filepath.Join(r.opt.Artifacts, base)
	for i := 2; ; i++ {
		if err := os.Mkdir(dir, 0o755); err == nil || !errors.Is(err, fs.ErrExist) {
			return dir
		}
		dir = filepath.Join(r.opt.Artifacts, fmt.Sprintf("%s-%d", base, i))
	}
}

// scenarioRun is the state of one running scenario.
type scenarioRun struct {
	s         *Scenario
	r         *Runner
	res       *Result
	name      string     // the lab's name
	st        *lab.State // nil until deployed
	deployed  bool       // a deploy was attempted and no destroy since
	captures  map[string]*captureRun
	listeners []net.Listener
	paused    map[string]bool // nodes and routers a pause step froze, until resumed
	out       io.Writer       // progress lines; nil for none
}

// step runs one step; an assertion is polled until it holds or its
// timeout passes, and its last error is returned.
func (run *scenarioRun) step(ctx context.Context, st Step) error {
	if !st.Assert {
		err := st.act.run(ctx, run)
		if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("interrupted: %w (%v)", ctx.Err(), err)
		} else if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", err)
		}
		return err
	}
	deadline := time.Now().Add(st.Timeout)
	actx, cancel := context.WithDeadline(ctx, deadline.Add(5*time.Second))
	defer cancel()
	for {
		err := st.act.run(actx, run)
		if err == nil {
			return nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w (last: %v)", ctx.Err(), err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w (after %s)", err, st.Timeout)
		}
		pause := 250 * time.Millisecond
		if p, ok := st.act.(pacer); ok {
			pause = p.pause()
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(left, pause)):
		}
	}
}

// pacer is an assertion that must not be repeated faster than pause: one
// whose probes the lab rate-limits.
type pacer interface{ pause() time.Duration }

// fatalError ends an assertion's polling at once: waiting cannot help.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

func fatal(err error) error { return &fatalError{err} }

// finish stops captures and listeners, saves logs of a failed scenario and
// destroys its lab (unless kept).
func (run *scenarioRun) finish(failed bool) {
	for _, name := range sortedKeys(run.captures) {
		run.captures[name].stop()
	}
	for _, l := range run.listeners {
		l.Close()
	}
	if !run.deployed {
		return
	}
	// a frozen process cannot stop when asked to, nor answer
	if run.st != nil {
		for _, name := range sortedKeys(run.paused) {
			if run.paused[name] {
				_ = lab.Pause(run.st, name, false)
			}
		}
	}
	if failed && run.st != nil {
		run.saveEvidence()
	}
	if failed && run.r.opt.KeepOnFailure {
		run.res.Kept = true
		return
	}
	if err := lab.Destroy(run.name); err != nil {
		progress(run.out, "    destroy lab %s: %v", run.name, err)
		if run.res.Passed {
			run.res.Passed = false
			run.res.Failure = fmt.Sprintf("destroy lab %s: %v", run.name, err)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// saveEvidence copies each node's log, routes and status into the
// scenario's artifacts directory, and each external router's daemon logs,
// routes and (BIRD's) protocols.
func (run *scenarioRun) saveEvidence() {
	dir := filepath.Join(run.res.Dir, "nodes")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range run.st.Routers {
		for _, p := range r.Processes {
			if data, err := os.ReadFile(p.Log); err == nil {
				_ = os.WriteFile(filepath.Join(dir, r.Name+"."+p.Name+".log"), data, 0o644)
			}
		}
		if text, err := run.routes(ctx, r.Name); err == nil {
			_ = os.WriteFile(filepath.Join(dir, r.Name+".routes"), []byte(text), 0o644)
		}
		if args := r.CLIArgs(); len(args) > 0 && (r.Daemon == topology.DaemonBIRD || r.Daemon == topology.DaemonBIRD2) {
			args = r.CLIArgs("show", "protocols", "all")
			if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err == nil {
				_ = os.WriteFile(filepath.Join(dir, r.Name+".status"), out, 0o644)
			}
		}
	}
	for _, n := range run.st.Nodes {
		if data, err := os.ReadFile(n.Log); err == nil {
			_ = os.WriteFile(filepath.Join(dir, n.Name+".log"), data, 0o644)
		}
		if text, err := run.routes(ctx, n.Name); err == nil {
			_ = os.WriteFile(filepath.Join(dir, n.Name+".routes"), []byte(text), 0o644)
		}
		if text, err := run.statusText(ctx, n.Name); err == nil {
			_ = os.WriteFile(filepath.Join(dir, n.Name+".status"), []byte(text), 0o644)
		}
	}
}

// RunAll runs the scenarios, one after another or Options.Parallel at
// once, and returns their results in the order of list. Once ctx is
// cancelled the remaining scenarios are not started.
func (r *Runner) RunAll(ctx context.Context, list []*Scenario) []*Result {
	if r.opt.Parallel <= 1 {
		var out []*Result
		for _, s := range list {
			if ctx.Err() != nil {
				break
			}
			out = append(out, r.Run(ctx, s))
		}
		return out
	}
	results := make([]*Result, len(list))
	var wg sync.WaitGroup
	var outMu sync.Mutex
	sem := make(chan struct{}, r.opt.Parallel)
	for i, s := range list {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var buf bytes.Buffer
			var out io.Writer
			if r.opt.Progress != nil {
				out = &buf
			}
			results[i] = r.run(ctx, s, out)
			if r.opt.Progress != nil {
				outMu.Lock()
				_, _ = r.opt.Progress.Write(buf.Bytes())
				outMu.Unlock()
			}
		}()
	}
	wg.Wait()
	var out []*Result
	for _, res := range results {
		if res != nil {
			out = append(out, res)
		}
	}
	return out
}

// Summary returns the line "N passed, N failed".
func Summary(results []*Result) string {
	passed, failed := 0, 0
	for _, r := range results {
		if r.Passed {
			passed++
		} else {
			failed++
		}
	}
	return fmt.Sprintf("%d passed, %d failed", passed, failed)
}

// Discover returns the scenario files under paths: each path is a file,
// or a directory searched recursively for *.yaml and *.yml files (skipping
// directories named testdata or starting with a dot, as go does), in
// lexical order.
func Discover(paths []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, root := range paths {
		root = strings.TrimSuffix(root, "/...")
		fi, err := os.Stat(root)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			add(root)
			continue
		}
		var found []string
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != root && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_")) {
					return filepath.SkipDir
				}
				return nil
			}
			if ext := filepath.Ext(p); ext == ".yaml" || ext == ".yml" {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		for _, p := range found {
			add(p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenario files (*.yaml) in %s", strings.Join(paths, ", "))
	}
	return out, nil
}

// LoadAll loads every file; it returns the scenarios, or every file's
// problems joined, and then none. Two scenarios with one name are a
// problem too.
func LoadAll(files []string) ([]*Scenario, error) {
	var out []*Scenario
	var errs []error
	names := map[string]string{}
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := names[s.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: name: scenario %q is also in %s", f, s.Name, prev))
			continue
		}
		names[s.Name] = f
		out = append(out, s)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
