package probe

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// loopback dials with this process's own sockets; its pings succeed for
// odd sequence numbers only.
type loopback struct{}

func (loopback) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp4", dst.String())
}

func (loopback) DialUDP(dst netip.AddrPort) (net.Conn, error) {
	return net.Dial("udp4", dst.String())
}

func (loopback) Ping(_ context.Context, _ netip.Addr, seq uint16, _ int) (time.Duration, error) {
	if seq%2 == 0 {
		return 0, errors.New("timeout")
	}
	return time.Duration(seq) * time.Millisecond, nil
}

func listen(t *testing.T, serve func(net.Conn)) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

var local = netip.MustParseAddr("127.0.0.1")

func run(t *testing.T, r Request) Result {
	t.Helper()
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.Longest())
	defer cancel()
	return Run(ctx, loopback{}, r)
}

func TestProbes(t *testing.T) {
	// TCP: connect time; a closed port fails
	port := listen(t, func(net.Conn) {})
	res := run(t, Request{Kind: KindTCP, To: local, Port: port})
	if !res.OK || res.Connect <= 0 || !strings.Contains(res.Text(), "connected in") {
		t.Errorf("tcp: %+v %q", res, res.Text())
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	res = run(t, Request{Kind: KindTCP, To: local, Port: closed, Timeout: time.Second})
	if res.OK || !strings.Contains(res.Error, "refused") {
		t.Errorf("tcp to a closed port: %+v", res)
	}
	// UDP echo
	u, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	go func() {
		buf := make([]byte, 9000)
		for {
			n, from, err := u.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = u.WriteTo(buf[:n], from)
		}
	}()
	res = run(t, Request{Kind: KindUDP, To: local, Port: uint16(u.LocalAddr().(*net.UDPAddr).Port), Size: 1000})
	if !res.OK || res.RTT <= 0 {
		t.Errorf("udp: %+v", res)
	}
	// UDP to a port nobody answers on: fails within the timeout
	res = run(t, Request{Kind: KindUDP, To: local, Port: 9, Timeout: 200 * time.Millisecond})
	if res.OK || res.Error == "" || !strings.Contains(res.Text(), "failed") {
		t.Errorf("udp to nothing: %+v", res)
	}
	// HTTP: status and body
	hl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = http.Serve(hl, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/missing" {
				http.NotFound(w, r)
				return
			}
			io.WriteString(w, "hello "+r.URL.Path+"\n")
		}))
	}()
	defer hl.Close()
	base := "http://" + hl.Addr().String()
	res = run(t, Request{Kind: KindHTTP, To: local, URL: base + "/x"})
	if !res.OK || res.Status != 200 || res.Body != "hello /x\n" || res.Connect <= 0 || res.Total < res.Connect {
		t.Errorf("http: %+v", res)
	}
	if txt := res.Text(); !strings.Contains(txt, "200 OK") || !strings.HasSuffix(txt, "hello /x\n") {
		t.Errorf("http text %q", txt)
	}
	res = run(t, Request{Kind: KindHTTP, To: local, URL: base + "/missing"})
	if res.OK || res.Status != 404 {
		t.Errorf("http 404: %+v", res)
	}
	// bulk to a sink: every byte sent is read
	got := make(chan int64, 1)
	sink := listen(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		got <- n
	})
	res = run(t, Request{Kind: KindBulk, To: local, Port: sink, Duration: 300 * time.Millisecond})
	if !res.OK || res.Bytes == 0 || res.Mbps <= 0 || res.Elapsed < 300*time.Millisecond {
		t.Fatalf("bulk: %+v", res)
	}
	if n := <-got; n != res.Bytes {
		t.Errorf("bulk sent %d bytes, the sink read %d", res.Bytes, n)
	}
	// flood to a sink that counts, and answers the control datagrams
	fs, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	go func() {
		buf := make([]byte, 2048)
		var k int
		for {
			n, from, err := fs.ReadFrom(buf)
			if err != nil {
				return
			}
			switch string(buf[:n]) {
			case SinkReset:
				k = 0
				_, _ = fs.WriteTo([]byte(SinkReply+"0"), from)
			case SinkQuery:
				_, _ = fs.WriteTo([]byte(SinkReply+strconv.Itoa(k)), from)
			default:
				k++
			}
		}
	}()
	res = run(t, Request{Kind: KindFlood, To: local, Port: uint16(fs.LocalAddr().(*net.UDPAddr).Port), Size: 64, Duration: 200 * time.Millisecond})
	if !res.OK || res.Sent == 0 || res.Received == 0 || res.Received > res.Sent || res.PPS <= 0 || !strings.Contains(res.Text(), "packets/s") {
		t.Errorf("flood: %+v", res)
	}
	// flood with no sink: fails
	res = run(t, Request{Kind: KindFlood, To: local, Port: 9, Duration: 10 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if res.OK {
		t.Errorf("flood without a sink: %+v", res)
	}
	// ping: 3 sent, the second unanswered
	res = run(t, Request{Kind: KindPing, To: local, Count: 3, Interval: time.Millisecond})
	if res.OK || res.Sent != 3 || res.Received != 2 || res.RTT != 2*time.Millisecond || len(res.RTTs) != 2 {
		t.Errorf("ping: %+v", res)
	}
	if txt := res.Text(); !strings.Contains(txt, "3 sent, 2 received, 33% loss, rtt min/avg/max 1.000/2.000/3.000 ms") {
		t.Errorf("ping text %q", txt)
	}
	data, err := json.Marshal(res)
	if err != nil || !strings.Contains(string(data), `"sent":3`) {
		t.Errorf("json %s %v", data, err)
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		r    Request
		want string
	}{
		{Request{Kind: KindPing}, "not an IPv4 address"},
		{Request{Kind: "trace", To: local}, "unknown kind"},
		{Request{Kind: KindTCP, To: local}, "needs a port"},
		{Request{Kind: KindPing, To: local, Count: 1000}, "outside 1-100"},
		{Request{Kind: KindHTTP, To: local, URL: "https://127.0.0.1/"}, "only http://"},
		{Request{Kind: KindHTTP, To: local, URL: "http://10.0.0.1/"}, "must be the target's address"},
		{Request{Kind: KindBulk, To: local, Duration: time.Hour}, "outside"},
		{Request{Kind: KindUDP, To: local, Port: 53, Size: 100000}, "size"},
	} {
		if err := c.r.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%+v) = %v, want %q", c.r, err, c.want)
		}
	}
	r := Request{Kind: KindBulk, To: local}
	if err := r.Check(); err != nil || r.Port != 5201 || r.Duration != 5*time.Second {
		t.Errorf("bulk defaults: %+v %v", r, err)
	}
}

