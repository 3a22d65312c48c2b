// End-to-end tests on a real control plane: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler v1.35.4 as processes on loopback, and kwok, which plays the kubelets of
// simulated nodes (pods are scheduled for real; kwok marks them running, and Job pods
// succeeded). The operator is installed from the Helm chart (CRDs, RBAC, catalog) and runs as a
// process with the chart's flags and the chart's ServiceAccount's token, so its RBAC is the
// chart's. KUBE_TOOLS names the folder scripts/install_k8s_tools.sh built.
package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a control-plane component run as a child process.
type process struct {
	name string
	args []string
	cmd  *exec.Cmd
	log  *os.File
}

// cluster is the control plane and its files.
type cluster struct {
	dir, tools string
	apiPort    int
	token      string
	kubeconfig string
	procs      map[string]*process
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

// makeCerts writes a CA, the API server's serving certificate for 127.0.0.1 and the
// service-account signing key.
func (c *cluster) makeCerts() error {
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln-e2e-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	srvKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name, kind string
		der        []byte
	}{
		{"ca.crt", "CERTIFICATE", caDER}, {"apiserver.crt", "CERTIFICATE", srvDER},
		{"apiserver.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(srvKey)},
		{"sa.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)}, {"sa.pub", "PUBLIC KEY", saPub},
	} {
		if err := writePEM(filepath.Join(c.dir, f.name), f.kind, f.der); err != nil {
			return err
		}
	}
	return nil
}

// writeKubeconfig writes a kubeconfig for `token`.
func (c *cluster) writeKubeconfig(path, token string) error {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: %s
users:
- name: user
  user:
    token: %s
contexts:
- name: e2e
  context: {cluster: e2e, user: user}
current-context: e2e
`, c.apiPort, filepath.Join(c.dir, "ca.crt"), token)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// startCluster starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.
func startCluster(dir, tools string) (*cluster, error) {
	c := &cluster{dir: dir, tools: tools, apiPort: freePort(), procs: map[string]*process{}}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	c.token = fmt.Sprintf("%x", b)
	if err := c.makeCerts(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"),
		[]byte(c.token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	c.kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := c.writeKubeconfig(c.kubeconfig, c.token); err != nil {
		return nil, err
	}
	bin := func(name string) string { return filepath.Join(tools, "bin", name) }
	etcdClient, etcdPeer := freePort(), freePort()
	c.add("etcd", bin("etcd"), "--data-dir", filepath.Join(dir, "etcd"), "--unsafe-no-fsync",
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", etcdPeer),
		"--log-level", "error")
	c.add("kube-apiserver", bin("kube-apiserver"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(c.apiPort),
		"--tls-cert-file", filepath.Join(dir, "apiserver.crt"), "--tls-private-key-file", filepath.Join(dir, "apiserver.key"),
		"--client-ca-file", filepath.Join(dir, "ca.crt"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"), "--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range", "10.96.0.0/24", "--endpoint-reconciler-type", "none",
		"--disable-admission-plugins", "ServiceAccount")
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if err := c.start(name); err != nil {
			return c, err
		}
	}
	if err := c.waitHealthy(60 * time.Second); err != nil {
		return c, err
	}
	c.add("kube-controller-manager", bin("kube-controller-manager"), "--kubeconfig", c.kubeconfig,
		"--authentication-kubeconfig", c.kubeconfig, "--authorization-kubeconfig", c.kubeconfig,
		"--service-account-private-key-file", filepath.Join(dir, "sa.key"),
		"--root-ca-file", filepath.Join(dir, "ca.crt"), "--leader-elect=false",
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(freePort()),
		"--controllers", "*,-nodeipam,-service-lb-controller,-route,-cloud-node-lifecycle",
		"--node-monitor-grace-period", "60s")
	c.add("kube-scheduler", bin("kube-scheduler"), "--kubeconfig", c.kubeconfig,
		"--authentication-kubeconfig", c.kubeconfig, "--authorization-kubeconfig", c.kubeconfig,
		"--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(freePort()))
	c.add("kwok", bin("kwok"), "--kubeconfig", c.kubeconfig, "--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
		"--config", filepath.Join(tools, "kwok-stages.yaml"),
		"--server-address", fmt.Sprintf("127.0.0.1:%d", freePort()))
	for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kwok"} {
		if err := c.start(name); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (c *cluster) add(name, path string, args ...string) {
	c.procs[name] = &process{name: name, args: append([]string{path}, args...)}
}

func (c *cluster) start(name string) error {
	p := c.procs[name]
	log, err := os.OpenFile(filepath.Join(c.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.log = log
	p.cmd = exec.Command(p.args[0], p.args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return p.cmd.Start()
}

// stop ends a component (SIGTERM, then SIGKILL after 10 s).
func (c *cluster) stop(name string) {
	p := c.procs[name]
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
	p.cmd = nil
}

// restart stops and starts a component.
func (c *cluster) restart(name string) error {
	c.stop(name)
	return c.start(name)
}

func (c *cluster) shutdown() {
	for _, name := range []string{"kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"} {
		c.stop(name)
	}
}

// waitHealthy waits for the API server's /readyz.
func (c *cluster) waitHealthy(timeout time.Duration) error {
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(c.dir, "ca.crt"))
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig(pool)}}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/readyz", c.apiPort), nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := client.Do(req)
		if err == nil {
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			last = buf.String()
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	logs, _ := os.ReadFile(filepath.Join(c.dir, "kube-apiserver.log"))
	return fmt.Errorf("kube-apiserver not ready in %s: %s\n%s", timeout, last, tail(string(logs), 3000))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// logTail is the end of a component's log, for failure messages.
func (c *cluster) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
	return tail(strings.TrimSpace(string(b)), 4000)
}
