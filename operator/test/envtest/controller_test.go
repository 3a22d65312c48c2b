package envtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
	"kiln.dev/operator/internal/controller"
)

// A catalog model on CPU: resolved from the catalog ConfigMap, sized by kiln plan for the pod's
// memory, cached by a pull Job, served by a Deployment whose command line carries the plan,
// behind a Service, with an API-key Secret; Running once its pods are ready; scaled; a spec
// change rolls the pods.
func TestCatalogModelOnCPU(t *testing.T) {
	ctx := context.Background()
	md := newDeployment(t, "cpu-catalog", `
metadata: {name: smollm2}
spec:
  model: {catalog: {name: SmolLM2-135M}}
  workloadType: generative
  compute: cpu
`)
	got := waitCondition(t, md, controller.CondCached, metav1.ConditionFalse, "Pulling")
	if got.Status.State != kilnv1.StateCreating || got.Status.Runtime != "vllm" {
		t.Fatalf("state %q runtime %q, want Creating on vllm", got.Status.State, got.Status.Runtime)
	}
	if r := got.Status.ResolvedModel; r == nil || r.Name != "smollm2-135m-instruct-vllm:1" || r.Image != serverImage {
		t.Fatalf("resolvedModel %+v", r)
	}
	lim := got.Status.Limits
	if lim == nil || lim.MaxModelLen <= 0 || lim.MaxModelLen > 8192 || lim.MaxNumSeqs != 16 ||
		!strings.HasPrefix(lim.Device, "cpu:") {
		t.Fatalf("planner limits %+v", lim)
	}

	job := cacheJob(t, md)
	c := job.Spec.Template.Spec.Containers[0]
	if strings.Join(c.Args, " ") != "model pull smollm2-135m" || c.Image != serverImage {
		t.Fatalf("pull Job runs %s %v", c.Image, c.Args)
	}
	var pvc corev1.PersistentVolumeClaim
	claim := job.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: md.Namespace, Name: claim}, &pvc); err != nil {
		t.Fatal(err)
	}
	if size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; size.Cmp(resource.MustParse("100Gi")) != 0 {
		t.Fatalf("cache volume of %s, want the default 100Gi", size.String())
	}
	if owners := pvc.GetOwnerReferences(); len(owners) != 1 || owners[0].Name != md.Name {
		t.Fatalf("cache volume owners %+v", owners)
	}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: md.Namespace, Name: md.Name}, &appsv1.Deployment{}); err == nil {
		t.Fatal("the Deployment was made before the model was cached")
	}
	finishJob(t, job)

	d := serverDeployment(t, md)
	args := argsOf(d)
	if args[0] != "serve" || args[1] != "smollm2-135m" || argValue(args, "--runtime") != "vllm" ||
		argValue(args, "--port") != "8080" || argValue(args, "--max-model-len") != fmt.Sprint(lim.MaxModelLen) ||
		argValue(args, "--kv-cache-memory") != fmt.Sprint(lim.KvCacheBytes) || argValue(args, "--threads") != "1" {
		t.Fatalf("server args %v, plan %+v", args, lim)
	}
	ctr := d.Spec.Template.Spec.Containers[0]
	if mem := ctr.Resources.Limits[corev1.ResourceMemory]; mem.Cmp(resource.MustParse("1Gi")) < 0 {
		t.Fatalf("memory limit %s", mem.String())
	}
	envs := map[string]corev1.EnvVar{}
	for _, e := range ctr.Env {
		envs[e.Name] = e
	}
	if envs["KILN_HOME"].Value != controller.KilnHome || envs["KILN_API_KEY_PRIMARY"].ValueFrom == nil ||
		envs["KILN_API_KEY_PRIMARY"].ValueFrom.SecretKeyRef.Name != "smollm2-api-keys" ||
		envs["KILN_API_KEY"].Value != "$(KILN_API_KEY_PRIMARY),$(KILN_API_KEY_SECONDARY)" {
		t.Fatalf("server env %+v", ctr.Env)
	}
	if !metav1.IsControlledBy(d, got) {
		t.Fatal("the Deployment is not controlled by the ModelDeployment")
	}
	var secret corev1.Secret
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: md.Namespace, Name: "smollm2-api-keys"}, &secret); err != nil ||
		len(secret.Data["primary-key"]) < 20 {
		t.Fatalf("API-key Secret: %v %v", err, secret.Data)
	}
	var svc corev1.Service
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: md.Namespace, Name: md.Name}, &svc); err != nil ||
		svc.Spec.Ports[0].Port != 8080 || svc.Spec.Selector[controller.LabelDeployment] != md.Name {
		t.Fatalf("Service %v %+v", err, svc.Spec)
	}

	markReady(t, d, 1)
	got = waitState(t, md, kilnv1.StateRunning)
	if !got.Status.DeploymentReady || !got.Status.ServiceReady || got.Status.Replicas.Ready != 1 ||
		got.Status.InternalEndpoint != "http://smollm2.cpu-catalog.svc.cluster.local:8080" ||
		got.Status.Authentication == nil || got.Status.Authentication.KeysSecretName != "smollm2-api-keys" {
		t.Fatalf("status %+v", got.Status)
	}

	// Scale through the scale subresource, as kubectl scale and HPA do.
	scale := &autoscalingScale{}
	if err := k8s.SubResource("scale").Get(ctx, got, scale.obj()); err != nil {
		t.Fatal(err)
	}
	scale.Scale.Spec.Replicas = 3
	if err := k8s.SubResource("scale").Update(ctx, got, client.WithSubResourceBody(scale.obj())); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the Deployment scaled to 3", func() error {
		d = serverDeployment(t, md)
		if *d.Spec.Replicas != 3 {
			return fmt.Errorf("replicas %d", *d.Spec.Replicas)
		}
		return nil
	})
	markReady(t, d, 1)
	waitState(t, md, kilnv1.StateUpdating)
	markReady(t, d, 3)
	got = waitState(t, md, kilnv1.StateRunning)
	if got.Status.Replicas.Desired != 3 || got.Status.Replicas.Ready != 3 {
		t.Fatalf("replicas %+v", got.Status.Replicas)
	}

	// A spec change rolls the pods: the template changes.
	before := d.Spec.Template.Spec.Containers[0].Env
	got.Spec.Env = []corev1.EnvVar{{Name: "KILN_LOG_LEVEL", Value: "debug"}}
	if err := k8s.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the new env in the pod template", func() error {
		d = serverDeployment(t, md)
		if len(d.Spec.Template.Spec.Containers[0].Env) != len(before)+1 {
			return fmt.Errorf("env %+v", d.Spec.Template.Spec.Containers[0].Env)
		}
		return nil
	})
}

