package cni

import (
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// CNI_ARGS gives the pod's namespace and name, which the workload's
// endpoint carries; a malformed value is an invalid-environment error.
func TestCNIArgs(t *testing.T) {
	env := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", "CNI_NETNS": "/run/netns/x",
		"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=db-0;K8S_POD_INFRA_CONTAINER_ID=c1"}
	a, err := argsFrom(func(k string) string { return env[k] })
	if err != nil || a.PodNamespace != "prod" || a.PodName != "db-0" {
		t.Fatalf("%+v %v", a, err)
	}
	for _, bad := range []string{"K8S_POD_NAMESPACE=Prod", "K8S_POD_NAME=a_b", "novalue", "K8S_POD_NAMESPACE=" + strings.Repeat("a", 64)} {
		env["CNI_ARGS"] = bad
		if _, err := argsFrom(func(k string) string { return env[k] }); err == nil || err.Code != 4 {
			t.Errorf("CNI_ARGS %q: %v, want an invalid-environment error", bad, err)
		}
	}
	env["CNI_ARGS"] = ""
	if a, err := argsFrom(func(k string) string { return env[k] }); err != nil || a.PodNamespace != "" || a.PodName != "" {
		t.Errorf("no CNI_ARGS: %+v %v", a, err)
	}
}

// FuzzCNIArgs: parseCNIArgs never panics and accepts only a valid
// namespace and pod name.
func FuzzCNIArgs(f *testing.F) {
	f.Add("IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=db-0")
	f.Add(";;=;K8S_POD_NAME=")
	f.Fuzz(func(t *testing.T, s string) {
		var a Args
		if parseCNIArgs(s, &a) != nil {
			return
		}
		if a.PodNamespace != "" && policy.CheckNamespace(a.PodNamespace) != "" {
			t.Fatalf("accepted namespace %q", a.PodNamespace)
		}
		if a.PodName != "" && !podNameRE.MatchString(a.PodName) {
			t.Fatalf("accepted pod %q", a.PodName)
		}
	})
}
