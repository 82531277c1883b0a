package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vrouter-lab/vrouter/vrouter/cni"
	"github.com/vrouter-lab/vrouter/vrouter/config"
)

// The systemd unit in deploy/ runs the agent on the default node file,
// restarts it on failure, stops it with SIGTERM (which leaves the routes
// in place), and its command line is one `vrouter` takes.
func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile("../../deploy/systemd/vrouter-node.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	var exec string
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			exec = v
		}
	}
	want := "/usr/local/bin/vrouter node run --config " + config.DefaultNodeFile
	if exec != want {
		t.Errorf("ExecStart=%s, want %s", exec, want)
	}
	for _, l := range []string{"Restart=on-failure", "KillSignal=SIGTERM", "RuntimeDirectory=vrouter", "StateDirectory=vrouter", "WantedBy=multi-user.target"} {
		if !strings.Contains(unit, "\n"+l+"\n") {
			t.Errorf("the unit lacks %s", l)
		}
	}
	if strings.Contains(unit, "KillMode=") {
		t.Error("the unit changes KillMode: the agent has no children to spare")
	}
	// The command line parses (flags known), without running the agent.
	cmd := newRootCommand()
	node, _, err := cmd.Find(strings.Fields(exec)[1:3])
	if err != nil || node.Name() != "run" {
		t.Fatalf("vrouter %s: %v", strings.Join(strings.Fields(exec)[1:3], " "), err)
	}
	if err := node.ParseFlags(strings.Fields(exec)[3:]); err != nil {
		t.Errorf("flags %v: %v", strings.Fields(exec)[3:], err)
	}
}

// The containerd config in deploy/ is a conflist whose vrouter plugin
// config, as the runtime hands it over (with the list's name and
// version), the plugin accepts.
func TestCNIConflist(t *testing.T) {
	data, err := os.ReadFile("../../deploy/cni/10-vrouter.conflist")
	if err != nil {
		t.Fatal(err)
	}
	var list types.NetConfList
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	if list.CNIVersion != "1.0.0" || list.Name == "" || len(raw.Plugins) == 0 || raw.Plugins[0]["type"] != cni.ProgramName {
		t.Fatalf("conflist %+v", list)
	}
	p := raw.Plugins[0]
	p["cniVersion"], p["name"] = list.CNIVersion, list.Name
	conf, _ := json.Marshal(p)
	if c, err := cni.ParseConf(conf); err != nil || c.StateDir != config.DefaultStateDir {
		t.Errorf("the plugin config %s: %v", conf, err)
	}
}
