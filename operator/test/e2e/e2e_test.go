package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
	"kiln.dev/operator/test/testutil"
)

var (
	k8s      client.Client
	cl       *cluster
	operator *operatorProcess
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	tools, kiln := os.Getenv("KUBE_TOOLS"), os.Getenv("KILN_BINARY")
	if tools == "" || kiln == "" {
		fmt.Fprintln(os.Stderr, "KUBE_TOOLS and KILN_BINARY must be set: run scripts/test_operator.sh")
		return 1
	}
	dir, err := os.MkdirTemp("", "kiln-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	keep := os.Getenv("KILN_E2E_KEEP") != ""
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		if cl != nil {
			for _, n := range []string{"kube-apiserver", "kube-controller-manager", "kwok"} {
				fmt.Fprintf(os.Stderr, "--- %s log:\n%s\n", n, cl.logTail(n))
			}
		}
		return 1
	}
	start := time.Now()
	cl, err = startCluster(dir, tools)
	if cl != nil {
		defer cl.shutdown()
	}
	if err != nil {
		return fail(err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(kilnv1.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	cfg, err := clientcmd.BuildConfigFromFlags("", cl.kubeconfig)
	if err != nil {
		return fail(err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	objs, err := renderChart(tools, filepath.Join("..", "..", "..", "deploy", "helm", "kiln"))
	if err != nil {
		return fail(err)
	}
	chartArgs, err := installChart(ctx, k8s, objs)
	if err != nil {
		return fail(err)
	}
	if err := provisionVolumes(ctx, k8s); err != nil {
		return fail(err)
	}
	for _, n := range []struct {
		name, cpu, mem string
		gpus           int64
		gpuMiB         string
		taints         []corev1.Taint
	}{
		{"cpu-1", "8", "32Gi", 0, "", nil},
		{"cpu-2", "8", "32Gi", 0, "", nil},
		{"gpu-h100", "32", "256Gi", 2, "81559", nil},
		{"gpu-h200", "64", "512Gi", 4, "143771", []corev1.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}}},
	} {
		if err := addNode(ctx, k8s, n.name, n.cpu, n.mem, n.gpus, n.gpuMiB, n.taints); err != nil {
			return fail(err)
		}
	}
	if operator, err = newOperator(ctx, cl, chartArgs, kiln); err != nil {
		return fail(err)
	}
	if err := operator.start(); err != nil {
		return fail(err)
	}
	defer operator.stop()
	fmt.Fprintf(os.Stderr, "e2e: control plane, chart, nodes and operator up in %.1f s (%s)\n",
		time.Since(start).Seconds(), dir)
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- operator log:\n%s\n", operator.logTail())
	}
	return code
}

func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	testutil.Eventually(t, timeout, 250*time.Millisecond, what, check)
}

func ensureNamespace(t *testing.T, name string) { testutil.EnsureNamespace(t, k8s, name) }

func apply(t *testing.T, ns, manifest string) *kilnv1.ModelDeployment {
	t.Helper()
	return testutil.CreateDeployment(t, k8s, ns, manifest)
}

func get(t *testing.T, md *kilnv1.ModelDeployment) *kilnv1.ModelDeployment {
	t.Helper()
	var got kilnv1.ModelDeployment
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(md), &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

// running waits until `md` is Running with `replicas` ready.
func running(t *testing.T, md *kilnv1.ModelDeployment, replicas int32, timeout time.Duration) *kilnv1.ModelDeployment {
	t.Helper()
	var got *kilnv1.ModelDeployment
	eventually(t, timeout, md.Name+" Running", func() error {
		got = get(t, md)
		if got.Status.State != kilnv1.StateRunning || got.Status.Replicas.Ready != replicas ||
			got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("state %q ready %d gen %d/%d: %s", got.Status.State, got.Status.Replicas.Ready,
				got.Status.ObservedGeneration, got.Generation, got.Status.Message)
		}
		return nil
	})
	return got
}

func condition(md *kilnv1.ModelDeployment, typ string) *metav1.Condition {
	return meta.FindStatusCondition(md.Status.Conditions, typ)
}

// pods are the server pods of `md`.
func pods(t *testing.T, md *kilnv1.ModelDeployment) []corev1.Pod {
	t.Helper()
	var list corev1.PodList
	if err := k8s.List(context.Background(), &list, client.InNamespace(md.Namespace),
		client.MatchingLabels{"kiln.dev/model-deployment": md.Name}); err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func nodesOf(ps []corev1.Pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Spec.NodeName)
	}
	sort.Strings(out)
	return out
}

