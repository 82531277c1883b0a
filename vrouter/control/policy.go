package control

import (
	"context"
	"net/http"

	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

// PolicySet is what PUT /v1/policies carries: the cluster's policies and
// every endpoint (workload) of the cluster with its namespace, labels and
// address, which rule selectors resolve against. Each agent compiles the
// set for its own workloads, as Felix does from the datastore.
type PolicySet struct {
	Policies  []policy.Policy   `json:"policies"`
	Endpoints []policy.Endpoint `json:"endpoints"`
}

// PolicyStatus is GET /v1/policies: what the node enforces and its
// counters.
type PolicyStatus struct {
	Node string `json:"node"`
	// Enforced is false when the dataplane does not enforce policy.
	Enforced bool         `json:"enforced"`
	Policies []PolicyInfo `json:"policies"`
	// Denied counts denied packets by reason (ingress_deny_rule,
	// ingress_default_deny, egress_deny_rule, egress_default_deny,
	// revoked, malformed).
	Denied map[string]uint64 `json:"denied"`
	// AllowedFlows counts new flows policy allowed, Passed those allowed
	// by a Pass rule (the profile), Related the ICMP errors let through
	// for a tracked flow.
	AllowedFlows uint64          `json:"allowedFlows"`
	Passed       uint64          `json:"passed"`
	Related      uint64          `json:"related"`
	Conntrack    ConntrackStatus `json:"conntrack"`
}

// ConntrackStatus is the policy's connection tracking table.
type ConntrackStatus struct {
	Entries  uint64 `json:"entries"`
	Capacity uint64 `json:"capacity"`
	Created  uint64 `json:"created"`
	Evicted  uint64 `json:"evicted"`
	Expired  uint64 `json:"expired"`
	Revoked  uint64 `json:"revoked"`
}

// PolicyInfo is one policy on one node.
type PolicyInfo struct {
	Kind      string   `json:"kind"`
	Name      string   `json:"name"`
	Namespace string   `json:"namespace,omitempty"`
	Order     *float64 `json:"order,omitempty"`
	Selector  string   `json:"selector"`
	Types     []string `json:"types"`
	// Endpoints are the node's workloads the policy selects.
	Endpoints []string   `json:"endpoints"`
	Hits      uint64     `json:"hits"`
	Rules     []RuleInfo `json:"rules"`
}

// RuleInfo is one rule's hit counter: the flows it decided (and, for Log,
// the flows it saw).
type RuleInfo struct {
	Direction string `json:"direction"`
	Index     int    `json:"index"`
	Action    string `json:"action"`
	Hits      uint64 `json:"hits"`
}

// SetPolicies sends the policy set to the agent.
func (c *Client) SetPolicies(ctx context.Context, s PolicySet) error {
	return c.do(ctx, http.MethodPut, "/v1/policies", s, nil)
}

// Policies returns what the agent enforces, with counters.
func (c *Client) Policies(ctx context.Context) (*PolicyStatus, error) {
	var s PolicyStatus
	if err := c.do(ctx, http.MethodGet, "/v1/policies", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}
