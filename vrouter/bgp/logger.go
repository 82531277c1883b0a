package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// levelTrace is where GoBGP's debug messages go: below slog.LevelDebug,
// since GoBGP logs every keepalive and update at debug level.
const levelTrace = slog.LevelDebug - 4

// gobgpLogger adapts GoBGP's log.Logger to slog, and reads the messages
// about a peer's session for the last error PeerStatus.Info shows: GoBGP's
// API (api.Peer) has the session state and the times it last went up and
// down, but no word of why it went down.
type gobgpLogger struct {
	log    *slog.Logger
	events *peerEvents
}

var _ log.Logger = (*gobgpLogger)(nil)

// Panic logs at error level and panics, as GoBGP expects.
func (l *gobgpLogger) Panic(msg string, fields log.Fields) {
	l.emit(slog.LevelError, msg, fields)
	panic("gobgp: " + msg)
}

// Fatal logs at error level and panics: GoBGP reports logic errors this
// way, and a library must not exit the process.
func (l *gobgpLogger) Fatal(msg string, fields log.Fields) {
	l.emit(slog.LevelError, msg, fields)
	panic("gobgp: " + msg)
}

// Error logs at error level.
func (l *gobgpLogger) Error(msg string, fields log.Fields) {
	l.observe(msg, fields)
	l.emit(slog.LevelError, msg, fields)
}

// Warn logs at warning level.
func (l *gobgpLogger) Warn(msg string, fields log.Fields) {
	l.observe(msg, fields)
	l.emit(slog.LevelWarn, msg, fields)
}

// Info logs a peer coming up or going down at info level, everything else
// at debug level.
func (l *gobgpLogger) Info(msg string, fields log.Fields) {
	l.observe(msg, fields)
	level := slog.LevelDebug
	if msg == "Peer Up" || msg == "Peer Down" {
		level = slog.LevelInfo
	}
	l.emit(level, msg, fields)
}

// Debug logs below slog's debug level.
func (l *gobgpLogger) Debug(msg string, fields log.Fields) {
	l.observe(msg, fields)
	l.emit(levelTrace, msg, fields)
}

// SetLevel does nothing: the slog handler decides what is logged.
func (l *gobgpLogger) SetLevel(log.LogLevel) {}

// GetLevel reports debug level so that GoBGP emits the debug messages that
// carry connection errors ("failed to connect"), which it skips at lower
// levels; whether they are logged is the slog handler's decision.
func (l *gobgpLogger) GetLevel() log.LogLevel { return log.DebugLevel }

// emit hands a message to slog, fields sorted by name.
func (l *gobgpLogger) emit(level slog.Level, msg string, fields log.Fields) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		v := fields[k]
		if err, ok := v.(error); ok {
			v = err.Error()
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	l.log.LogAttrs(ctx, level, "gobgp: "+msg, attrs...)
}

// observe records what a GoBGP message says about a peer's last error.
func (l *gobgpLogger) observe(msg string, fields log.Fields) {
	key, _ := fields["Key"].(string)
	peer, err := netip.ParseAddr(key)
	if err != nil {
		return
	}
	peer = peer.Unmap()
	switch msg {
	case "Peer Up":
		l.events.setError(peer, "")
	case "Peer Down":
		// The reason is GoBGP's fsmStateReason, a string here. A session
		// closed under our feet says nothing else about it.
		if r, _ := fields["Reason"].(string); r == "read-failed" {
			l.events.setError(peer, "Socket: Connection closed")
		}
	case "state changed":
		l.stateChanged(peer, fields)
	case "received notification":
		if code, sub, ok := notificationCodes(fields); ok && !isCollision(code, sub) {
			l.events.setError(peer, "Received: "+notificationText(code, sub))
		}
	case "sent notification":
		l.events.sentNotification(peer)
		if code, sub, ok := notificationCodes(fields); ok && !isCollision(code, sub) {
			l.events.setError(peer, "BGP Error: "+notificationText(code, sub))
		}
	case "hold timer expired":
		l.events.setError(peer, "BGP Error: "+notificationText(bgp.BGP_ERROR_HOLD_TIMER_EXPIRED, 0))
	case "failed to connect":
		if err, ok := fields["Error"].(error); ok {
			l.events.setError(peer, "Socket: "+socketError(err))
		}
	}
}

// stateChanged reads GoBGP's "state changed" message (old and new FSM
// state, and the reason). Before Established GoBGP handles a NOTIFICATION
// it receives as any unexpected message: it neither logs it nor keeps it,
// and reports "invalid-msg" as the reason the session went back to Idle.
// When this speaker sent no NOTIFICATION itself during that attempt, the
// unexpected message can only have been the peer's NOTIFICATION (a
// conforming peer sends nothing else but OPEN and KEEPALIVE then), whose
// error code is lost.
func (l *gobgpLogger) stateChanged(peer netip.Addr, fields log.Fields) {
	oldState, _ := fields["old"].(string)
	newState, _ := fields["new"].(string)
	switch {
	case newState == "BGP_FSM_OPENSENT":
		l.events.newAttempt(peer)
	case newState == "BGP_FSM_IDLE" && (oldState == "BGP_FSM_OPENSENT" || oldState == "BGP_FSM_OPENCONFIRM"):
		// fmt copes with a nil *fsmStateReason.
		if fmt.Sprint(fields["reason"]) == "invalid-msg" && !l.events.sentThisAttempt(peer) {
			l.events.setError(peer, "Received: NOTIFICATION")
		}
	}
}

