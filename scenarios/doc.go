// Package scenarios runs declarative conformance scenarios against vrouter
// labs: a YAML file names a lab (inline or by path), then ordered steps that
// act on it (deploy, workload add and del, apply, link down and up, node
// restart, capture start and stop, wait) and assert, each assertion polled
// until it holds or its timeout passes: a node's routes, a BGP peer's state
// as `vrouter node status` prints it, reachability from a workload (ping,
// TCP connect), and the wire: packets in a capture matching a filter, and
// BGP messages decoded from the captured TCP streams.
//
// [Load] (and [Parse]) check a scenario file whole before anything is
// created, with errors as FILE:LINE: FIELD: message, as lab files have.
// [Runner] runs scenarios one after another, each on a lab of its own with
// a unique name, writes progress lines, keeps every capture in the
// artifacts directory and destroys every lab it made, also when its
// context is cancelled. [WriteJUnit] writes the results as JUnit XML.
//
// The shipped suite lives in scenarios/suite; `vrouter test scenarios/`
// runs it (directories named testdata are skipped, as go skips them).
package scenarios
