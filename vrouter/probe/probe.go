// Package probe runs `vrouter probe`: ping, TCP connect, UDP echo, HTTP
// GET and bulk TCP transfer from a workload, over whatever Dialer the
// workload has: a netstack workload's gVisor stack (in its node's agent)
// or a namespace workload's kernel (sockets opened inside its namespace,
// NamespaceDialer). The same code measures both, so their figures
// compare.
package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// The kinds of probe.
const (
	KindPing = "ping" // ICMP echo, Count times, a second apart
	KindTCP  = "tcp"  // a TCP connection to Port, closed at once
	KindUDP  = "udp"  // one datagram of Size bytes to Port, echoed back
	KindHTTP = "http" // GET URL
	KindBulk = "bulk" // TCP to Port (a sink: tcp:5201:sink, iperf3 -s) for Duration
	// KindFlood sends UDP datagrams of Size bytes to Port (a netstack
	// workload's udp:PORT:sink) as fast as it can for Duration, and asks
	// the sink how many arrived.
	KindFlood = "flood"
)

// The UDP sink's control datagrams (package netstack answers them).
const (
	SinkReset = "vrouter-probe:reset"
	SinkQuery = "vrouter-probe:count"
	SinkReply = "vrouter-probe:count="
)

// Limits of a request.
const (
	MaxCount    = 100
	MaxDuration = time.Minute
	MaxSize     = 8192
	// MaxBody is how much of an HTTP response's body a result keeps.
	MaxBody = 4096
)

// Request says what to probe. To is the target's address; URL, for an
// HTTP probe, is absolute with To's address as its host.
type Request struct {
	Kind     string        `json:"kind"`
	To       netip.Addr    `json:"to"`
	Port     uint16        `json:"port,omitempty"`
	URL      string        `json:"url,omitempty"`
	Count    int           `json:"count,omitempty"`    // pings; default 3
	Size     int           `json:"size,omitempty"`     // ping or UDP payload bytes; default 56
	Duration time.Duration `json:"duration,omitempty"` // bulk; default 5s
	Interval time.Duration `json:"interval,omitempty"` // between pings; default 1s
	Timeout  time.Duration `json:"timeout,omitempty"`  // each step's; default 5s
}

// Check fills in the defaults and reports what is wrong with r.
func (r *Request) Check() error {
	if !r.To.Is4() {
		return fmt.Errorf("probe: target %v is not an IPv4 address", r.To)
	}
	if r.Timeout <= 0 {
		r.Timeout = 5 * time.Second
	}
	if r.Timeout > MaxDuration {
		return fmt.Errorf("probe: timeout %v is longer than %v", r.Timeout, MaxDuration)
	}
	if r.Size == 0 {
		r.Size = 56
	}
	if r.Size < 0 || r.Size > MaxSize {
		return fmt.Errorf("probe: size %d is outside 0-%d", r.Size, MaxSize)
	}
	switch r.Kind {
	case KindPing:
		if r.Count == 0 {
			r.Count = 3
		}
		if r.Count < 1 || r.Count > MaxCount {
			return fmt.Errorf("probe: ping count %d is outside 1-%d", r.Count, MaxCount)
		}
		if r.Interval <= 0 {
			r.Interval = time.Second
		}
		if r.Interval > 10*time.Second {
			return fmt.Errorf("probe: ping interval %v is longer than 10s", r.Interval)
		}
	case KindTCP, KindUDP:
		if r.Port == 0 {
			return fmt.Errorf("probe: %s needs a port", r.Kind)
		}
	case KindBulk, KindFlood:
		if r.Port == 0 {
			r.Port = 5201
			if r.Kind == KindFlood {
				r.Port = 9
			}
		}
		if r.Duration == 0 {
			r.Duration = 5 * time.Second
		}
		if r.Duration < 0 || r.Duration > MaxDuration {
			return fmt.Errorf("probe: bulk duration %v is outside 0-%v", r.Duration, MaxDuration)
		}
	case KindHTTP:
		u, err := url.Parse(r.URL)
		if err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		if u.Scheme != "http" {
			return fmt.Errorf("probe: URL %q: only http:// is probed", r.URL)
		}
		a, err := netip.ParseAddr(u.Hostname())
		if err != nil || a != r.To {
			return fmt.Errorf("probe: URL %q: its host must be the target's address %v", r.URL, r.To)
		}
	default:
		return fmt.Errorf("probe: unknown kind %q (want ping, tcp, udp, http, bulk or flood)", r.Kind)
	}
	return nil
}

