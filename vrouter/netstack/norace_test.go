//go:build !race

package netstack_test

const raceBuild = false
