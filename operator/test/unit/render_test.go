package unit

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
	"kiln.dev/operator/internal/controller"
	"kiln.dev/operator/internal/planner"
)

func deployment(t *testing.T, manifest string) *kilnv1.ModelDeployment {
	t.Helper()
	md := &kilnv1.ModelDeployment{}
	if err := yaml.UnmarshalStrict([]byte(manifest), md); err != nil {
		t.Fatal(err)
	}
	md.Namespace = "ns"
	return md
}

var opts = controller.Options{ServerImage: "kiln:1", APIKeys: true, GatewayName: "gw"}

func TestGPUPodsTolerateTheGPUTaintAndAvoidSmallGPUs(t *testing.T) {
	md := deployment(t, `
metadata: {name: big}
spec: {model: {catalog: {name: m}}, workloadType: generative, compute: gpu, runtime: vllm}
`)
	r := &controller.Resolved{Name: "m:1", URI: "hf://org/m", ServedName: "m", Runtime: "vllm"}
	s := &controller.Sizing{
		Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1"), corev1.ResourceCPU: resource.MustParse("2500m")},
		Plan: &planner.Plan{ServeArgs: []string{"--max-model-len", "4096", "--device", "cuda"}}, MinGPUMemoryMiB: 81559,
	}
	d := controller.RenderDeployment(md, r, s, &opts)
	pod := d.Spec.Template.Spec
	args := strings.Join(pod.Containers[0].Args, " ")
	if args != "serve m --host 0.0.0.0 --port 8080 --runtime vllm --threads 3 --max-model-len 4096 --device cuda" {
		t.Fatalf("args %q", args)
	}
	if tol := pod.Tolerations; len(tol) != 1 || tol[0].Key != "nvidia.com/gpu" || tol[0].Operator != corev1.TolerationOpExists {
		t.Fatalf("tolerations %+v", tol)
	}
	req := pod.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]
	if req.Key != "nvidia.com/gpu.memory" || req.Operator != corev1.NodeSelectorOpGt || req.Values[0] != "81558" {
		t.Fatalf("node affinity %+v", req)
	}
	if *d.Spec.Replicas != 1 || d.Spec.Selector.MatchLabels["kiln.dev/model-deployment"] != "big" {
		t.Fatalf("deployment %+v", d.Spec)
	}
}

func TestCPUPodsPreferNodesWithoutGPUs(t *testing.T) {
	md := deployment(t, `
metadata: {name: small}
spec:
  model: {custom: {registry: r.example.com, repository: m}}
  workloadType: predictive
  compute: cpu
  replicas: 2
  nodeSelector: {pool: cpu}
  env: [{name: A, value: b}]
`)
	r := &controller.Resolved{Name: "r.example.com/m:latest", URI: "oci://r.example.com/m:latest", ServedName: "small", Runtime: "predictive"}
	d := controller.RenderDeployment(md, r, &controller.Sizing{Limits: corev1.ResourceList{}}, &opts)
	pod := d.Spec.Template.Spec
	pref := pod.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].Preference.MatchExpressions[0]
	if pref.Key != "nvidia.com/gpu.present" || pref.Operator != corev1.NodeSelectorOpNotIn {
		t.Fatalf("preference %+v", pref)
	}
	if pod.NodeSelector["pool"] != "cpu" || *d.Spec.Replicas != 2 {
		t.Fatalf("pod %+v", pod)
	}
	args := strings.Join(pod.Containers[0].Args, " ")
	if !strings.Contains(args, "--workload predictive") || strings.Contains(args, "--runtime") {
		t.Fatalf("args %q", args)
	}
	env := pod.Containers[0].Env
	if env[len(env)-1].Name != "A" || env[2].Name != "KILN_API_KEY_PRIMARY" || env[2].ValueFrom.SecretKeyRef.Name != "small-api-keys" ||
		env[3].ValueFrom.SecretKeyRef.Key != "secondary-key" || env[4].Value != "$(KILN_API_KEY_PRIMARY),$(KILN_API_KEY_SECONDARY)" {
		t.Fatalf("env %+v", env)
	}
}

func TestExposureAndTheDeprecatedEndpointFields(t *testing.T) {
	for manifest, want := range map[string]string{
		`{metadata: {name: a}, spec: {model: {ref: m}, workloadType: generative, compute: cpu}}`:                                              "internal",
		`{metadata: {name: a}, spec: {model: {ref: m}, workloadType: generative, compute: cpu, endpoint: {enabled: true}}}`:                   "internal",
		`{metadata: {name: a}, spec: {model: {ref: m}, workloadType: generative, compute: cpu, endpoint: {enabled: true, exposure: none}}}`:   "none",
		`{metadata: {name: a}, spec: {model: {ref: m}, workloadType: generative, compute: cpu, endpoint: {exposure: external}}}`:              "external",
		`{metadata: {name: a}, spec: {model: {ref: m}, workloadType: generative, compute: cpu, endpoint: {enabled: false, host: x.example}}}`: "internal",
	} {
		if got := controller.Exposure(deployment(t, manifest)); got != want {
			t.Errorf("%s: %s, want %s", manifest, got, want)
		}
	}
	md := deployment(t, `{metadata: {name: a}, spec: {model: {ref: m}, workloadType: generative, compute: cpu,
	  endpoint: {exposure: external, pathType: Exact, annotations: {old: x}, ingressClassName: nginx}}}`)
	route := controller.RenderHTTPRoute(md, &opts)
	match, _, _ := unstructured.NestedSlice(route.Object, "spec", "rules")
	rule := match[0].(map[string]any)
	path := rule["matches"].([]any)[0].(map[string]any)["path"].(map[string]any)
	if path["type"] != "Exact" || path["value"] != "/a" || rule["filters"] != nil || len(route.GetAnnotations()) != 0 {
		t.Fatalf("route %v annotations %v", route.Object, route.GetAnnotations())
	}
}

func TestCacheClaimSizeAndPullJob(t *testing.T) {
	md := deployment(t, `
metadata: {name: c}
spec:
  model: {custom: {registry: r.example.com, repository: m, tag: v1, credentials: {secretRef: {name: creds}}}}
  workloadType: generative
  compute: cpu
  vllm: {modelCacheStorageGi: 7}
`)
	r := &controller.Resolved{Name: "r.example.com/m:v1", URI: "oci://r.example.com/m:v1", ServedName: "c",
		Runtime: "onnx-genai", Credentials: md.Spec.Model.Custom.Credentials}
	pvc := controller.RenderCacheClaim(md, r, &controller.Options{CacheStorageClass: "fast", CacheAccessMode: corev1.ReadWriteMany})
	if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.Cmp(resource.MustParse("7Gi")) != 0 ||
		*pvc.Spec.StorageClassName != "fast" || pvc.Spec.AccessModes[0] != corev1.ReadWriteMany {
		t.Fatalf("claim %+v", pvc.Spec)
	}
	job := controller.RenderPullJob(md, r, &opts)
	c := job.Spec.Template.Spec.Containers[0]
	if strings.Join(c.Args, " ") != "model pull c" || c.Env[2].ValueFrom.SecretKeyRef.Key != "username" ||
		c.Env[3].ValueFrom.SecretKeyRef.Key != "password" || *job.Spec.TTLSecondsAfterFinished != 3600 {
		t.Fatalf("job %+v", job.Spec)
	}
	if !strings.HasPrefix(pvc.Name, "kiln-model-") || job.Name != pvc.Name+"-pull" {
		t.Fatalf("names %s %s", pvc.Name, job.Name)
	}
}