// Longest is the longest a probe of r may take, its timeouts included.
func (r Request) Longest() time.Duration {
	switch r.Kind {
	case KindPing:
		return time.Duration(r.Count)*r.Interval + r.Timeout
	case KindBulk, KindFlood:
		return r.Duration + 3*r.Timeout
	}
	return 2 * r.Timeout
}

// Result is what a probe found. Times are durations (nanoseconds in
// JSON).
type Result struct {
	From string `json:"from"`
	To   string `json:"to"` // the address (and port), or the URL
	// Target is the name To was given as (a workload's), if any.
	Target string `json:"target,omitempty"`
	Kind   string `json:"kind"`
	OK     bool   `json:"ok"`
	// Error says what failed; empty when OK.
	Error string `json:"error,omitempty"`

	// ping: requests sent, replies received, each reply's RTT
	Sent     int             `json:"sent,omitempty"`
	Received int             `json:"received,omitempty"`
	RTTs     []time.Duration `json:"rtts,omitempty"`
	// udp: the echo's round trip; ping: the mean
	RTT time.Duration `json:"rtt,omitempty"`
	// tcp, http, bulk: how long the connection took to open
	Connect time.Duration `json:"connect,omitempty"`
	// http: the status code, the body (at most MaxBody bytes), the
	// time to the whole response
	Status int           `json:"status,omitempty"`
	Body   string        `json:"body,omitempty"`
	Total  time.Duration `json:"total,omitempty"`
	// bulk: bytes sent and acknowledged (the sink closed after reading
	// them all), over Elapsed
	Bytes   int64         `json:"bytes,omitempty"`
	Elapsed time.Duration `json:"elapsed,omitempty"`
	Mbps    float64       `json:"mbps,omitempty"` // megabits per second
	// flood: datagrams sent (Sent) and received by the sink (Received)
	// per second of Elapsed
	PPS float64 `json:"pps,omitempty"`
}

// Dialer is what a probe sends through: a workload's stack.
type Dialer interface {
	DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	DialUDP(dst netip.AddrPort) (net.Conn, error)
	// Ping sends one ICMP echo request with seq and size bytes of
	// payload and returns the round trip time of its reply.
	Ping(ctx context.Context, dst netip.Addr, seq uint16, size int) (time.Duration, error)
}

// Run runs the probe r (checked) from d and returns what it found; a
// failure is in the Result, not an error.
func Run(ctx context.Context, d Dialer, r Request) Result {
	res := Result{Kind: r.Kind, To: r.To.String()}
	if r.Port != 0 {
		res.To = netip.AddrPortFrom(r.To, r.Port).String()
	}
	if r.Kind == KindHTTP {
		res.To = r.URL
	}
	var err error
	switch r.Kind {
	case KindPing:
		err = ping(ctx, d, r, &res)
	case KindTCP:
		var c net.Conn
		if c, err = dialTCP(ctx, d, r, &res); err == nil {
			c.Close()
		}
	case KindUDP:
		err = udpEcho(ctx, d, r, &res)
	case KindHTTP:
		err = httpGet(ctx, d, r, &res)
	case KindBulk:
		err = bulk(ctx, d, r, &res)
	case KindFlood:
		err = flood(ctx, d, r, &res)
	default:
		err = fmt.Errorf("unknown kind %q", r.Kind)
	}
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

func ping(ctx context.Context, d Dialer, r Request, res *Result) error {
	var sum time.Duration
	var last error
	for i := range r.Count {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(r.Interval):
			}
		}
		pctx, cancel := context.WithTimeout(ctx, r.Timeout)
		rtt, err := d.Ping(pctx, r.To, uint16(i+1), r.Size)
		cancel()
		res.Sent++
		if err != nil {
			last = err
			continue
		}
		res.Received++
		res.RTTs = append(res.RTTs, rtt)
		sum += rtt
	}
	if res.Received > 0 {
		res.RTT = sum / time.Duration(res.Received)
	}
	if res.Received < res.Sent {
		return fmt.Errorf("%d of %d echo requests unanswered (last: %v)", res.Sent-res.Received, res.Sent, last)
	}
	return nil
}

