package lab

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vrouter-lab/vrouter/topology"
)

// tempStateRoot points topology.StateRoot at a temporary directory for the
// test (which must not run in parallel: StateRoot is global).
func tempStateRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	old := topology.StateRoot
	topology.StateRoot = root
	t.Cleanup(func() { topology.StateRoot = old })
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// victim makes a directory with a file in it outside the state root and
// returns its path and a name that climbs to it from the state root.
func victim(t *testing.T, root string) (string, string) {
	t.Helper()
	v := filepath.Join(t.TempDir(), "victim")
	if err := os.MkdirAll(v, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(root, v)
	if err != nil {
		t.Fatal(err)
	}
	return v, rel
}

func mustExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("%s was removed: %v", path, err)
	}
}

func TestNamesThatClimbOutAreRefused(t *testing.T) {
	root := tempStateRoot(t)
	v, rel := victim(t, root)
	if err := os.WriteFile(filepath.Join(root, "lab.json"), []byte(`{"name":"."}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{rel, "..", ".", "", "a/b", "/tmp", "a\x00b", "UPPER", strings.Repeat("a", 1000)} {
		if _, err := Dir(name); err == nil {
			t.Errorf("Dir(%q) accepted", topology.Shorten(name))
		}
		if err := Destroy(name); err == nil {
			t.Errorf("Destroy(%q) accepted", topology.Shorten(name))
		}
		if _, err := Load(name); err == nil || !strings.Contains(err.Error(), "lab name") {
			t.Errorf("Load(%q) = %v, want an invalid-name error", topology.Shorten(name), err)
		}
		if _, err := Lock(name, "test", 0, nil); err == nil {
			t.Errorf("Lock(%q) accepted", topology.Shorten(name))
		}
		if err := removeDir(name); err == nil {
			t.Errorf("removeDir(%q) accepted", topology.Shorten(name))
		}
	}
	mustExist(t, filepath.Join(v, "precious"))
	mustExist(t, filepath.Join(root, "lab.json"))
	// A long name is echoed once, cut.
	_, err := Dir(strings.Repeat("x", 1000))
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("error for a 1,000-character name is %d characters long: %v", len(err.Error()), err)
	}
}

func TestSymlinkedStateIsLeftAlone(t *testing.T) {
	root := tempStateRoot(t)
	v, _ := victim(t, root)
	if err := os.WriteFile(filepath.Join(v, stateFile), []byte(`{"name":"evil"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(v, filepath.Join(root, "evil")); err != nil {
		t.Fatal(err)
	}
	if err := Destroy("evil"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Destroy of a symlinked state directory: %v", err)
	}
	if _, err := Load("evil"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Load of a symlinked state directory: %v", err)
	}
	names, err := List()
	if err != nil || len(names) != 0 {
		t.Errorf("List() = %v, %v; a symlink is no lab", names, err)
	}
	mustExist(t, filepath.Join(v, "precious"))
	mustExist(t, filepath.Join(root, "evil"))

	// A real directory whose state file is a link to another file.
	dir := filepath.Join(root, "linked")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(v, stateFile), filepath.Join(dir, stateFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Load("linked"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Load with a symlinked state file: %v", err)
	}
	if err := removeDir("linked"); err == nil {
		t.Error("removeDir removed a directory whose state file is a link")
	}
	mustExist(t, filepath.Join(v, stateFile))
}

func TestRemoveDirOnlyRemovesALabsOwnDirectory(t *testing.T) {
	root := tempStateRoot(t)
	// Not a lab's: files but no state file.
	foreign := filepath.Join(root, "foreign")
	if err := os.MkdirAll(filepath.Join(foreign, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := removeDir("foreign"); err == nil || !strings.Contains(err.Error(), "not a lab state directory") {
		t.Errorf("removeDir(foreign) = %v", err)
	}
	mustExist(t, foreign)
	// Another lab's state file.
	other := filepath.Join(root, "other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, stateFile), []byte(`{"name":"someone-else"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := removeDir("other"); err == nil {
		t.Error("removeDir removed a directory holding another lab's state")
	}
	mustExist(t, other)
	// Its own: removed, links inside removed and not followed.
	v, _ := victim(t, root)
	own := filepath.Join(root, "own")
	if err := createDir(own, false); err != nil {
		t.Fatal(err)
	}
	st := &State{Name: "own", Dir: own}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	if err := createSubdirs(own, false); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(v, filepath.Join(nodesDir(own), "link")); err != nil {
		t.Fatal(err)
	}
	if err := removeDir("own"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(own); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there: %v", own, err)
	}
	mustExist(t, filepath.Join(v, "precious"))
	// Empty: removed (a deploy that died right after making it).
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := removeDir("empty"); err != nil {
		t.Errorf("removeDir(empty) = %v", err)
	}
}

func TestStateFilesAreRootsAlone(t *testing.T) {
	root := tempStateRoot(t)
	dir := filepath.Join(root, "modes")
	if err := createDir(dir, false); err != nil {
		t.Fatal(err)
	}
	st := &State{Name: "modes", Dir: dir}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	if err := createSubdirs(dir, false); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, nodesDir(dir): 0o700, routersDir(dir): 0o700, statePath(dir): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
	}
	// Loaded back: the same lab.
	got, err := Load("modes")
	if err != nil || got.Name != "modes" {
		t.Fatalf("Load = %v, %v", got, err)
	}
}

func TestLoadRefusesStateNamingPathsOutside(t *testing.T) {
	root := tempStateRoot(t)
	dir := filepath.Join(root, "tampered")
	if err := createDir(dir, false); err != nil {
		t.Fatal(err)
	}
	st := &State{Name: "tampered", Dir: dir, Nodes: []NodeState{{Name: "n", Config: "/etc/passwd"}}}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	if _, err := Load("tampered"); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("Load of a state naming /etc/passwd: %v", err)
	}
	st = &State{Name: "tampered", Dir: "/etc"}
	if err := writeFile(statePath(dir), []byte(`{"name":"tampered","dir":"/etc"}`), fileMode); err != nil {
		t.Fatal(err)
	}
	if _, err := Load("tampered"); err == nil {
		t.Error("Load of a state recording another directory succeeded")
	}
}

func TestLockSerialisesAndSaysWhoHoldsIt(t *testing.T) {
	root := tempStateRoot(t)
	unlock, err := Lock("busy", "deploy -t busy.yaml", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file: a second Lock in this process
	// conflicts like another process would.
	var notice strings.Builder
	start := time.Now()
	_, err = Lock("busy", "destroy --lab busy", 300*time.Millisecond, &notice)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("second Lock = %v, want ErrBusy", err)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Errorf("second Lock gave up after %s, before its wait", time.Since(start))
	}
	for _, want := range []string{"vrouter deploy -t busy.yaml", "pid"} {
		if !strings.Contains(err.Error(), want) || !strings.Contains(notice.String(), want) {
			t.Errorf("error %q / notice %q do not say %q", err, notice.String(), want)
		}
	}
	// Released while a waiter waits: the waiter gets it.
	done := make(chan error, 1)
	go func() {
		u, err := Lock("busy", "destroy --lab busy", 5*time.Second, nil)
		if err == nil {
			u()
		}
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	unlock()
	if err := <-done; err != nil {
		t.Errorf("waiter after unlock: %v", err)
	}
	// No lab directory: the lock file is gone after unlock.
	if _, err := os.Lstat(filepath.Join(root, "busy.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file of a lab without state left behind: %v", err)
	}
	// With a lab directory it stays, emptied.
	if err := os.Mkdir(filepath.Join(root, "kept"), 0o700); err != nil {
		t.Fatal(err)
	}
	u, err := Lock("kept", "apply", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	u()
	fi, err := os.Stat(filepath.Join(root, "kept.lock"))
	if err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file of a deployed lab after unlock: %v, %v", fi, err)
	}
}
