package cni

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vrouter-lab/vrouter/vrouter/control"
)

// run runs the plugin with env and stdin, returning its exit status and
// output.
func run(t *testing.T, env map[string]string, stdin string) (int, string) {
	t.Helper()
	var out strings.Builder
	code := Run(context.Background(), func(k string) string { return env[k] }, strings.NewReader(stdin), &out)
	return code, out.String()
}

// cniError decodes an error object, failing the test unless it is one.
func cniError(t *testing.T, out string) Error {
	t.Helper()
	var e Error
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Msg == "" || e.CNIVersion == "" {
		t.Fatalf("not a CNI error object (%v):\n%s", err, out)
	}
	return e
}

func addEnv() map[string]string {
	return map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "/run/netns/none", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
}

// Bad input gets an error object with the spec's code and exit status 1,
// never a panic or a result.
func TestBadInput(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nodes", "n.sock")
	good := `{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"vrouter-cni","socket":"` + sock + `"}`
	for _, tc := range []struct {
		name  string
		env   func(map[string]string)
		stdin string
		code  uint
	}{
		{"not JSON", nil, "garbage", types.ErrDecodingFailure},
		{"empty stdin", nil, "", types.ErrDecodingFailure},
		{"JSON array", nil, "[1,2]", types.ErrDecodingFailure},
		{"trailing data", nil, good + "{}", types.ErrDecodingFailure},
		{"wrong type of a field", nil, `{"cniVersion":"1.0.0","name":7}`, types.ErrDecodingFailure},
		{"no cniVersion", nil, `{"name":"n","type":"vrouter-cni"}`, types.ErrIncompatibleCNIVersion},
		{"future cniVersion", nil, `{"cniVersion":"9.0.0","name":"n"}`, types.ErrIncompatibleCNIVersion},
		{"no name", nil, `{"cniVersion":"1.0.0","type":"vrouter-cni"}`, types.ErrInvalidNetworkConfig},
		{"relative socket", nil, `{"cniVersion":"1.0.0","name":"n","socket":"x.sock"}`, types.ErrInvalidNetworkConfig},
		{"an ipam plugin", nil, `{"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local"}}`, types.ErrInvalidNetworkConfig},
		{"bad timeout", nil, `{"cniVersion":"1.0.0","name":"n","timeout":"soon"}`, types.ErrInvalidNetworkConfig},
		{"no command", func(e map[string]string) { delete(e, "CNI_COMMAND") }, good, types.ErrInvalidEnvironmentVariables},
		{"unknown command", func(e map[string]string) { e["CNI_COMMAND"] = "FROB" }, good, types.ErrInvalidEnvironmentVariables},
		{"no container ID", func(e map[string]string) { delete(e, "CNI_CONTAINERID") }, good, types.ErrInvalidEnvironmentVariables},
		{"bad container ID", func(e map[string]string) { e["CNI_CONTAINERID"] = "../x" }, good, types.ErrInvalidEnvironmentVariables},
		{"no netns on ADD", func(e map[string]string) { delete(e, "CNI_NETNS") }, good, types.ErrInvalidEnvironmentVariables},
		{"relative netns", func(e map[string]string) { e["CNI_NETNS"] = "netns/x" }, good, types.ErrInvalidEnvironmentVariables},
		{"long ifname", func(e map[string]string) { e["CNI_IFNAME"] = "eth0123456789abc" }, good, types.ErrInvalidEnvironmentVariables},
		{"netns missing", nil, good, types.ErrInvalidNetNS},
		{"CHECK without prevResult", func(e map[string]string) { e["CNI_COMMAND"] = "CHECK" }, good, types.ErrInvalidNetworkConfig},
		{"CHECK at 0.3.1", func(e map[string]string) { e["CNI_COMMAND"] = "CHECK" }, strings.Replace(good, "1.0.0", "0.3.1", 1), types.ErrIncompatibleCNIVersion},
		{"DEL with no agent", func(e map[string]string) { e["CNI_COMMAND"] = "DEL" }, good, types.ErrTryAgainLater},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := addEnv()
			if tc.env != nil {
				tc.env(env)
			}
			code, out := run(t, env, tc.stdin)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if e := cniError(t, out); e.Code != tc.code {
				t.Errorf("code %d (%s), want %d", e.Code, e.Error(), tc.code)
			}
		})
	}
}

