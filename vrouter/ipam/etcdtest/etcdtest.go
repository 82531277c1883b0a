// Package etcdtest starts an etcd cluster (Debian's etcd-server; one
// member or several) for tests: on 127.0.0.1 with free ports, in a
// temporary directory, optionally with TLS and client certificate
// authentication using a CA and certificates it generates. The test owns
// the processes: Stop and StopMember kill them, Start and StartMember bring
// them back on the same ports and data, and the test's cleanup kills them
// and removes the directory.
package etcdtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// RequireEtcd returns the path of the etcd binary. Without one, it fails
// the test when the CI environment variable is "true" (CI must run every
// test) and skips it elsewhere.
func RequireEtcd(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("etcd not found; install the Debian package etcd-server (make deps)")
	}
	t.Skip("etcd not found; install the Debian package etcd-server (make deps)")
	return ""
}

// Options of a test server.
type Options struct {
	// TLS serves clients over https only, requiring client certificates
	// signed by the generated CA (etcd --client-cert-auth).
	TLS bool
	// Members is the cluster's size; zero means one.
	Members int
}

// TLSFiles are the PEM files generated for a TLS server.
type TLSFiles struct {
	CA                    string // the CA certificate
	ServerCert, ServerKey string // the members'
	ClientCert, ClientKey string // a client's, signed by CA
	// OtherCA is a second CA's certificate, which signed nothing the
	// server trusts or serves.
	OtherCA string
	// RogueCert and RogueKey are a client certificate signed by OtherCA.
	RogueCert, RogueKey string
}

// Server is a running (or stopped) etcd cluster of one or more members on
// 127.0.0.1.
type Server struct {
	// Endpoints are the members' client URLs ("http://127.0.0.1:PORT",
	// https with TLS), in member order.
	Endpoints []string
	// TLS is set when the server was started with Options.TLS.
	TLS *TLSFiles

	t       testing.TB
	bin     string
	dir     string
	members []*member
}

// member is one etcd process.
type member struct {
	endpoint string
	args     []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *lockedWriter
}

// Start starts a new etcd cluster and waits until every member serves;
// the test's cleanup stops it and removes its data.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := RequireEtcd(t)
	n := max(opts.Members, 1)
	// Data in tmpfs when there is one: etcd fsyncs every commit.
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "vrouter-etcdtest-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, dir: dir}
	t.Cleanup(func() {
		s.Stop()
		os.RemoveAll(dir)
	})
	scheme := "http"
	if opts.TLS {
		s.TLS = writeTLSFiles(t, dir)
		scheme = "https"
	}
	// A free port can be taken by someone else before etcd binds it: try
	// a few times.
	var lastErr error
	for attempt := range 5 {
		s.members, s.Endpoints = nil, nil
		var cluster []string
		peers := make([]string, n)
		for i := range n {
			peers[i] = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
			cluster = append(cluster, fmt.Sprintf("m%d=%s", i, peers[i]))
		}
		for i := range n {
			clientURL := fmt.Sprintf("%s://127.0.0.1:%d", scheme, freePort(t))
			m := &member{endpoint: clientURL}
			m.args = []string{
				"--name", fmt.Sprint("m", i),
				"--data-dir", filepath.Join(dir, fmt.Sprint("data", i)),
				"--listen-client-urls", clientURL,
				"--advertise-client-urls", clientURL,
				"--listen-peer-urls", peers[i],
				"--initial-advertise-peer-urls", peers[i],
				"--initial-cluster", strings.Join(cluster, ","),
				"--initial-cluster-state", "new",
				"--initial-cluster-token", fmt.Sprintf("%s-%d", filepath.Base(dir), attempt),
				"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
			}
			if opts.TLS {
				m.args = append(m.args,
					"--cert-file", s.TLS.ServerCert, "--key-file", s.TLS.ServerKey,
					"--client-cert-auth", "--trusted-ca-file", s.TLS.CA)
			}
			s.members = append(s.members, m)
			s.Endpoints = append(s.Endpoints, clientURL)
		}
		if lastErr = s.startAll(); lastErr == nil {
			return s
		}
		s.Stop()
		for i := range n {
			os.RemoveAll(filepath.Join(dir, fmt.Sprint("data", i)))
		}
	}
	t.Fatal(lastErr)
	return nil
}

// startAll starts every stopped member, then waits for each to serve (a
// member of a cluster serves once a quorum runs).
func (s *Server) startAll() error {
	for _, m := range s.members {
		if err := m.spawn(s.bin); err != nil {
			return err
		}
	}
	for i := range s.members {
		if err := s.waitReady(i); err != nil {
			return err
		}
	}
	return nil
}

// Start starts every stopped member again, on the same ports and data,
// and waits until they serve.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.startAll(); err != nil {
		s.t.Fatal(err)
	}
}

