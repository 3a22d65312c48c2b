package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func tlsConfig(pool *x509.CertPool) *tls.Config { return &tls.Config{RootCAs: pool} }

const (
	operatorNamespace = "kiln-system"
	storageClass      = "kiln-e2e"
)

// renderChart runs helm template on the chart with the e2e values and returns its objects.
func renderChart(tools, chart string) ([]*unstructured.Unstructured, error) {
	cmd := exec.Command(filepath.Join(tools, "bin", "helm"), "template", "kiln", chart,
		"--namespace", operatorNamespace, "--include-crds",
		"--set", "modelCache.storageClassName="+storageClass,
		"--set", "server.image.repository=kiln.test/kiln",
		"--set", "operator.image.repository=kiln.test/kiln-operator")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm template: %v: %s", err, errb.String())
	}
	dec := yaml.NewYAMLOrJSONDecoder(bufio.NewReader(&out), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs, nil
}

// installChart creates the chart's objects: CRDs first, then the rest, the operator's
// Deployment at zero replicas (the operator runs as a process instead). It returns the
// operator container's arguments.
func installChart(ctx context.Context, c client.Client, objs []*unstructured.Unstructured) ([]string, error) {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		return nil, err
	}
	var args []string
	for _, pass := range []bool{true, false} {
		for _, o := range objs {
			if (o.GetKind() == "CustomResourceDefinition") != pass {
				continue
			}
			if o.GetKind() == "Deployment" {
				containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
				raw, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
				args = raw
				_ = unstructured.SetNestedField(o.Object, int64(0), "spec", "replicas")
			}
			if err := c.Create(ctx, o); err != nil {
				return nil, fmt.Errorf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
		if pass {
			for _, o := range objs {
				if o.GetKind() != "CustomResourceDefinition" {
					continue
				}
				if err := waitEstablished(ctx, c, o.GetName()); err != nil {
					return nil, err
				}
			}
		}
	}
	return args, nil
}

func waitEstablished(ctx context.Context, c client.Client, name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &crd); err == nil {
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("CRD %s not established", name)
}

// operatorProcess runs the operator binary with the chart's arguments and the chart's
// ServiceAccount's token.
type operatorProcess struct {
	binary, kubeconfig, logPath string
	args                        []string
	cmd                         *exec.Cmd
	done                        chan struct{}
	// stopping is set while the test ends the process on purpose; otherwise an exit (such as
	// leader election lost while the API server restarts) restarts it, as a kubelet restarts a
	// container.
	mu       sync.Mutex
	stopping bool
	Restarts int
}

// newOperator builds the operator and writes a kubeconfig holding a token of the chart's
// ServiceAccount.
func newOperator(ctx context.Context, cl *cluster, chartArgs []string, kilnBinary string) (*operatorProcess, error) {
	binary := filepath.Join(cl.dir, "kiln-operator")
	build := exec.Command("go", "build", "-o", binary, "./cmd")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd: %v: %s", err, out)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cl.kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	tok, err := cs.CoreV1().ServiceAccounts(operatorNamespace).CreateToken(ctx, "kiln-operator",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(86400))}},
		metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("a token for the chart's ServiceAccount: %v", err)
	}
	kubeconfig := filepath.Join(cl.dir, "operator.kubeconfig")
	if err := cl.writeKubeconfig(kubeconfig, tok.Status.Token); err != nil {
		return nil, err
	}
	var args []string
	for _, a := range chartArgs {
		switch {
		case strings.HasPrefix(a, "--kiln-binary="):
			a = "--kiln-binary=" + kilnBinary
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			a = fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", freePort())
		case strings.HasPrefix(a, "--metrics-bind-address="):
			a = fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", freePort())
		}
		args = append(args, a)
	}
	return &operatorProcess{binary: binary, kubeconfig: kubeconfig, args: args,
		logPath: filepath.Join(cl.dir, "operator.log")}, nil
}

func (o *operatorProcess) start() error {
	log, err := os.OpenFile(o.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(o.binary, o.args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+o.kubeconfig)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	o.mu.Lock()
	o.cmd, o.done, o.stopping = cmd, done, false
	o.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(done)
		o.mu.Lock()
		restart := !o.stopping && o.cmd == cmd
		o.mu.Unlock()
		if restart {
			time.Sleep(time.Second)
			o.mu.Lock()
			o.Restarts++
			o.mu.Unlock()
			_ = o.start()
		}
	}()
	return nil
}

// kill ends the operator at once (SIGKILL: no cleanup, as a crash or an evicted pod).
func (o *operatorProcess) kill() {
	o.mu.Lock()
	o.stopping = true
	cmd, done := o.cmd, o.done
	o.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
		<-done
	}
	o.mu.Lock()
	o.cmd, o.stopping = nil, false
	o.mu.Unlock()
}

func (o *operatorProcess) stop() {
	o.mu.Lock()
	o.stopping = true
	cmd, done := o.cmd, o.done
	o.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

func (o *operatorProcess) logTail() string {
	b, _ := os.ReadFile(o.logPath)
	return tail(string(b), 4000)
}

// provisionVolumes plays a storage provisioner for the e2e storage class: each claim of that
// class gets a hostPath PersistentVolume bound to it (no storage driver runs here); the PV
// controller of kube-controller-manager completes the binding.
func provisionVolumes(ctx context.Context, c client.Client) error {
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: storageClass},
		Provisioner: "kiln.dev/e2e", VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
		ReclaimPolicy: ptr.To(corev1.PersistentVolumeReclaimDelete)}
	if err := c.Create(ctx, sc); err != nil {
		return err
	}
	go func() {
		for ctx.Err() == nil {
			var claims corev1.PersistentVolumeClaimList
			if err := c.List(ctx, &claims); err == nil {
				for _, pvc := range claims.Items {
					if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != storageClass ||
						pvc.Spec.VolumeName != "" || pvc.DeletionTimestamp != nil {
						continue
					}
					pv := &corev1.PersistentVolume{
						ObjectMeta: metav1.ObjectMeta{Name: "pv-" + string(pvc.UID)},
						Spec: corev1.PersistentVolumeSpec{
							Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
							AccessModes:                   pvc.Spec.AccessModes,
							StorageClassName:              storageClass,
							PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
							PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/kiln-e2e/" + string(pvc.UID)}},
							ClaimRef:                      &corev1.ObjectReference{Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
						},
					}
					_ = c.Create(ctx, pv)
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	return nil
}

// addNode registers a node kwok runs: `cpu` cores, `mem` memory, `gpus` GPUs of `gpuMiB`.
func addNode(ctx context.Context, c client.Client, name, cpu, mem string, gpus int64, gpuMiB string,
	taints []corev1.Taint) error {
	labels := map[string]string{"kubernetes.io/hostname": name, "type": "kwok"}
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
		corev1.ResourcePods: resource.MustParse("110")}
	if gpus > 0 {
		labels["nvidia.com/gpu.present"] = "true"
		labels["nvidia.com/gpu.memory"] = gpuMiB
		labels["nvidia.com/gpu.product"] = map[string]string{"81559": "NVIDIA-H100-80GB-HBM3", "143771": "NVIDIA-H200"}[gpuMiB]
		res["nvidia.com/gpu"] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
		Spec:   corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{Capacity: res, Allocatable: res},
	}
	return c.Create(ctx, node)
}
