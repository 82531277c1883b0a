package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vrouter-lab/vrouter/scenarios"
)

// errTestsFailed is returned when a scenario failed: the summary has said
// so, main only has to exit non-zero.
var errTestsFailed = errors.New("some scenarios failed")

func newTestCommand() *cobra.Command {
	var run, junit, artifacts string
	var keep bool
	var parallel int
	cmd := &cobra.Command{
		Use:   "test PATH... [--run REGEX] [--junit FILE] [--artifacts DIR] [--keep-on-failure] [--parallel N]",
		Short: "Run conformance scenarios (YAML) against labs, with pcap evidence",
		Long: `test runs the scenario files at PATH (files, or directories searched for
*.yaml, skipping testdata): each scenario deploys its lab under a unique
name, runs its steps (deploy, workload add and del, apply, link down and
up, link impairments, node restart, stop and start, pause and resume,
capture start and stop, wait) and assertions (routes, bgp, ping, traceroute, tcp, packets, bgpMessages; each polled
until it holds or its timeout passes), and destroys the lab, also on Ctrl-C. Every file is
checked before anything is created; a file with errors is reported as
FILE:LINE: FIELD: message and nothing runs. --parallel N runs N scenarios
at once (labs are independent).

It prints a line per step (elapsed time, verdict), then "N passed, N failed",
and exits non-zero when any scenario failed. Captures are kept as pcapng in
the artifacts directory, one directory per scenario (with the nodes' logs,
tables and status when it failed); --junit writes JUnit XML for CI. The
README's "Conformance tests" section describes the format.`,
		Example: `  vrouter test scenarios/
  vrouter test scenarios/suite/rfc4271-open.yaml --artifacts /tmp/evidence
  vrouter test scenarios/ --run 'rfc2003|crosssubnet' --junit conformance.xml`,
		Args: cobra.MinimumNArgs(1),
	}
	cmd.Flags().StringVar(&run, "run", "", "run only the scenarios whose name matches this regular expression")
	cmd.Flags().StringVar(&junit, "junit", "", "write JUnit XML results to this file")
	cmd.Flags().StringVar(&artifacts, "artifacts", "", "directory for captures and evidence (default: a new directory under $TMPDIR)")
	cmd.Flags().BoolVar(&keep, "keep-on-failure", false, "leave the lab of a failed scenario deployed, to look around")
	cmd.Flags().IntVar(&parallel, "parallel", 1, "run up to N scenarios at once, each on its own lab (their progress lines come when each ends)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		// A reader that goes away (vrouter test | head) must not kill
		// the runner before it has destroyed its labs: writes fail
		// instead.
		signal.Ignore(syscall.SIGPIPE)
		var filter *regexp.Regexp
		if run != "" {
			var err error
			if filter, err = regexp.Compile(run); err != nil {
				return fmt.Errorf("--run: %w", err)
			}
		}
		files, err := scenarios.Discover(args)
		if err != nil {
			return err
		}
		list, err := scenarios.LoadAll(files)
		if err != nil {
			return err // before anything is created
		}
		if filter != nil {
			var kept []*scenarios.Scenario
			for _, s := range list {
				if filter.MatchString(s.Name) {
					kept = append(kept, s)
				}
			}
			if len(kept) == 0 {
				return fmt.Errorf("--run %q matches none of the %d scenarios", run, len(list))
			}
			list = kept
		}
		if artifacts == "" {
			if artifacts, err = os.MkdirTemp("", "vrouter-test-"); err != nil {
				return err
			}
		}
		if artifacts, err = filepath.Abs(artifacts); err != nil {
			return err
		}
		if parallel < 1 {
			return fmt.Errorf("--parallel %d: must be at least 1", parallel)
		}
		stderr := cmd.ErrOrStderr()
		r, err := scenarios.NewRunner(scenarios.Options{Artifacts: artifacts, KeepOnFailure: keep, Progress: cmd.OutOrStdout(), Parallel: parallel})
		if err != nil {
			return err
		}
		start := time.Now()
		results := r.RunAll(cmd.Context(), list)
		if junit != "" {
			f, err := os.Create(junit)
			if err != nil {
				return err
			}
			if err := scenarios.WriteJUnit(f, results); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		}
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "\nartifacts: %s\n", artifacts)
		if junit != "" {
			fmt.Fprintf(out, "junit: %s\n", junit)
		}
		skipped := len(list) - len(results)
		if skipped > 0 {
			fmt.Fprintf(stderr, "interrupted: %d scenarios not run\n", skipped)
		}
		fmt.Fprintf(out, "time: %s\n", time.Since(start).Round(time.Millisecond))
		fmt.Fprintln(out, scenarios.Summary(results))
		for _, res := range results {
			if !res.Passed {
				return errTestsFailed
			}
		}
		if skipped > 0 || cmd.Context().Err() != nil {
			return errors.New("interrupted")
		}
		return nil
	}
	return cmd
}
