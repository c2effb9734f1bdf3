package edgeconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/onramp-net/onramp/dataplane/registry"
)

// Registry says where the edge keeps its state: tunnels and their
// secrets, L3 clients and connectors, address allocations, the hub's key
// and, with etcd, the tunnel certificate the connectors pin.
//
//	registry:                           # none: the bbolt file edge.db in data (one edge)
//	  etcd:                             # several edges sharing one state
//	    endpoints: ["https://etcd1.example.test:2379", "https://etcd2.example.test:2379", "https://etcd3.example.test:2379"]
//	    prefix: /onramp/                # keys are the prefix and their name
//	    tls: {ca: /etc/onramp/etcd-ca.pem, cert: /etc/onramp/etcd-client.pem, key: /etc/onramp/etcd-client-key.pem}
//	    username: onramp                # etcd's own authentication, if on
//	    password_file: /etc/onramp/etcd-password
//	    request_timeout: 5s             # a change without an answer (no quorum) fails after this
type Registry struct {
	Etcd *Etcd `yaml:"etcd"`
}

// Etcd is the etcd back end of the registry.
type Etcd struct {
	Endpoints      []string `yaml:"endpoints"`
	Prefix         string   `yaml:"prefix"`
	TLS            EtcdTLS  `yaml:"tls"`
	Username       string   `yaml:"username"`
	PasswordFile   string   `yaml:"password_file"`
	RequestTimeout Duration `yaml:"request_timeout"`
}

// EtcdTLS names the PEM files to reach etcd over TLS: the CA that signed
// the members' certificates and, if the members check clients, the edge's
// certificate and key.
type EtcdTLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// validateRegistry checks the registry section.
func (c *Config) validateRegistry() error {
	e := c.Registry.Etcd
	if e == nil {
		return nil
	}
	if len(e.Endpoints) == 0 {
		return fmt.Errorf("edge config: registry.etcd.endpoints: want at least one (an etcd member's client URL, https://host:2379)")
	}
	for i, ep := range e.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("edge config: registry.etcd.endpoints[%d]: %q: want http://host:port or https://host:port", i, ep)
		}
	}
	if e.Prefix != "" && (!strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/")) {
		return fmt.Errorf("edge config: registry.etcd.prefix: %q: want a path that starts and ends with / (default %s)", e.Prefix, registry.DefaultEtcdPrefix)
	}
	if (e.TLS.Cert == "") != (e.TLS.Key == "") {
		return fmt.Errorf("edge config: registry.etcd.tls: cert and key go together")
	}
	if e.PasswordFile != "" && e.Username == "" {
		return fmt.Errorf("edge config: registry.etcd.password_file: set username too")
	}
	if e.RequestTimeout < 0 {
		return fmt.Errorf("edge config: registry.etcd.request_timeout: negative")
	}
	return nil
}

// EtcdConfig returns the registry's etcd configuration, reading the TLS
// files and the password file.
func (e *Etcd) EtcdConfig() (registry.EtcdConfig, error) {
	cfg := registry.EtcdConfig{Endpoints: e.Endpoints, Prefix: e.Prefix, Username: e.Username,
		RequestTimeout: time.Duration(e.RequestTimeout)}
	if e.PasswordFile != "" {
		pw, err := os.ReadFile(e.PasswordFile)
		if err != nil {
			return cfg, fmt.Errorf("registry.etcd.password_file: %w", err)
		}
		cfg.Password = strings.TrimRight(string(pw), "\r\n")
	}
	tlsOn := e.TLS.CA != "" || e.TLS.Cert != ""
	for _, ep := range e.Endpoints {
		tlsOn = tlsOn || strings.HasPrefix(ep, "https://")
	}
	if !tlsOn {
		return cfg, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.TLS.CA != "" {
		pem, err := os.ReadFile(e.TLS.CA)
		if err != nil {
			return cfg, fmt.Errorf("registry.etcd.tls.ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("registry.etcd.tls.ca: %s: no PEM certificate in it", e.TLS.CA)
		}
	}
	if e.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(e.TLS.Cert, e.TLS.Key)
		if err != nil {
			return cfg, fmt.Errorf("registry.etcd.tls: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	cfg.TLS = tc
	return cfg, nil
}
