package control

import (
	"encoding/json"
	"errors"
	"net/http"
)

// ErrNotFound marks an error about something the request names that does
// not exist: Reply answers it with 404 Not Found.
var ErrNotFound = errors.New("not found")

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
