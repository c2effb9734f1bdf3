package registry

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestUnavailableHint: every form in which etcd's client reports that no
// answer came in time (the context's own error, or a gRPC status that
// only says so, as a cluster without quorum gives) names the likely cause.
func TestUnavailableHint(t *testing.T) {
	e := &Etcd{name: "etcd test"}
	for _, err := range []error{
		context.DeadlineExceeded,
		status.Error(codes.Unknown, "context deadline exceeded"),
		status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
		errors.New("etcdserver: no leader"),
	} {
		got := e.unavailable("read", err)
		if !errors.Is(got, ErrUnavailable) || !strings.Contains(got.Error(), "majority of the etcd members") {
			t.Errorf("unavailable(%v) = %v, want ErrUnavailable with the quorum hint", err, got)
		}
	}
	if got := e.unavailable("read", context.Canceled); errors.Is(got, ErrUnavailable) {
		t.Errorf("the caller's cancellation reported as %v", got)
	}
}
