package testnet

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Nginx is a real nginx serving inside a node: an origin for the tests of
// the edge's direct L4 proxy.
type Nginx struct {
	*Proc
	Dir string
	// CertFile is the PEM certificate of its TLS servers (self-signed for
	// the names given to StartNginx); a client that trusts it verifies the
	// origin itself.
	CertFile string
}

// StartNginx runs nginx (Debian's, in the foreground, one process) in
// node with dir for its files, and servers as the body of its http block:
// the server blocks, which may use {{dir}} for dir and {{cert}} and
// {{key}} for a certificate for certNames. It waits until every address
// in listen ("host:port") accepts connections. The process stops when the
// Net closes.
func (node *Node) StartNginx(dir, servers string, certNames []string, listen ...string) (*Nginx, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return nil, fmt.Errorf("nginx not installed (make deps installs it): %w", err)
	}
	ng := &Nginx{Dir: dir, CertFile: filepath.Join(dir, "cert.pem")}
	keyFile := filepath.Join(dir, "key.pem")
	if len(certNames) > 0 {
		cert, certPEM, err := selfSigned(certNames...)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(ng.CertFile, certPEM, 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
	}
	servers = strings.NewReplacer("{{dir}}", dir, "{{cert}}", ng.CertFile, "{{key}}", keyFile).Replace(servers)
	conf := fmt.Sprintf(`daemon off;
master_process off;
user root;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 1024; }
http {
    access_log off;
    default_type text/plain;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, dir, servers)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if _, err := node.Run(context.Background(), bin, "-t", "-c", path, "-p", dir); err != nil {
		return nil, err
	}
	if ng.Proc, err = node.Start(bin, "-c", path, "-p", dir); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range listen {
		for {
			c, err := node.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-ng.Done():
				return nil, fmt.Errorf("nginx exited at start: %v\n%s", ng.Wait(), ng.Output())
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("nginx does not accept on %s after 10s\n%s", addr, ng.Output())
			}
		}
	}
	return ng, nil
}
