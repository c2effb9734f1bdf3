// Package ingress holds the connector's ingress rules: which origin in the
// private network serves a user connection, given the hostname (TLS SNI or
// HTTP Host) and, for HTTP, the path of each request. It parses the
// rules from YAML, in the spirit of cloudflared's configuration, matches
// requests against them and dials the origins.
//
// # Schema
//
//	ingress:                          # required, non-empty, tried in order
//	  - hostname: app.example.test    # optional; exact or "*.example.test"
//	    path: /api                    # optional; http, https, unix, http_status only
//	    service: http://198.18.2.10:8080
//	    originRequest:                # optional; overrides the top level per field
//	      connectTimeout: 5s
//	      tcpKeepAlive: 30s
//	      idleTimeout: 90s
//	      noTLSVerify: false          # https only
//	      caPool: /path/ca.pem        # https only
//	      originServerName: name      # https only
//	  - service: http_status:404      # the last rule: no hostname, no path
//	originRequest:                    # optional defaults for every rule
//	  connectTimeout: 10s
//
// Services:
//
//	tcp://host:port          raw TCP
//	udp://host:port          UDP datagrams (see Rule.DialUDP)
//	http://host[:port]       TCP to an HTTP origin, port 80 by default
//	https://host[:port]      TLS to an HTTPS origin, port 443 by default
//	unix:/path/to.sock       a Unix stream socket (also unix:///path)
//	http_status:404          the connector answers with this status itself
//
// Hosts are IP addresses (IPv6 in brackets) or DNS names; the scheme is
// case-insensitive. A service URL may not carry a path (a lone "/" after
// http or https is tolerated), a query, a fragment or user info.
//
// Hostnames are DNS names whose labels hold ASCII letters, digits, '-' and
// '_' (internationalised names in their xn-- form), compared
// case-insensitively; a trailing dot is ignored and a port is an error. A
// wildcard has exactly one leading "*." label and matches any name with
// at least one more label, not the apex. "*" alone is refused: omit
// hostname to match every host.
//
// Paths start with "/" and are prefixes matched at a segment boundary: see
// Config.Match.
//
// The last rule must be a catch-all, with neither hostname nor path; a
// catch-all anywhere else makes the rules after it unreachable and is an
// error.
//
// # Origin options and defaults
//
// Each option is taken from the rule's originRequest, else from the
// top-level originRequest, else from the default:
//
//	connectTimeout    30s (as cloudflared); bounds connect and TLS handshake; 0: only the caller's context
//	tcpKeepAlive      30s; 0 turns keep-alive off
//	idleTimeout       0, never; enforced by the proxy, not by the dialers
//	noTLSVerify       false; true skips verification of the origin's certificate
//	caPool            the system roots; a PEM file of CA certificates otherwise
//	originServerName  the service host; the SNI and the name verified
//
// Durations use Go syntax ("10s", "1m30s") and may not be negative. TLS
// options in a rule's originRequest are an error unless its service is
// https; at the top level they apply to the https rules only. A caPool
// file must be a regular file of at most 1 MiB holding at least one PEM
// certificate; Load resolves a relative path against the directory of the
// configuration file.
//
// Unknown fields, duplicate fields, merge keys ("<<") and several YAML
// documents in one file are errors. Aliases are followed.
package ingress
