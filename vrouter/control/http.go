package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// Serve serves h on the unix socket at path until ctx ends, then shuts the
// server down (waiting up to a second for requests in flight). A socket
// file left at path by an earlier process is replaced. It returns once
// the socket listens; errors of the server after that are logged.
func Serve(ctx context.Context, path string, h http.Handler, log *slog.Logger) error {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	srv := &http.Server{Handler: h}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("control socket", "err", err)
		}
	}()
	return nil
}

// ErrNotFound marks an error about something a request names that does
// not exist: Reply answers it with 404 Not Found, and the client's error
// for a 404 matches it (errors.Is).
var ErrNotFound = errors.New("not found")

// NotFoundf returns an error with the formatted message that matches
// ErrNotFound.
func NotFoundf(format string, args ...any) error {
	return notFound(fmt.Sprintf(format, args...))
}

type notFound string

func (e notFound) Error() string        { return string(e) }
func (e notFound) Is(target error) bool { return target == ErrNotFound }

// Reply writes v as JSON, or err as a plain-text error: 404 for
// ErrNotFound, 500 for anything else.
func Reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrNotFound) {
			code = http.StatusNotFound
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Decode reads the JSON request body into v, refusing unknown fields.
func Decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