// A GPU model that no node can hold waits with ResourcesAvailable=False and no pods; when a GPU
// node joins, it is planned for that node's GPU memory and deployed there.
func TestGPUModelWaitsForGPUs(t *testing.T) {
	md := newDeployment(t, "gpu-catalog", `
metadata: {name: qwen7b}
spec:
  model: {catalog: {name: qwen2.5-7b}}
  workloadType: generative
  compute: gpu
  runtime: vllm
  resources: {limits: {gpu: 2}}
  vllm:
    preferences: {tensor_parallel_size: 2, kv_cache_dtype: fp8_e4m3, enforce_eager: true}
`)
	got := waitCondition(t, md, controller.CondResourcesAvailable, metav1.ConditionFalse, "InsufficientGPU")
	if got.Status.State != kilnv1.StatePending || !strings.Contains(got.Status.Message, "2 GPU") {
		t.Fatalf("state %q: %s", got.Status.State, got.Status.Message)
	}
	// A node with one GPU is not enough; a tainted one with two is, since GPU pods tolerate the
	// nvidia.com/gpu taint.
	addNode(t, "gpu-small", 1, "81559", nil)
	eventually(t, 30*time.Second, "a look at the one-GPU node", func() error {
		got = getDeployment(t, md)
		if m := conditionMessage(got, controller.CondResourcesAvailable); !strings.Contains(m, "1 GPU node(s), 1 GPU(s) in all") {
			return fmt.Errorf("condition: %s", m)
		}
		return nil
	})
	addNode(t, "gpu-big", 2, "143771", []corev1.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}})
	got = waitCondition(t, md, controller.CondResourcesAvailable, metav1.ConditionTrue, "Sized")
	if l := got.Status.Limits; l == nil || l.Device != "gpu:143771" || l.KvCacheDtype != "fp8_e4m3" {
		t.Fatalf("plan %+v", got.Status.Limits)
	}
	if !strings.Contains(conditionMessage(got, controller.CondResourcesAvailable), "not used by Kiln: enforce_eager") {
		t.Fatalf("the condition should name the ignored preference: %s", conditionMessage(got, controller.CondResourcesAvailable))
	}
	finishJob(t, cacheJob(t, md))
	d := serverDeployment(t, md)
	pod := d.Spec.Template.Spec
	if q := pod.Containers[0].Resources.Limits[controller.GPUResource]; q.Value() != 2 {
		t.Fatalf("GPU limit %s", q.String())
	}
	tolerated := false
	for _, tol := range pod.Tolerations {
		tolerated = tolerated || tol.Key == "nvidia.com/gpu"
	}
	if !tolerated || argValue(pod.Containers[0].Args, "--device") != "cuda" ||
		argValue(pod.Containers[0].Args, "--kv-cache-dtype") != "fp8_e4m3" {
		t.Fatalf("pod %+v", pod)
	}
}

