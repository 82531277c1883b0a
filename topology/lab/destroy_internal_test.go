package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// agentPID trusts a pid file only while the process's start time matches the
// one recorded at start, so a recycled pid is never signalled.
func TestAgentPIDChecksStartTime(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	pidFile := filepath.Join(t.TempDir(), "node1.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// No start file: the command line decides, and sleep is no agent.
	if _, ok := agentPID(pidFile); ok {
		t.Error("sleep without a start file taken for an agent")
	}
	started, state, err := procStart(pid)
	if err != nil || state == 'Z' {
		t.Fatalf("procStart(%d) = %q, %q, %v", pid, started, state, err)
	}
	if err := os.WriteFile(startFile(pidFile), []byte(started+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, ok := agentPID(pidFile); !ok || got != pid {
		t.Errorf("agentPID with matching start time = %d, %v; want %d, true", got, ok, pid)
	}
	if err := os.WriteFile(startFile(pidFile), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := agentPID(pidFile); ok {
		t.Error("agentPID trusted a pid whose start time differs (recycled pid)")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := os.WriteFile(startFile(pidFile), []byte(started+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := agentPID(pidFile); ok {
		t.Error("agentPID reports a reaped process alive")
	}
}