// StartMember starts stopped member i again and waits until it serves.
func (s *Server) StartMember(i int) {
	s.t.Helper()
	if err := s.members[i].spawn(s.bin); err != nil {
		s.t.Fatal(err)
	}
	if err := s.waitReady(i); err != nil {
		s.t.Fatal(err)
	}
}

// spawn starts the member's process unless it runs.
func (m *member) spawn(bin string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return nil
	}
	cmd := exec.Command(bin, m.args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no ETCD_* from the caller
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	m.log = &lockedWriter{w: &bytes.Buffer{}}
	cmd.Stderr = m.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcdtest: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	return nil
}

// waitReady waits until member i answers a read through its own
// endpoint.
func (s *Server) waitReady(i int) error {
	m := s.members[i]
	m.mu.Lock()
	done := m.done
	m.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			m.mu.Lock()
			m.cmd = nil
			m.mu.Unlock()
			return fmt.Errorf("etcdtest: etcd member %d exited: %s", i, m.log.String())
		default:
		}
		if s.ready(m.endpoint) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcdtest: etcd member %d not ready after 30s: %s", i, m.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready reports whether the member at endpoint answers a linearizable
// read (which needs a quorum).
func (s *Server) ready(endpoint string) bool {
	cli, err := s.client([]string{endpoint})
	if err != nil {
		return false
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "/health-check")
	return err == nil
}

// Client returns a client of the cluster (with the client certificate,
// for a TLS server); the caller closes it.
func (s *Server) Client() (*clientv3.Client, error) {
	return s.client(s.Endpoints)
}

func (s *Server) client(endpoints []string) (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: endpoints, Logger: zap.NewNop()}
	if s.TLS != nil {
		cert, err := tls.LoadX509KeyPair(s.TLS.ClientCert, s.TLS.ClientKey)
		if err != nil {
			return nil, err
		}
		pem, err := os.ReadFile(s.TLS.CA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return clientv3.New(cfg)
}

// Stop kills every member (SIGKILL: as a crash, not a shutdown) and waits
// for them to exit. Stopping a stopped member does nothing.
func (s *Server) Stop() {
	for _, m := range s.members {
		m.stop()
	}
}

// StopMember kills member i and waits for it to exit.
func (s *Server) StopMember(i int) { s.members[i].stop() }

func (m *member) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.done
	m.cmd = nil
}

// Log returns what member i wrote to stderr since it was last started.
func (s *Server) Log(i int) string {
	m := s.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.log == nil {
		return ""
	}
	return m.log.String()
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.w.String())
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeTLSFiles generates a CA, a server certificate for 127.0.0.1 and a
// client certificate (and a second, untrusted CA with a client certificate
// of its own) and writes them under dir.
func writeTLSFiles(t testing.TB, dir string) *TLSFiles {
	t.Helper()
	f := &TLSFiles{
		CA: filepath.Join(dir, "ca.pem"), ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem"),
		OtherCA: filepath.Join(dir, "other-ca.pem"), RogueCert: filepath.Join(dir, "rogue.pem"), RogueKey: filepath.Join(dir, "rogue-key.pem"),
	}
	ca, caKey := newCert(t, nil, nil, "vrouter test CA", true, nil)
	writePEM(t, f.CA, "CERTIFICATE", ca.Raw)
	srv, srvKey := newCert(t, ca, caKey, "etcd", false, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		c.IPAddresses = []net.IP{net.IP(netip.MustParseAddr("127.0.0.1").AsSlice())}
		c.DNSNames = []string{"localhost"}
	})
	writePEM(t, f.ServerCert, "CERTIFICATE", srv.Raw)
	writeKey(t, f.ServerKey, srvKey)
	cli, cliKey := newCert(t, ca, caKey, "vrouter-node", false, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	writePEM(t, f.ClientCert, "CERTIFICATE", cli.Raw)
	writeKey(t, f.ClientKey, cliKey)
	other, otherKey := newCert(t, nil, nil, "someone else's CA", true, nil)
	writePEM(t, f.OtherCA, "CERTIFICATE", other.Raw)
	rogue, rogueKey := newCert(t, other, otherKey, "vrouter-node", false, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	writePEM(t, f.RogueCert, "CERTIFICATE", rogue.Raw)
	writeKey(t, f.RogueKey, rogueKey)
	return f
}

var serial struct {
	sync.Mutex
	n int64
}

// newCert makes a certificate for cn signed by parent (self-signed when
// parent is nil).
func newCert(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, isCA bool, edit func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Lock()
	serial.n++
	sn := serial.n
	serial.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(sn),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"vrouter tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if isCA {
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if edit != nil {
		edit(tmpl)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t testing.TB, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "PRIVATE KEY", der)
}
