package scenarios

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// JUnit XML, as CI systems (Jenkins, GitLab, GitHub actions) read it: one
// testsuite per scenario file, one testcase per scenario.
type (
	junitSuites struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Name     string       `xml:"name,attr"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Errors   int          `xml:"errors,attr"`
		Time     string       `xml:"time,attr"`
		Suites   []junitSuite `xml:"testsuite"`
	}
	junitSuite struct {
		ID         int             `xml:"id,attr"`
		Package    string          `xml:"package,attr"`
		Hostname   string          `xml:"hostname,attr"`
		Name       string          `xml:"name,attr"`
		Tests      int             `xml:"tests,attr"`
		Failures   int             `xml:"failures,attr"`
		Errors     int             `xml:"errors,attr"`
		Skipped    int             `xml:"skipped,attr"`
		Time       string          `xml:"time,attr"`
		Timestamp  string          `xml:"timestamp,attr"`
		Properties junitProps      `xml:"properties"`
		Cases      []junitTestCase `xml:"testcase"`
		SystemOut  junitText       `xml:"system-out"`
		SystemErr  junitText       `xml:"system-err"`
	}
	junitProps struct {
		Props []junitProp `xml:"property"`
	}
	junitProp struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	}
	junitTestCase struct {
		Name      string        `xml:"name,attr"`
		Classname string        `xml:"classname,attr"`
		Time      string        `xml:"time,attr"`
		Failure   *junitFailure `xml:"failure,omitempty"`
		SystemOut *junitText    `xml:"system-out,omitempty"`
	}
	junitFailure struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
		Text    string `xml:",cdata"`
	}
	junitText struct {
		Text string `xml:",cdata"`
	}
)

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteJUnit writes results as JUnit XML (every element and attribute
// the Ant JUnit schema requires): a testsuite per scenario file,
// a testcase per scenario whose failure message names the failed step and
// says what was observed and expected, the step log and the pcapng files
// in system-out.
func WriteJUnit(w io.Writer, results []*Result) error {
	top := junitSuites{Name: "vrouter conformance"}
	byFile := map[string]int{}
	var total time.Duration
	for _, r := range results {
		i, ok := byFile[r.Scenario.File]
		if !ok {
			i = len(top.Suites)
			byFile[r.Scenario.File] = i
			top.Suites = append(top.Suites, junitSuite{ID: i, Package: "vrouter.scenarios", Hostname: hostname(), Name: r.Scenario.File, Timestamp: r.Start.UTC().Format("2006-01-02T15:04:05")})
		}
		s := &top.Suites[i]
		if r.Scenario.DUT != "" {
			s.Properties.Props = append(s.Properties.Props, junitProp{Name: "dut", Value: r.Scenario.DUT})
		}
		if r.Scenario.RFC != "" {
			s.Properties.Props = append(s.Properties.Props, junitProp{Name: "rfc", Value: r.Scenario.RFC})
		}
		c := junitTestCase{Name: r.Scenario.Name, Classname: strings.TrimSuffix(strings.TrimSuffix(r.Scenario.File, ".yaml"), ".yml"), Time: seconds(r.Duration)}
		var out strings.Builder
		if r.Scenario.RFC != "" {
			fmt.Fprintf(&out, "checks: %s\n", r.Scenario.RFC)
		}
		if r.Scenario.DUT != "" {
			fmt.Fprintf(&out, "device under test: %s\n", r.Scenario.DUT)
		}
		fmt.Fprintf(&out, "lab: %s\n", r.Lab)
		for i, st := range r.Steps {
			verdict := "ok"
			if st.Err != nil {
				verdict = "FAIL"
			}
			fmt.Fprintf(&out, "step %d %s: %s (%s)\n", i+1, st.Step.Describe(), verdict, st.Duration.Round(time.Millisecond))
		}
		for _, p := range r.Captures {
			fmt.Fprintf(&out, "pcapng: %s\n", p)
		}
		if r.Dir != "" {
			fmt.Fprintf(&out, "artifacts: %s\n", r.Dir)
		}
		c.SystemOut = &junitText{Text: out.String()}
		if !r.Passed {
			msg := r.Failure
			if msg == "" {
				msg = "failed"
			}
			first, _, _ := strings.Cut(msg, "\n")
			c.Failure = &junitFailure{Message: first, Type: "AssertionFailed", Text: msg}
			s.Failures++
			top.Failures++
		}
		s.Tests++
		top.Tests++
		s.Cases = append(s.Cases, c)
		d := r.Duration
		total += d
		prev, _ := time.ParseDuration(s.Time + "s")
		s.Time = seconds(prev + d)
		if r.Scenario.RFC != "" {
			s.Properties.Props = append(s.Properties.Props, junitProp{Name: "rfc", Value: r.Scenario.RFC})
		}
	}
	top.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(top); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