// owned counts the objects in `ns` of each kind the operator makes.
func owned(t *testing.T, ns string) map[string]int {
	t.Helper()
	ctx := context.Background()
	counts := map[string]int{}
	for kind, list := range map[string]client.ObjectList{
		"Deployment": &appsv1.DeploymentList{}, "Service": &corev1.ServiceList{}, "Secret": &corev1.SecretList{},
		"PersistentVolumeClaim": &corev1.PersistentVolumeClaimList{}, "Job": &batchv1.JobList{},
		"ConfigMap": &corev1.ConfigMapList{}, "Pod": &corev1.PodList{},
	} {
		if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		items, _ := meta.ExtractList(list)
		for _, it := range items {
			o := it.(client.Object)
			if o.GetLabels()["app.kubernetes.io/name"] == "kiln" && o.GetDeletionTimestamp() == nil {
				counts[kind]++
			}
		}
	}
	return counts
}

// A catalog model on CPU end to end: cached by a Job that kwok completes, Running on a CPU node
// with the planner's limits, scaled with the scale subresource, rolled by a spec change, and
// gone without a trace when deleted.
func TestCatalogModelOnCPU(t *testing.T) {
	ctx := context.Background()
	md := apply(t, "e2e-cpu", `
metadata: {name: smollm2}
spec:
  model: {catalog: {name: smollm2-135m}}
  workloadType: generative
  compute: cpu
`)
	got := running(t, md, 1, 90*time.Second)
	if l := got.Status.Limits; l == nil || l.MaxModelLen <= 0 || l.MaxNumSeqs != 16 || got.Status.Runtime != "vllm" {
		t.Fatalf("status %+v", got.Status)
	}
	if !strings.HasPrefix(got.Status.InternalEndpoint, "http://smollm2.e2e-cpu.svc.cluster.local:8080") {
		t.Fatalf("endpoint %q", got.Status.InternalEndpoint)
	}
	for _, n := range nodesOf(pods(t, md)) {
		if !strings.HasPrefix(n, "cpu-") {
			t.Fatalf("a CPU model's pod went to %s", n)
		}
	}
	// kubectl scale: the scale subresource.
	scale := &autoscalingv1.Scale{}
	if err := k8s.SubResource("scale").Get(ctx, got, scale); err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 3
	if err := k8s.SubResource("scale").Update(ctx, got, client.WithSubResourceBody(scale)); err != nil {
		t.Fatal(err)
	}
	got = running(t, md, 3, 60*time.Second)
	if len(pods(t, md)) != 3 {
		t.Fatalf("%d pods", len(pods(t, md)))
	}
	// A spec change rolls the pods to a new template.
	before := map[string]bool{}
	for _, p := range pods(t, md) {
		before[p.Name] = true
	}
	got.Spec.Env = []corev1.EnvVar{{Name: "KILN_LOG_LEVEL", Value: "debug"}}
	if err := k8s.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "the pods replaced by the new template", func() error {
		ps := pods(t, md)
		if len(ps) != 3 {
			return fmt.Errorf("%d pods", len(ps))
		}
		for _, p := range ps {
			if before[p.Name] {
				return fmt.Errorf("pod %s is from the old template", p.Name)
			}
			env := p.Spec.Containers[0].Env
			if env[len(env)-1].Name != "KILN_LOG_LEVEL" {
				return fmt.Errorf("pod %s lacks the new env", p.Name)
			}
		}
		return nil
	})
	running(t, md, 3, 60*time.Second)

	if err := k8s.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "nothing left of the deployment", func() error {
		if c := owned(t, "e2e-cpu"); len(c) > 0 {
			return fmt.Errorf("left: %v", c)
		}
		return nil
	})
}

