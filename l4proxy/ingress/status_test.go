package ingress

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestWriteStatusResponse(t *testing.T) {
	for _, code := range []int{100, 200, 204, 301, 304, 404, 418, 499, 503, 599} {
		var buf bytes.Buffer
		if err := WriteStatusResponse(&buf, code); err != nil {
			t.Fatal(err)
		}
		raw := buf.String()
		resp, err := http.ReadResponse(bufio.NewReader(&buf), &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("%d: ReadResponse(%q): %v", code, raw, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%d: body: %v", code, err)
		}
		if resp.StatusCode != code || resp.ProtoMajor != 1 || resp.ProtoMinor != 1 || !resp.Close {
			t.Errorf("%d: got status %d proto %s close %v in %q", code, resp.StatusCode, resp.Proto, resp.Close, raw)
		}
		noBody := code < 200 || code == 204 || code == 304
		if noBody && len(body) != 0 || !noBody && !strings.HasPrefix(string(body), strings.Fields(resp.Status)[0]+" ") {
			t.Errorf("%d: body %q", code, body)
		}
		if !noBody && resp.ContentLength != int64(len(body)) {
			t.Errorf("%d: Content-Length %d, body %d bytes", code, resp.ContentLength, len(body))
		}
		if buf.Len() != 0 {
			t.Errorf("%d: %d bytes after the response", code, buf.Len())
		}
	}
	if got := mustWrite(t, 404); got != "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\n404 Not Found\n" {
		t.Errorf("404 response %q", got)
	}
	for _, code := range []int{0, 99, 600, -1} {
		var buf bytes.Buffer
		if err := WriteStatusResponse(&buf, code); err == nil || buf.Len() != 0 {
			t.Errorf("code %d: err %v, wrote %q", code, err, buf.String())
		}
	}
}

func mustWrite(t *testing.T, code int) string {
	var buf bytes.Buffer
	if err := WriteStatusResponse(&buf, code); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
