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
//	    tlsPassthrough: false         # optional; true: the edge's TLS listener may reach it (tcp, https, unix)
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
// Config.Match. A rule path must be in canonical form (see "Request
// paths"): "/a//b", "/%61" or "/a;p" are errors naming the form to write.
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
//
// # Listeners
//
// The edge hands the connector each user connection as a stream of the
// kind of listener it came in by, and a rule serves only the listeners its
// service is meant for (the connector refuses the rest, naming the rule
// and the listener):
//
//	port binding   tcp, http, https, unix, http_status   the operator bound this port to this service
//	HTTP by Host   http, https, unix, http_status        never tcp; unix is spoken HTTP
//	TLS by SNI     rules with tlsPassthrough: true        tcp, https or unix; no path
//	UDP binding    udp
//
// The HTTP listener's users get 403 for a tcp rule (a service for port
// bindings); the TLS listener's users have their connection closed unless
// the rule says tlsPassthrough: true, so that neither a rule meant for
// HTTP (https://, whose path rules passthrough would bypass) nor a
// catch-all opens raw TLS access by accident. Rules are still tried in
// file order: a TLS connection gets the first rule matching its SNI with
// no path, passthrough or not. A unix rule reached by Host receives HTTP
// requests one by one (never raw bytes), so a socket that does not speak
// HTTP belongs behind a hostname no HTTP route of the edge reaches.
//
// # Request paths
//
// Each HTTP request is matched with the canonical form of its path
// (Config.MatchHTTP, CanonicalPath), so that spellings origins normalise
// to the same path match the same rule, and a spelling origins read
// differently is refused (400) rather than guessed. The canonical form:
//
//   - percent-escapes of unreserved characters and sub-delimiters
//     (A-Z a-z 0-9 - _ ~ ! $ & ' ( ) * + , = : @) are decoded: "/%61dmin"
//     is "/admin"; other printable characters and non-ASCII ones are
//     written as escapes with upper-case hex ("/a|b" is "/a%7Cb");
//   - repeated slashes are merged, as nginx's merge_slashes ("//admin");
//   - "." and ".." segments are removed (RFC 3986 section 5.2.4);
//   - ;parameters are dropped from each segment, as Tomcat and Spring do
//     ("/admin;jsessionid=1" is "/admin");
//   - a trailing slash is kept ("/a/b/.." is "/a/").
//
// Refused as malformed or ambiguous: a backslash, raw or %5C (IIS reads
// it as '/'); an encoded '/', '.' or ';' (%2F, %2E, %3B: some origins
// decode them before splitting segments, others after); double encoding
// ("%2561" or "%25%34%31", decoded twice by some); invalid escapes, IIS's "%u0061"
// included; control bytes, raw or escaped; a raw space or '#'; invalid
// UTF-8 (overlong "%C0%AF" is '/' to old decoders); characters that
// Unicode normalisation or Windows code pages turn into path syntax
// (fullwidth forms, "∕", "‥", "¥"); ".." above the root, or after an empty
// segment ("/a//.." is "/" or "/a/" depending on merging); a dot segment
// with a parameter ("/.;/admin", "/..;/"); a segment of dots and spaces
// other than "." and ".." ("...", "..%20": Windows strips trailing dots
// and spaces). Refused depending on the rules: a ;parameter inside the
// part of a segment the matched rule's path covers ("/admin;x" for rule
// "/admin", where Tomcat sees "/admin" and nginx another name; but
// "/static/a.js;jsessionid=1" under "/static/" or a catch-all is fine);
// a path that an origin ignoring ASCII case, trailing dots and spaces,
// NTFS stream suffixes ("::$DATA") or a ".ext" suffix (IIS, Windows,
// Spring MVC's suffix pattern match) would take for another rule's path:
// "/ADMIN", "/admin.", "/admin%20", "/admin::$DATA", "/admin.json" when a
// rule "/admin" comes before the rule they match as written. Rule paths
// stay case-sensitive: a case variant is refused, never matched to a rule
// it does not spell. Last, a non-ASCII character is refused in the
// segments a path rule for the host reaches (a rule "/a/b" reaches two),
// where an origin folding Unicode ("ı" is "I" to .NET) could take it for
// a rule's path; deeper segments may hold any valid UTF-8.
//
// The origin receives the canonical path, with the user's ;parameters
// kept, and the query as sent: what the rules matched is what the origin
// gets, whatever its own normalisation. Not covered: Windows 8.3 short
// names ("ADMINI~1" for "administrator"; off by default on data volumes
// since Windows Server 2012).
package ingress