func dialTCP(ctx context.Context, d Dialer, r Request, res *Result) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	start := time.Now()
	c, err := d.DialTCP(dctx, netip.AddrPortFrom(r.To, r.Port))
	if err != nil {
		return nil, fmt.Errorf("connect %v: %w", netip.AddrPortFrom(r.To, r.Port), err)
	}
	res.Connect = time.Since(start)
	return c, nil
}

func udpEcho(ctx context.Context, d Dialer, r Request, res *Result) error {
	c, err := d.DialUDP(netip.AddrPortFrom(r.To, r.Port))
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(r.Timeout))
	msg := make([]byte, r.Size)
	for i := range msg {
		msg[i] = byte('a' + i%26)
	}
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	buf := make([]byte, r.Size+1)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("no echo: %w", err)
		}
		if string(buf[:n]) == string(msg) {
			res.RTT = time.Since(start)
			return nil
		}
	}
}

func httpGet(ctx context.Context, d Dialer, r Request, res *Result) error {
	u, _ := url.Parse(r.URL)
	port := uint16(80)
	if p := u.Port(); p != "" {
		if _, err := fmt.Sscan(p, &port); err != nil {
			return fmt.Errorf("URL %q: bad port", r.URL)
		}
	}
	rq := r
	rq.Port = port
	start := time.Now()
	c, err := dialTCP(ctx, d, rq, res)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(r.Timeout))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "vrouter-probe")
	req.Close = true
	if err := req.Write(c); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	res.Total = time.Since(start)
	res.Status = resp.StatusCode
	res.Body = string(body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP status %s", resp.Status)
	}
	return nil
}

// closeWriter is a connection whose sending half closes alone (a TCP
// FIN): net.TCPConn and gVisor's gonet.TCPConn.
type closeWriter interface{ CloseWrite() error }

func bulk(ctx context.Context, d Dialer, r Request, res *Result) error {
	c, err := dialTCP(ctx, d, r, res)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	start := time.Now()
	end := start.Add(r.Duration)
	_ = c.SetWriteDeadline(end)
	for time.Now().Before(end) {
		n, err := c.Write(buf)
		res.Bytes += int64(n)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				break // the duration is over
			}
			return fmt.Errorf("send after %d bytes: %w", res.Bytes, err)
		}
	}
	// The transfer ends when the sink has read everything: it closes
	// its side once it reads our FIN.
	cw, ok := c.(closeWriter)
	if !ok {
		return fmt.Errorf("connection %T cannot close its sending half", c)
	}
	_ = c.SetDeadline(time.Now().Add(r.Timeout))
	if err := cw.CloseWrite(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		return fmt.Errorf("waiting for the sink to read %d bytes: %w", res.Bytes, err)
	}
	res.Elapsed = time.Since(start)
	res.Mbps = float64(res.Bytes) * 8 / res.Elapsed.Seconds() / 1e6
	return nil
}