// A bring-your-own model through a Model: Pending while its registry Secret is missing, the
// deployment waits for it; then Available, and the cache belongs to the Model.
func TestModelRefWaitsForModel(t *testing.T) {
	ctx := context.Background()
	ensureNamespace(t, "byo")
	model := &kilnv1.Model{
		ObjectMeta: metav1.ObjectMeta{Name: "my-model", Namespace: "byo"},
		Spec: kilnv1.ModelSpec{Source: kilnv1.ModelSourceSpec{Type: "custom", Custom: &kilnv1.CustomModel{
			Registry: "registry.example.com", Repository: "models/my-model", Tag: "v1",
			Credentials: &kilnv1.RegistryCredentials{SecretRef: kilnv1.CredentialsSecretRef{Name: "regcred"}},
		}}},
	}
	if err := k8s.Create(ctx, model); err != nil {
		t.Fatal(err)
	}
	md := newDeployment(t, "byo", `
metadata: {name: mine}
spec:
  model: {ref: my-model}
  workloadType: generative
  compute: cpu
`)
	waitCondition(t, md, controller.CondModelResolved, metav1.ConditionFalse, "ModelNotAvailable")
	// Once the Model controller has looked, the deployment's message says what the Model waits for.
	eventually(t, 30*time.Second, "the Model's reason in the deployment's message", func() error {
		if got := getDeployment(t, md); !strings.Contains(got.Status.Message, `Secret "regcred"`) {
			return fmt.Errorf("message %q", got.Status.Message)
		}
		return nil
	})
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "byo"},
		StringData: map[string]string{"username": "u", "password": "p"}}); err != nil {
		t.Fatal(err)
	}
	got := waitCondition(t, md, controller.CondModelResolved, metav1.ConditionTrue, "Resolved")
	if got.Status.ResolvedModel.URI != "oci://registry.example.com/models/my-model:v1" || got.Status.Runtime != "onnx-genai" {
		t.Fatalf("resolved %+v runtime %s", got.Status.ResolvedModel, got.Status.Runtime)
	}
	job := cacheJob(t, md)
	env := map[string]corev1.EnvVar{}
	for _, e := range job.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e
	}
	if env["KILN_OCI_USERNAME"].ValueFrom == nil || env["KILN_OCI_USERNAME"].ValueFrom.SecretKeyRef.Name != "regcred" {
		t.Fatalf("pull Job env %+v", env)
	}
	var pvc corev1.PersistentVolumeClaim
	claim := job.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: "byo", Name: claim}, &pvc); err != nil {
		t.Fatal(err)
	}
	if o := pvc.GetOwnerReferences(); len(o) != 1 || o[0].Kind != "Model" || o[0].Name != "my-model" {
		t.Fatalf("the cache should belong to the Model: %+v", o)
	}
	failJob(t, job, "Job has reached the specified backoff limit")
	got = waitState(t, md, kilnv1.StateError)
	if !strings.Contains(got.Status.Message, "kubectl logs job/") {
		t.Fatalf("message %q", got.Status.Message)
	}
}