// notificationCodes finds the error code and subcode of a NOTIFICATION in
// a GoBGP message's fields: "Code" and "Subcode", or a *bgp.MessageError as
// "Data" (a NOTIFICATION sent for an invalid message).
func notificationCodes(fields log.Fields) (code, sub uint8, ok bool) {
	if e, isErr := fields["Data"].(*bgp.MessageError); isErr {
		return e.TypeCode, e.SubTypeCode, true
	}
	code, ok1 := fields["Code"].(uint8)
	sub, ok2 := fields["Subcode"].(uint8)
	return code, sub, ok1 && ok2
}

// isCollision reports the Cease a speaker sends when both ends opened a
// session at once and one of the two connections is closed (RFC 4271
// 6.8): routine, not an error worth showing.
func isCollision(code, sub uint8) bool {
	return code == bgp.BGP_ERROR_CEASE && sub == bgp.BGP_ERROR_SUB_CONNECTION_COLLISION_RESOLUTION
}

// socketError words a failure to connect as strerror(3) does, the way
// BIRD shows it: "Connection refused".
func socketError(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return capitalize(errno.Error())
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "Connection timed out"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "Connection timed out"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return capitalize(msg)
}

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

// peerEvents holds what GoBGP's messages told about each peer's session.
type peerEvents struct {
	mu    sync.Mutex
	peers map[netip.Addr]*peerEvent
}

type peerEvent struct {
	err  string // the last error, in BIRD's words
	sent bool   // a NOTIFICATION was sent since the session last reached OpenSent
}

func newPeerEvents() *peerEvents {
	return &peerEvents{peers: make(map[netip.Addr]*peerEvent)}
}

// get returns peer's record, creating it; e.mu must be held.
func (e *peerEvents) get(peer netip.Addr) *peerEvent {
	pe := e.peers[peer]
	if pe == nil {
		pe = &peerEvent{}
		e.peers[peer] = pe
	}
	return pe
}

func (e *peerEvents) setError(peer netip.Addr, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(peer).err = msg
}

func (e *peerEvents) newAttempt(peer netip.Addr) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(peer).sent = false
}

func (e *peerEvents) sentNotification(peer netip.Addr) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(peer).sent = true
}

func (e *peerEvents) sentThisAttempt(peer netip.Addr) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.get(peer).sent
}

func (e *peerEvents) lastError(peer netip.Addr) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if pe := e.peers[peer]; pe != nil {
		return pe.err
	}
	return ""
}

// forget drops what is known of a peer.
func (e *peerEvents) forget(peer netip.Addr) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.peers, peer)
}

// notificationNames are the names of NOTIFICATION errors by code and
// subcode, as BIRD words them (the names of RFC 4271, RFC 4486 and their
// successors).
var notificationNames = map[[2]uint8]string{
	{1, 0}:  "Invalid message header",
	{1, 1}:  "Connection not synchronized",
	{1, 2}:  "Bad message length",
	{1, 3}:  "Bad message type",
	{2, 0}:  "Invalid OPEN message",
	{2, 1}:  "Unsupported version number",
	{2, 2}:  "Bad peer AS",
	{2, 3}:  "Bad BGP identifier",
	{2, 4}:  "Unsupported optional parameter",
	{2, 5}:  "Authentication failure",
	{2, 6}:  "Unacceptable hold time",
	{2, 7}:  "Required capability missing",
	{2, 8}:  "No supported AFI/SAFI",
	{2, 11}: "Role mismatch",
	{3, 0}:  "Invalid UPDATE message",
	{3, 1}:  "Malformed attribute list",
	{3, 2}:  "Unrecognized well-known attribute",
	{3, 3}:  "Missing mandatory attribute",
	{3, 4}:  "Invalid attribute flags",
	{3, 5}:  "Invalid attribute length",
	{3, 6}:  "Invalid ORIGIN attribute",
	{3, 7}:  "AS routing loop",
	{3, 8}:  "Invalid NEXT_HOP attribute",
	{3, 9}:  "Optional attribute error",
	{3, 10}: "Invalid network field",
	{3, 11}: "Malformed AS_PATH",
	{4, 0}:  "Hold timer expired",
	{5, 0}:  "Finite state machine error",
	{5, 1}:  "Unexpected message in OpenSent state",
	{5, 2}:  "Unexpected message in OpenConfirm state",
	{5, 3}:  "Unexpected message in Established state",
	{6, 0}:  "Cease",
	{6, 1}:  "Maximum number of prefixes reached",
	{6, 2}:  "Administrative shutdown",
	{6, 3}:  "Peer de-configured",
	{6, 4}:  "Administrative reset",
	{6, 5}:  "Connection rejected",
	{6, 6}:  "Other configuration change",
	{6, 7}:  "Connection collision resolution",
	{6, 8}:  "Out of resources",
	{6, 9}:  "Hard reset",
	{7, 0}:  "Invalid ROUTE-REFRESH message",
	{7, 1}:  "Invalid ROUTE-REFRESH message length",
}

// notificationText names a NOTIFICATION's error: "Bad peer AS".
func notificationText(code, sub uint8) string {
	if s, ok := notificationNames[[2]uint8{code, sub}]; ok {
		return s
	}
	if s, ok := notificationNames[[2]uint8{code, 0}]; ok {
		return fmt.Sprintf("%s (subcode %d)", s, sub)
	}
	return fmt.Sprintf("Unknown error %d/%d", code, sub)
}