func flood(ctx context.Context, d Dialer, r Request, res *Result) error {
	c, err := d.DialUDP(netip.AddrPortFrom(r.To, r.Port))
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	ask := func(msg string) (uint64, error) {
		buf := make([]byte, 64)
		for range 5 {
			if _, err := c.Write([]byte(msg)); err != nil {
				return 0, err
			}
			_ = c.SetReadDeadline(time.Now().Add(r.Timeout / 5))
			for {
				n, err := c.Read(buf)
				if err != nil {
					break
				}
				if v, ok := strings.CutPrefix(string(buf[:n]), SinkReply); ok {
					var k uint64
					if _, err := fmt.Sscan(v, &k); err == nil {
						return k, nil
					}
				}
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
		}
		return 0, fmt.Errorf("no answer from a UDP sink at %v", netip.AddrPortFrom(r.To, r.Port))
	}
	if _, err := ask(SinkReset); err != nil {
		return err
	}
	msg := make([]byte, r.Size)
	start := time.Now()
	end := start.Add(r.Duration)
	_ = c.SetWriteDeadline(end)
	for i := 0; ; i++ {
		if i%64 == 0 && !time.Now().Before(end) {
			break
		}
		if _, err := c.Write(msg); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				break
			}
			continue // a full queue drops it, as a NIC would
		}
		res.Sent++
	}
	res.Elapsed = time.Since(start)
	_ = c.SetWriteDeadline(time.Time{})
	// the datagrams still in flight
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(200 * time.Millisecond):
	}
	k, err := ask(SinkQuery)
	if err != nil {
		return err
	}
	res.Received = int(k)
	res.PPS = float64(k) / res.Elapsed.Seconds()
	res.Mbps = res.PPS * float64(r.Size) * 8 / 1e6
	return nil
}

// Text returns the result as `vrouter probe` prints it.
func (res Result) Text() string {
	var b strings.Builder
	to := res.To
	if res.Target != "" {
		to = res.Target + " (" + res.To + ")"
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
	switch res.Kind {
	case KindPing:
		for _, rtt := range res.RTTs {
			fmt.Fprintf(&b, "reply from %s: time=%s\n", res.To, ms(rtt))
		}
		loss := 0.0
		if res.Sent > 0 {
			loss = 100 * float64(res.Sent-res.Received) / float64(res.Sent)
		}
		fmt.Fprintf(&b, "ping %s -> %s: %d sent, %d received, %.0f%% loss", res.From, to, res.Sent, res.Received, loss)
		if len(res.RTTs) > 0 {
			lo, hi := res.RTTs[0], res.RTTs[0]
			for _, r := range res.RTTs {
				lo, hi = min(lo, r), max(hi, r)
			}
			fmt.Fprintf(&b, ", rtt min/avg/max %.3f/%.3f/%.3f ms", float64(lo)/1e6, float64(res.RTT)/1e6, float64(hi)/1e6)
		}
		b.WriteString("\n")
	case KindTCP:
		if res.OK {
			fmt.Fprintf(&b, "tcp %s -> %s: connected in %s\n", res.From, to, ms(res.Connect))
		}
	case KindUDP:
		if res.OK {
			fmt.Fprintf(&b, "udp %s -> %s: echo in %s\n", res.From, to, ms(res.RTT))
		}
	case KindHTTP:
		if res.Status != 0 {
			fmt.Fprintf(&b, "http %s -> %s: %d %s in %s (connect %s)\n", res.From, to, res.Status, http.StatusText(res.Status), ms(res.Total), ms(res.Connect))
			b.WriteString(res.Body)
			if res.Body != "" && !strings.HasSuffix(res.Body, "\n") {
				b.WriteString("\n")
			}
		}
	case KindFlood:
		if res.OK {
			fmt.Fprintf(&b, "flood %s -> %s: %d datagrams sent, %d received in %.2f s: %.0f packets/s (%.1f Mbit/s of payload)\n", res.From, to, res.Sent, res.Received, res.Elapsed.Seconds(), res.PPS, res.Mbps)
		}
	case KindBulk:
		if res.OK {
			fmt.Fprintf(&b, "bulk %s -> %s: %d bytes in %.2f s, %.1f Mbit/s (connect %s)\n", res.From, to, res.Bytes, res.Elapsed.Seconds(), res.Mbps, ms(res.Connect))
		}
	}
	if !res.OK {
		fmt.Fprintf(&b, "%s %s -> %s failed: %s\n", res.Kind, res.From, to, res.Error)
	}
	return b.String()
}