// A predictive bring-your-own model runs the predictive server; a GPU-only catalog entry on
// CPU is an Error that says why; exposure none makes no Service.
func TestPredictiveAndRefusals(t *testing.T) {
	ctx := context.Background()
	md := newDeployment(t, "predictive", `
metadata: {name: iris}
spec:
  model: {custom: {registry: registry.example.com, repository: models/iris, tag: "1"}}
  workloadType: predictive
  compute: cpu
  port: 5000
  endpoint: {exposure: none}
`)
	finishJob(t, cacheJob(t, md))
	d := serverDeployment(t, md)
	if args := argsOf(d); argValue(args, "--workload") != "predictive" || argValue(args, "--port") != "5000" ||
		hasArg(args, "--max-model-len") {
		t.Fatalf("args %v", args)
	}
	markReady(t, d, 1)
	got := waitState(t, md, kilnv1.StateRunning)
	if got.Status.ServiceReady || got.Status.InternalEndpoint != "" {
		t.Fatalf("exposure none made a Service: %+v", got.Status)
	}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: "predictive", Name: "iris"}, &corev1.Service{}); err == nil {
		t.Fatal("a Service exists for exposure none")
	}

	gpuOnly := newDeployment(t, "predictive", `
metadata: {name: mistral-on-cpu}
spec:
  model: {catalog: {name: mistral-7b}}
  workloadType: generative
  compute: cpu
  runtime: vllm
`)
	got = waitState(t, gpuOnly, kilnv1.StateError)
	if !strings.Contains(got.Status.Message, "has no cpu variant") {
		t.Fatalf("message %q", got.Status.Message)
	}
	unknown := newDeployment(t, "predictive", `
metadata: {name: nope}
spec:
  model: {catalog: {name: no-such-model}}
  workloadType: generative
  compute: cpu
`)
	got = waitState(t, unknown, kilnv1.StateError)
	if !strings.Contains(got.Status.Message, `no catalog model "no-such-model"`) ||
		!strings.Contains(got.Status.Message, "smollm2-135m") {
		t.Fatalf("message %q", got.Status.Message)
	}
}

func conditionMessage(md *kilnv1.ModelDeployment, typ string) string {
	for _, c := range md.Status.Conditions {
		if c.Type == typ {
			return c.Message
		}
	}
	return ""
}

// addNode registers a Ready node with `gpus` GPUs of `memMiB` each.
func addNode(t *testing.T, name string, gpus int64, memMiB string, taints []corev1.Taint) {
	t.Helper()
	ctx := context.Background()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			controller.GPUMemoryLabel: memMiB, controller.GPUProductLabel: "NVIDIA-H100-80GB-HBM3"}},
		Spec: corev1.NodeSpec{Taints: taints},
	}
	if err := k8s.Create(ctx, node); apierrors.IsAlreadyExists(err) {
		return // made by an earlier test
	} else if err != nil {
		t.Fatal(err)
	}
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
		controller.GPUResource: *resource.NewQuantity(gpus, resource.DecimalSI), corev1.ResourcePods: resource.MustParse("110")}
	node.Status = corev1.NodeStatus{Capacity: res, Allocatable: res, Conditions: []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}
	if err := k8s.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	// The API server taints a new node not-ready; the node lifecycle controller (not running in
	// envtest) lifts the taint once the node reports Ready. Do what it does.
	node.Spec.Taints = taints
	if err := k8s.Update(ctx, node); err != nil {
		t.Fatal(err)
	}
}

