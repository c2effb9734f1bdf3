package edge

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/onramp-net/onramp/l4proxy/tunnel"
)

// What a running Server can change without dropping a connection (the
// edge's configuration reload): the routes ([Server.SetRoutes]), the
// target of a listener's binding ([BindingVar]), and the user limits
// ([Server.SetLimits]). Each is an atomic pointer swap, as the
// connector's ingress rules are: a connection reads the current value once,
// when it is accepted (or, for a UDP flow, when the flow opens), and keeps
// what it read until it ends. Closing a listener served by ServeTCP,
// ServeTLS or ServeHTTP stops its accepting only: the connections it
// accepted run to their end.

// Limits are the limits of [Options] that [Server.SetLimits] changes on a
// running Server; their meaning and defaults are those of Options. A zero
// or negative value is the default, except IdleTimeout: negative is never.
type Limits struct {
	MaxStreamsPerTunnel int
	IdleTimeout         time.Duration
	MaxConns            int
	MaxConnsPerSource   int
	HeaderTimeout       time.Duration

	UDPFlowIdle          time.Duration
	UDPUnrepliedIdle     time.Duration
	MaxUDPFlowsPerTunnel int
	UDPNewFlowsPerSource int
	UDPNewFlowsPerTunnel int
}

// limitSet is the Server's current Limits with the rates derived from them.
type limitSet struct {
	Limits
	udpSourceRate rate // UDPNewFlowsPerSource
	udpTunnelRate rate // UDPNewFlowsPerTunnel
}

// withDefaults fills l's unset values with the defaults, as NewServer
// does for Options.
func (l Limits) withDefaults() Limits {
	orDefault(&l.MaxStreamsPerTunnel, DefaultMaxStreamsPerTunnel)
	orDefault(&l.MaxUDPFlowsPerTunnel, DefaultMaxUDPFlowsPerTunnel)
	orDefault(&l.UDPNewFlowsPerSource, DefaultUDPNewFlowsPerSource)
	orDefault(&l.UDPNewFlowsPerTunnel, DefaultUDPNewFlowsPerTunnel)
	orDefault(&l.UDPFlowIdle, DefaultUDPFlowIdle)
	orDefault(&l.UDPUnrepliedIdle, DefaultUDPUnrepliedIdle)
	l.UDPUnrepliedIdle = min(l.UDPUnrepliedIdle, l.UDPFlowIdle)
	orDefault(&l.MaxConns, DefaultMaxConns)
	orDefault(&l.MaxConnsPerSource, DefaultMaxConnsPerSource)
	orDefault(&l.HeaderTimeout, DefaultHeaderTimeout)
	if l.IdleTimeout == 0 { // negative: never
		l.IdleTimeout = DefaultIdleTimeout
	}
	return l
}

// limitsOf returns the Limits part of opts.
func limitsOf(o *Options) Limits {
	return Limits{
		MaxStreamsPerTunnel: o.MaxStreamsPerTunnel, IdleTimeout: o.IdleTimeout,
		MaxConns: o.MaxConns, MaxConnsPerSource: o.MaxConnsPerSource, HeaderTimeout: o.HeaderTimeout,
		UDPFlowIdle: o.UDPFlowIdle, UDPUnrepliedIdle: o.UDPUnrepliedIdle, MaxUDPFlowsPerTunnel: o.MaxUDPFlowsPerTunnel,
		UDPNewFlowsPerSource: o.UDPNewFlowsPerSource, UDPNewFlowsPerTunnel: o.UDPNewFlowsPerTunnel,
	}
}

// SetLimits replaces the server's user limits. New connections, streams
// and UDP flows are held to the new values; those open keep going, even
// past a limit that was lowered below what is open (the open ones still
// count: new ones are refused until enough have ended), and a proxied
// connection keeps the idle timeout it started with. The expiry of UDP
// flows follows the new UDPFlowIdle and UDPUnrepliedIdle at its next scan.
func (s *Server) SetLimits(l Limits) {
	ls := &limitSet{Limits: l.withDefaults()}
	ls.udpSourceRate = perSecond(ls.UDPNewFlowsPerSource)
	ls.udpTunnelRate = perSecond(ls.UDPNewFlowsPerTunnel)
	s.lim.users.SetMax(ls.MaxConns, ls.MaxConnsPerSource)
	s.limits.Store(ls)
}

// Limits returns the server's user limits now, defaults filled in.
func (s *Server) Limits() Limits { return s.limits.Load().Limits }

// cur returns the current limits.
func (s *Server) cur() *limitSet { return s.limits.Load() }

// ValidateRoutes reports the error [Server.SetRoutes] would return for
// routes, without setting them: a reload checks every part of a new
// configuration before it changes any.
func ValidateRoutes(routes []Route) error {
	_, err := newRouteTable(routes)
	return err
}

// A BindingVar holds the binding a listener serves (ServeTCPVar,
// ServeUDPVar) and lets it change while the listener runs: a connection,
// or a UDP flow, takes the binding current when it is accepted (opened)
// and keeps it. It is safe for concurrent use.
type BindingVar struct{ p atomic.Pointer[Binding] }

// NewBindingVar returns a BindingVar holding b, or the error of a bad b.
func NewBindingVar(b Binding) (*BindingVar, error) {
	v := &BindingVar{}
	if err := v.Store(b); err != nil {
		return nil, err
	}
	return v, nil
}

// Store makes b the binding of new connections and flows. A bad b (a
// service name longer than a stream request carries) is refused and the
// binding stays.
func (v *BindingVar) Store(b Binding) error {
	if len(b.Service) > tunnel.MaxHostnameLen {
		return fmt.Errorf("edge: binding: service name of %d bytes (max %d)", len(b.Service), tunnel.MaxHostnameLen)
	}
	v.p.Store(&b)
	return nil
}

// Load returns the binding now.
func (v *BindingVar) Load() Binding { return *v.p.Load() }
