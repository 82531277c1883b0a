//go:build race

package netstack_test

// raceBuild: the race detector's goroutine and allocation bookkeeping
// makes every stack take more memory than a normal build's.
const raceBuild = true