// VERSION answers with the versions the plugin speaks, whatever stdin.
func TestVersion(t *testing.T) {
	for _, stdin := range []string{`{"cniVersion":"0.4.0"}`, "", "garbage"} {
		code, out := run(t, map[string]string{"CNI_COMMAND": "VERSION"}, stdin)
		var v struct {
			CNIVersion        string   `json:"cniVersion"`
			SupportedVersions []string `json:"supportedVersions"`
		}
		if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || strings.Join(v.SupportedVersions, " ") != "0.3.0 0.3.1 0.4.0 1.0.0" {
			t.Errorf("stdin %q: exit %d, %v:\n%s", stdin, code, err, out)
		}
		if want := map[bool]string{true: "0.4.0", false: "1.0.0"}[strings.Contains(stdin, "0.4.0")]; v.CNIVersion != want {
			t.Errorf("stdin %q: cniVersion %q, want %q", stdin, v.CNIVersion, want)
		}
	}
}

// The socket is the config's, else STATEDIR/nodes/NODE.sock.
func TestSocket(t *testing.T) {
	for _, tc := range []struct{ conf, want string }{
		{`{"cniVersion":"1.0.0","name":"n","socket":"/x/a.sock"}`, "/x/a.sock"},
		{`{"cniVersion":"1.0.0","name":"n","node":"node1"}`, "/run/vrouter/nodes/node1.sock"},
		{`{"cniVersion":"1.0.0","name":"n","node":"node1","stateDir":"/var/run/vr"}`, "/var/run/vr/nodes/node1.sock"},
	} {
		c, err := ParseConf([]byte(tc.conf))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.socket(); err != nil || got != tc.want {
			t.Errorf("%s: socket %q, %v; want %q", tc.conf, got, err, tc.want)
		}
	}
	if WorkloadName("abc", "eth0") != "abc" || WorkloadName("abc", "net1") != "abc.net1" {
		t.Error("WorkloadName")
	}
}

// FuzzParseConf: whatever stdin holds, ParseConf returns a config or a
// CNI error with a code, never both, never a panic; an accepted config
// has a supported version and a name.
func FuzzParseConf(f *testing.F) {
	for _, s := range []string{
		`{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"vrouter-cni","socket":"/run/vrouter/nodes/n.sock","dns":{"nameservers":["10.96.0.10"]}}`,
		`{"cniVersion":"0.4.0","name":"n","prevResult":{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.244.0.1/32","interface":1}]}}`,
		`{"cniVersion":"1.0.0","name":"n","ipam":{"type":"x"}}`,
		`{"cniVersion":"1.0.0","name":"n","timeout":"5s","node":"a","stateDir":"/s"}`,
		"", "{", "null", "[]", `{"name":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConf(data)
		if (c == nil) == (err == nil) {
			t.Fatalf("ParseConf(%q) = %v, %v: want exactly one", data, c, err)
		}
		if err != nil {
			if err.Code == 0 || err.Msg == "" {
				t.Fatalf("error without a code or message: %+v", err)
			}
			return
		}
		if c.Name == "" || c.CNIVersion == "" || c.timeout <= 0 {
			t.Fatalf("accepted %q as %+v", data, c)
		}
	})
}

// ADD's result is a 1.0.0 result (the pod interface with its sandbox,
// the /32 on it by index, the default route via 169.254.1.1, the config's
// DNS), and converts to every version the plugin speaks.
func TestResult(t *testing.T) {
	conf, cerr := ParseConf([]byte(`{"cniVersion":"1.0.0","name":"n","dns":{"nameservers":["10.96.0.10"]}}`))
	if cerr != nil {
		t.Fatal(cerr)
	}
	p := &plugin{conf: conf, args: Args{ContainerID: "c1", Netns: "/run/netns/c1", IfName: "eth0"}}
	info := &control.WorkloadInfo{Name: "c1", Interface: "cali0123456789a", Address: netip.MustParseAddr("10.244.166.130"), PodInterface: "eth0", MTU: 1440}
	res := p.result(info, "aa:bb:cc:dd:ee:ff")
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cniVersion":"1.0.0","dns":{"nameservers":["10.96.0.10"]},"interfaces":[{"mac":"ee:ee:ee:ee:ee:ee","name":"cali0123456789a"},` +
		`{"mac":"aa:bb:cc:dd:ee:ff","name":"eth0","sandbox":"/run/netns/c1"}],"ips":[{"address":"10.244.166.130/32","interface":1}],` +
		`"routes":[{"dst":"0.0.0.0/0","gw":"169.254.1.1"}]}`
	if string(data) != want {
		t.Errorf("result:\n%s\nwant:\n%s", data, want)
	}
	for _, v := range SupportedVersions {
		r, err := res.GetAsVersion(v)
		if err != nil {
			t.Errorf("as %s: %v", v, err)
			continue
		}
		data, _ := json.Marshal(r)
		if !strings.Contains(string(data), `"cniVersion":"`+v+`"`) || !strings.Contains(string(data), "10.244.166.130/32") {
			t.Errorf("as %s: %s", v, data)
		}
	}
}