// A catalog model on GPUs with vllm.preferences: planned for the GPUs of the nodes with room,
// placed on a GPU node (tainted ones tolerated); a second deployment that no node has the GPUs
// for reports ResourcesAvailable=False and makes no pods, and is placed once the first goes.
func TestCatalogModelOnGPUs(t *testing.T) {
	ctx := context.Background()
	first := apply(t, "e2e-gpu", `
metadata: {name: qwen-tp4}
spec:
  model: {catalog: {name: qwen2.5-7b}}
  workloadType: generative
  compute: gpu
  runtime: vllm
  resources: {limits: {gpu: 4}}
  vllm:
    preferences: {tensor_parallel_size: 4, kv_cache_dtype: fp8_e4m3, max_model_len: 16384}
`)
	got := running(t, first, 1, 90*time.Second)
	if l := got.Status.Limits; l == nil || l.Device != "gpu:143771" || l.KvCacheDtype != "fp8_e4m3" || l.MaxModelLen != 16384 {
		t.Fatalf("plan %+v", got.Status.Limits)
	}
	if n := nodesOf(pods(t, first)); len(n) != 1 || n[0] != "gpu-h200" {
		t.Fatalf("4 GPUs fit only the H200 node; the pod went to %v", n)
	}
	second := apply(t, "e2e-gpu", `
metadata: {name: qwen-second}
spec:
  model: {catalog: {name: qwen2.5-7b}}
  workloadType: generative
  compute: gpu
  runtime: vllm
  resources: {limits: {gpu: 4}}
  vllm:
    preferences: {tensor_parallel_size: 4}
`)
	eventually(t, 60*time.Second, "ResourcesAvailable=False", func() error {
		g := get(t, second)
		c := condition(g, "ResourcesAvailable")
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "InsufficientGPU" || g.Status.State != kilnv1.StatePending {
			return fmt.Errorf("%+v %s", c, g.Status.State)
		}
		return nil
	})
	var d appsv1.Deployment
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(second), &d); !apierrors.IsNotFound(err) {
		t.Fatalf("a Deployment was made for a model no node can hold: %v", err)
	}
	if err := k8s.Delete(ctx, get(t, first)); err != nil {
		t.Fatal(err)
	}
	running(t, second, 1, 120*time.Second)
}

// A bring-your-own model through a Model resource, and a predictive one inline.
func TestBringYourOwnAndPredictive(t *testing.T) {
	ctx := context.Background()
	ensureNamespace(t, "e2e-byo")
	model := &kilnv1.Model{ObjectMeta: metav1.ObjectMeta{Name: "tuned", Namespace: "e2e-byo"},
		Spec: kilnv1.ModelSpec{Source: kilnv1.ModelSourceSpec{Custom: &kilnv1.CustomModel{
			Registry: "registry.example.com", Repository: "models/tuned", Tag: "v2"}},
			Capabilities: &kilnv1.ModelCapabilities{Task: "chat-completion", ContextLength: ptr.To(int64(4096))}}}
	if err := k8s.Create(ctx, model); err != nil {
		t.Fatal(err)
	}
	byo := apply(t, "e2e-byo", `
metadata: {name: tuned}
spec:
  model: {ref: tuned}
  workloadType: generative
  compute: cpu
`)
	got := running(t, byo, 1, 90*time.Second)
	if got.Status.ResolvedModel.URI != "oci://registry.example.com/models/tuned:v2" || got.Status.Runtime != "onnx-genai" {
		t.Fatalf("%+v", got.Status.ResolvedModel)
	}
	pred := apply(t, "e2e-byo", `
metadata: {name: iris}
spec:
  model: {custom: {registry: registry.example.com, repository: models/iris, tag: "1"}}
  workloadType: predictive
  compute: cpu
  port: 5000
`)
	running(t, pred, 1, 90*time.Second)
	p := pods(t, pred)[0]
	if args := strings.Join(p.Spec.Containers[0].Args, " "); !strings.Contains(args, "--workload predictive") ||
		!strings.Contains(args, "--port 5000") {
		t.Fatalf("predictive pod args %s", args)
	}
	var m kilnv1.Model
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(model), &m); err != nil || m.Status.Phase != kilnv1.PhaseAvailable ||
		!strings.HasPrefix(m.Status.CacheVolumeClaim, "kiln-model-") {
		t.Fatalf("Model status %+v %v", m.Status, err)
	}
}