// endpoint.exposure external makes an HTTPRoute on the configured Gateway (path prefix rewritten,
// host, gatewayAnnotations; the deprecated endpoint.annotations ignored, as Foundry does); the
// endpoint is ready once the gateway accepts the route; exposure internal removes it.
func TestExternalExposure(t *testing.T) {
	ctx := context.Background()
	md := newDeployment(t, "exposure", `
metadata: {name: phi}
spec:
  model: {custom: {registry: registry.example.com, repository: models/phi, tag: "1"}}
  workloadType: generative
  compute: cpu
  endpoint:
    exposure: external
    host: phi.example.com
    path: /phi-4
    gatewayAnnotations: {networking.istio.io/timeout: "600s"}
    annotations: {legacy.example.com/ignored: "yes"}
`)
	finishJob(t, cacheJob(t, md))
	markReady(t, serverDeployment(t, md), 1)
	route := &unstructured.Unstructured{}
	route.SetGroupVersionKind(controller.HTTPRouteKind)
	eventually(t, 30*time.Second, "the HTTPRoute", func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: "exposure", Name: "phi"}, route)
	})
	spec := route.Object["spec"].(map[string]any)
	parent := spec["parentRefs"].([]any)[0].(map[string]any)
	rule := spec["rules"].([]any)[0].(map[string]any)
	match := rule["matches"].([]any)[0].(map[string]any)["path"].(map[string]any)
	rewrite := rule["filters"].([]any)[0].(map[string]any)["urlRewrite"].(map[string]any)["path"].(map[string]any)
	backend := rule["backendRefs"].([]any)[0].(map[string]any)
	if parent["name"] != "inference-gateway" || parent["namespace"] != "gateway-system" ||
		match["type"] != "PathPrefix" || match["value"] != "/phi-4" || rewrite["replacePrefixMatch"] != "/" ||
		backend["name"] != "phi" || fmt.Sprint(backend["port"]) != "8080" ||
		spec["hostnames"].([]any)[0] != "phi.example.com" {
		t.Fatalf("HTTPRoute spec %v", spec)
	}
	if a := route.GetAnnotations(); a["networking.istio.io/timeout"] != "600s" || a["legacy.example.com/ignored"] != "" {
		t.Fatalf("annotations %v", a)
	}
	got := waitState(t, md, kilnv1.StateRunning)
	if got.Status.ExternalEndpoint != "http://phi.example.com/phi-4" || got.Status.EndpointReady {
		t.Fatalf("before the gateway accepts it: %+v", got.Status)
	}
	// The gateway accepts the route (envtest runs no gateway controller: the test writes its
	// status as one would).
	_ = unstructured.SetNestedSlice(route.Object, []any{map[string]any{
		"parentRef":      map[string]any{"name": "inference-gateway", "namespace": "gateway-system"},
		"controllerName": "example.com/gateway-controller",
		"conditions": []any{map[string]any{"type": "Accepted", "status": "True", "reason": "Accepted",
			"message": "", "lastTransitionTime": metav1.Now().UTC().Format(time.RFC3339), "observedGeneration": route.GetGeneration()}},
	}}, "status", "parents")
	if err := k8s.Status().Update(ctx, route); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "endpointReady", func() error {
		if g := getDeployment(t, md); !g.Status.EndpointReady || !g.Status.HTTPRouteReady {
			return fmt.Errorf("%+v", g.Status)
		}
		return nil
	})
	got = getDeployment(t, md)
	got.Spec.Endpoint.Exposure = "internal"
	if err := k8s.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the HTTPRoute removed", func() error {
		err := k8s.Get(ctx, types.NamespacedName{Namespace: "exposure", Name: "phi"}, route)
		if err == nil {
			return fmt.Errorf("still there")
		}
		return client.IgnoreNotFound(err)
	})
}

// GPU memory against the planner's need: a model that fits only the larger GPUs is planned for
// them and kept off the smaller ones by node affinity; one that fits none gets
// ResourcesAvailable=False with the planner's reason. The nodes: an 80 GB one with one GPU and
// a 140 GB one with two (TestGPUModelWaitsForGPUs's, made here when it did not run).
func TestGPUMemoryAgainstThePlan(t *testing.T) {
	addNode(t, "gpu-small", 1, "81559", nil)
	addNode(t, "gpu-big", 2, "143771", []corev1.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}})
	md := newDeployment(t, "gpu-memory", `
metadata: {name: qwen-tight}
spec:
  model: {catalog: {name: qwen2.5-7b}}
  workloadType: generative
  compute: gpu
  resources: {limits: {gpu: 1}}
  vllm:
    preferences: {gpu_memory_utilization: 0.12}
`)
	got := waitCondition(t, md, controller.CondResourcesAvailable, metav1.ConditionTrue, "Sized")
	if got.Status.Limits == nil || got.Status.Limits.Device != "gpu:143771" {
		t.Fatalf("plan %+v: 12%% of 80 GB cannot hold 15 GB of weights, 12%% of 140 GB can", got.Status.Limits)
	}
	finishJob(t, cacheJob(t, md))
	d := serverDeployment(t, md)
	req := d.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]
	if req.Key != controller.GPUMemoryLabel || req.Operator != corev1.NodeSelectorOpGt || req.Values[0] != "143770" {
		t.Fatalf("node affinity %+v", req)
	}

	none := newDeployment(t, "gpu-memory", `
metadata: {name: qwen-none}
spec:
  model: {catalog: {name: qwen2.5-7b}}
  workloadType: generative
  compute: gpu
  resources: {limits: {gpu: 1}}
  vllm:
    preferences: {gpu_memory_utilization: 0.05}
`)
	got = waitCondition(t, none, controller.CondResourcesAvailable, metav1.ConditionFalse, "PlanDoesNotFit")
	if msg := conditionMessage(got, controller.CondResourcesAvailable); !strings.Contains(msg, "81559 MiB, 143771 MiB") ||
		!strings.Contains(msg, "does not fit") {
		t.Fatalf("message %q", msg)
	}
}
