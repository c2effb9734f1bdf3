package ingress

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// WriteStatusResponse writes a complete HTTP/1.1 response with status code
// to w, as an http_status service answers: "Connection: close", and a
// short text/plain body naming the status (no body for 1xx, 204 and 304,
// which may not have one). The caller closes the connection afterwards.
// Codes outside 100-599 are an error and nothing is written.
func WriteStatusResponse(w io.Writer, code int) error {
	if code < 100 || code > 599 {
		return fmt.Errorf("ingress: write status response: code %d outside 100-599", code)
	}
	text := http.StatusText(code)
	if text == "" {
		text = "Status " + strconv.Itoa(code)
	}
	b := make([]byte, 0, 160)
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, "\r\nConnection: close\r\n"...)
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		b = append(b, "\r\n"...)
	} else {
		body := strconv.Itoa(code) + " " + text + "\n"
		b = append(b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n\r\n"...)
		b = append(b, body...)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("ingress: write status response: %w", err)
	}
	return nil
}