func TestEchoRequest(t *testing.T) {
	m := EchoRequest(0x1234, 7, 5)
	if sum(m) != 0xffff {
		t.Errorf("checksum of %x does not verify", m)
	}
	reply := append([]byte{}, m...)
	reply[0] = 0
	if !IsEchoReply(reply, 0x1234, 7, m[8:]) || IsEchoReply(reply, 0x1234, 8, m[8:]) || IsEchoReply(m, 0x1234, 7, m[8:]) {
		t.Error("IsEchoReply wrong")
	}
}

// The agent decodes a Request from its API's JSON and checks it: no
// input makes Check or Longest panic, and a checked request is in its
// limits.
func FuzzRequest(f *testing.F) {
	f.Add([]byte(`{"kind":"ping","to":"10.244.1.5","count":3}`))
	f.Add([]byte(`{"kind":"http","to":"10.244.1.5","url":"http://10.244.1.5:8080/x"}`))
	f.Add([]byte(`{"kind":"bulk","to":"10.244.1.5","duration":5000000000}`))
	f.Add([]byte(`{"kind":"udp","to":"10.244.1.5","port":53,"size":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		if json.Unmarshal(data, &r) != nil {
			return
		}
		if r.Check() != nil {
			return
		}
		if r.Timeout <= 0 || r.Timeout > MaxDuration || r.Size < 0 || r.Size > MaxSize || r.Longest() <= 0 {
			t.Errorf("checked request out of limits: %+v", r)
		}
		if r.Kind == KindPing && (r.Count < 1 || r.Count > MaxCount) {
			t.Errorf("ping count %d", r.Count)
		}
	})
}