// The API server refuses an invalid manifest with a message naming the field.
func TestInvalidManifestRefused(t *testing.T) {
	ensureNamespace(t, "e2e-invalid")
	md := &kilnv1.ModelDeployment{}
	_ = yaml.Unmarshal([]byte(`
metadata: {name: bad, namespace: e2e-invalid}
spec:
  model: {catalog: {name: qwen2.5-7b}}
  workloadType: generative
  compute: gpu
  resources: {limits: {cpu: "4"}}
`), md)
	err := k8s.Create(context.Background(), md)
	if err == nil || !strings.Contains(err.Error(), "spec.resources.limits.gpu") {
		t.Fatalf("want a refusal naming spec.resources.limits.gpu, got %v", err)
	}
	// The chart's admission policy refuses a catalog model without a CPU variant on compute cpu
	// (Kiln's vllm runtime runs on CPUs, but not a model the catalog offers only for GPUs).
	onCPU := &kilnv1.ModelDeployment{}
	_ = yaml.Unmarshal([]byte(`
metadata: {name: mistral-cpu, namespace: e2e-invalid}
spec:
  model: {catalog: {name: Mistral-7B}}
  workloadType: generative
  compute: cpu
  runtime: vllm
`), onCPU)
	err = k8s.Create(context.Background(), onCPU)
	if err == nil || !strings.Contains(err.Error(), "spec.compute: catalog model Mistral-7B runs only on GPUs") {
		t.Fatalf("want the admission policy's refusal, got %v", err)
	}
	onCPU.Spec.Model.Catalog.Name = "qwen2.5-7b" // has a CPU variant: accepted
	onCPU.ResourceVersion = ""
	if err := k8s.Create(context.Background(), onCPU, client.DryRunAll); err != nil {
		t.Fatalf("a model with a CPU variant on compute cpu: %v", err)
	}
}

// Faults: the operator killed in the middle of reconciling a batch of deployments and started
// again, the API server restarted, conflicting writers of the same spec, a node deleted under
// running pods. The operator converges with one of each object per deployment and no orphans.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	ns := "e2e-faults"
	var mds []*kilnv1.ModelDeployment
	for i := 0; i < 8; i++ {
		mds = append(mds, apply(t, ns, fmt.Sprintf(`
metadata: {name: smol-%d}
spec:
  model: {catalog: {name: smollm2-135m}}
  workloadType: generative
  compute: cpu
`, i)))
	}
	// Kill the operator as soon as it has started on them (one object of theirs exists).
	eventually(t, 30*time.Second, "the operator at work", func() error {
		if owned(t, ns)["PersistentVolumeClaim"] == 0 && owned(t, ns)["Job"] == 0 {
			return fmt.Errorf("nothing made yet")
		}
		return nil
	})
	operator.kill()
	if err := operator.start(); err != nil {
		t.Fatal(err)
	}
	for _, md := range mds {
		running(t, md, 1, 120*time.Second)
	}
	// One of each per deployment, one shared cache (its pull Job deleted once it finished).
	want := map[string]int{"Deployment": 8, "Service": 8, "Secret": 8, "PersistentVolumeClaim": 1,
		"ConfigMap": 1, "Pod": 8}
	eventually(t, 30*time.Second, "one of each object per deployment", func() error {
		if got := owned(t, ns); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("after the restart: %v, want %v", got, want)
		}
		return nil
	})

	// The API server restarts; existing deployments stay Running and a new one is served.
	if err := cl.restart("kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	if err := cl.waitHealthy(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	late := apply(t, ns, `
metadata: {name: after-restart}
spec:
  model: {catalog: {name: smollm2-135m}}
  workloadType: generative
  compute: cpu
`)
	running(t, late, 1, 120*time.Second)

	// Two writers race on one spec's replicas; the Deployment ends at the last value written.
	target := mds[0]
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				for {
					cur := get(t, target)
					cur.Spec.Replicas = ptr.To(int32(1 + (i+w)%3))
					if err := k8s.Update(ctx, cur); err == nil || !apierrors.IsConflict(err) {
						break
					}
				}
			}
		}(w)
	}
	wg.Wait()
	final := get(t, target)
	running(t, target, *final.Spec.Replicas, 90*time.Second)
	var d appsv1.Deployment
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(target), &d); err != nil || *d.Spec.Replicas != *final.Spec.Replicas {
		t.Fatalf("Deployment replicas %v, spec %d (%v)", d.Spec.Replicas, *final.Spec.Replicas, err)
	}

	// A node goes away under running pods: they are rescheduled on the other CPU node.
	victim := pods(t, mds[1])[0].Spec.NodeName
	if err := k8s.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: victim}}); err != nil {
		t.Fatal(err)
	}
	for _, md := range append(mds[1:], late) {
		eventually(t, 180*time.Second, md.Name+" back on the remaining node", func() error {
			ps := pods(t, md)
			for _, p := range ps {
				if p.Spec.NodeName == victim {
					return fmt.Errorf("pod %s still on %s", p.Name, victim)
				}
			}
			return nil
		})
		running(t, md, 1, 120*time.Second)
	}
	got := owned(t, ns)
	if got["Deployment"] != 9 || got["Service"] != 9 || got["Secret"] != 9 || got["PersistentVolumeClaim"] != 1 {
		t.Fatalf("after the node loss: %v", got)
	}
}
