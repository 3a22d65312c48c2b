package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
	"kiln.dev/operator/internal/planner"
)

// Labels and annotations the operator puts on what it makes.
const (
	LabelName       = "app.kubernetes.io/name"
	LabelInstance   = "app.kubernetes.io/instance"
	LabelManagedBy  = "app.kubernetes.io/managed-by"
	LabelDeployment = "kiln.dev/model-deployment"
	LabelModelCache = "kiln.dev/model-cache"
	// AnnotationSpecHash is the hash of what the operator rendered; an object whose hash matches
	// is left alone, so a reconcile with nothing changed writes nothing.
	AnnotationSpecHash = "kiln.dev/spec-hash"
	// AnnotationCached on a cache volume claim is the URI its pull Job finished fetching.
	AnnotationCached = "kiln.dev/cached"
	ManagerName      = "kiln-operator"

	// GPUResource is the extended resource GPU pods ask for.
	GPUResource = corev1.ResourceName("nvidia.com/gpu")
	// GPUMemoryLabel is the per-GPU memory in MiB that GPU feature discovery puts on nodes.
	GPUMemoryLabel = "nvidia.com/gpu.memory"
	// GPUPresentLabel marks GPU nodes (GPU feature discovery).
	GPUPresentLabel = "nvidia.com/gpu.present"
	// GPUProductLabel names the GPU model.
	GPUProductLabel = "nvidia.com/gpu.product"

	// KilnHome is where the model cache volume is mounted in every pod.
	KilnHome = "/var/lib/kiln"
	// CatalogDir holds the model's catalog entry in every pod.
	CatalogDir = "/etc/kiln"
)

// Options are the operator's settings (flags, from the Helm chart's values).
type Options struct {
	// ServerImage runs `kiln serve` and `kiln model pull`.
	ServerImage     string
	ImagePullPolicy corev1.PullPolicy
	// CacheStorageClass and CacheAccessMode shape the model cache volumes ("" storage class:
	// the cluster's default).
	CacheStorageClass string
	CacheAccessMode   corev1.PersistentVolumeAccessMode
	// APIKeys turns API-key authentication on: each deployment gets a Secret of keys.
	APIKeys bool
	// GatewayName and GatewayNamespace are the HTTPRoutes' parent for external exposure.
	GatewayName      string
	GatewayNamespace string
	// DefaultGPUMemoryMiB plans GPU models when no node states its GPU memory.
	DefaultGPUMemoryMiB int64
}

func labelsFor(md *kilnv1.ModelDeployment) map[string]string {
	return map[string]string{
		LabelName: "kiln", LabelInstance: md.Name, LabelManagedBy: ManagerName,
		LabelDeployment: md.Name,
	}
}

func selectorFor(md *kilnv1.ModelDeployment) map[string]string {
	return map[string]string{LabelName: "kiln", LabelDeployment: md.Name}
}

// cacheName names the model cache's volume claim, ConfigMap and pull Job.
func cacheName(r *Resolved) string { return "kiln-model-" + r.CacheKey() }

func pullJobName(r *Resolved) string { return cacheName(r) + "-pull" }

// APIKeysSecretName names the deployment's API-key Secret.
func APIKeysSecretName(md *kilnv1.ModelDeployment) string { return md.Name + "-api-keys" }

// hashOf is a short hash of anything JSON can write.
func hashOf(v any) string {
	raw, _ := json.Marshal(v)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])[:16]
}

func replicas(md *kilnv1.ModelDeployment) int32 {
	if md.Spec.Replicas == nil {
		return 1
	}
	return *md.Spec.Replicas
}

func port(md *kilnv1.ModelDeployment) int32 {
	if md.Spec.Port == 0 {
		return 8080
	}
	return md.Spec.Port
}

// gpuCount is the GPUs each pod asks for: resources.limits.gpu, or one when compute is gpu and
// no limits are given (as Foundry's own examples leave them out); none with skipGpuResource.
func gpuCount(md *kilnv1.ModelDeployment) int64 {
	if md.Spec.Compute != "gpu" || md.Spec.SkipGpuResource {
		return 0
	}
	if md.Spec.Resources == nil || md.Spec.Resources.Limits == nil || md.Spec.Resources.Limits.GPU == nil {
		return 1
	}
	return int64(*md.Spec.Resources.Limits.GPU)
}

// Sizing is the pod's CPU and memory and the plan made for them.
type Sizing struct {
	Requests corev1.ResourceList
	Limits   corev1.ResourceList
	Plan     *planner.Plan
	// Device is what the plan was made for (cpu:<MiB>, gpu:<MiB>).
	Device string
	// MinGPUMemoryMiB: GPU pods go only to nodes whose GPUs have at least this much (0: any).
	MinGPUMemoryMiB int64
}

var (
	defaultRequestCPU = resource.MustParse("100m")
	defaultRequestMem = resource.MustParse("256Mi")
	defaultLimitCPU   = resource.MustParse("1000m")
	defaultLimitMem   = resource.MustParse("1Gi")
)

// baseResources are the spec's resources with Foundry's defaults filled in.
func baseResources(md *kilnv1.ModelDeployment) (corev1.ResourceList, corev1.ResourceList, bool) {
	req := corev1.ResourceList{corev1.ResourceCPU: defaultRequestCPU, corev1.ResourceMemory: defaultRequestMem}
	lim := corev1.ResourceList{corev1.ResourceCPU: defaultLimitCPU, corev1.ResourceMemory: defaultLimitMem}
	memoryGiven := false
	if r := md.Spec.Resources; r != nil {
		if r.Requests != nil {
			if r.Requests.CPU != nil {
				req[corev1.ResourceCPU] = *r.Requests.CPU
			}
			if r.Requests.Memory != nil {
				req[corev1.ResourceMemory] = *r.Requests.Memory
			}
		}
		if r.Limits != nil {
			if r.Limits.CPU != nil {
				lim[corev1.ResourceCPU] = *r.Limits.CPU
			}
			if r.Limits.Memory != nil {
				lim[corev1.ResourceMemory] = *r.Limits.Memory
				memoryGiven = true
			}
		}
	}
	if gpus := gpuCount(md); gpus > 0 {
		lim[GPUResource] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	return req, lim, memoryGiven
}

// roundUpMiB rounds bytes up to a multiple of 256 MiB, in MiB.
func roundUpMiB(bytes int64) int64 {
	const step = 256
	mib := (bytes + (1<<20 - 1)) >> 20
	return (mib + step - 1) / step * step
}

// threads is the server's thread count for a CPU limit: its cores, rounded up.
func threads(limit resource.Quantity) int64 {
	n := (limit.MilliValue() + 999) / 1000
	if n < 1 {
		return 1
	}
	return n
}

func envFor(md *kilnv1.ModelDeployment, opts *Options) []corev1.EnvVar {
	env := []corev1.EnvVar{
		{Name: "KILN_HOME", Value: KilnHome},
		{Name: "KILN_CATALOG", Value: CatalogDir + "/catalog.json"},
	}
	if opts.APIKeys {
		// Both keys of the Secret are accepted (kiln serve takes comma-separated keys), so either
		// can be rotated while clients use the other; the kubelet expands $(...) from the env above.
		fromSecret := func(name, key string) corev1.EnvVar {
			return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: APIKeysSecretName(md)}, Key: key}}}
		}
		env = append(env, fromSecret("KILN_API_KEY_PRIMARY", "primary-key"),
			fromSecret("KILN_API_KEY_SECONDARY", "secondary-key"),
			corev1.EnvVar{Name: "KILN_API_KEY", Value: "$(KILN_API_KEY_PRIMARY),$(KILN_API_KEY_SECONDARY)"})
	}
	return append(env, md.Spec.Env...)
}

// ServeArgs is the server's command line after `kiln`.
func ServeArgs(md *kilnv1.ModelDeployment, r *Resolved, s *Sizing) []string {
	args := []string{"serve", r.ServedName, "--host", "0.0.0.0", "--port", strconv.Itoa(int(port(md)))}
	if r.Runtime == "predictive" {
		args = append(args, "--workload", "predictive")
	} else {
		args = append(args, "--runtime", r.Runtime)
	}
	if cpu, ok := s.Limits[corev1.ResourceCPU]; ok {
		args = append(args, "--threads", strconv.FormatInt(threads(cpu), 10))
	}
	if s.Plan != nil {
		args = append(args, s.Plan.ServeArgs...)
	} else if md.Spec.Compute == "gpu" && r.Runtime != "predictive" {
		args = append(args, "--device", "cuda")
	}
	return args
}

func volumes(r *Resolved, readOnly bool) ([]corev1.Volume, []corev1.VolumeMount) {
	vols := []corev1.Volume{
		{Name: "model-cache", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
				ClaimName: cacheName(r), ReadOnly: readOnly}}},
		{Name: "catalog", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: cacheName(r)}}}},
	}
	mounts := []corev1.VolumeMount{
		{Name: "model-cache", MountPath: KilnHome, ReadOnly: readOnly},
		{Name: "catalog", MountPath: CatalogDir, ReadOnly: true},
	}
	return vols, mounts
}

// RenderDeployment is the Deployment of servers.
func RenderDeployment(md *kilnv1.ModelDeployment, r *Resolved, s *Sizing, opts *Options) *appsv1.Deployment {
	vols, mounts := volumes(r, true)
	p := port(md)
	container := corev1.Container{
		Name:            "kiln",
		Image:           opts.ServerImage,
		ImagePullPolicy: opts.ImagePullPolicy,
		Command:         []string{"kiln"},
		Args:            ServeArgs(md, r, s),
		Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: p, Protocol: corev1.ProtocolTCP}},
		Env:             envFor(md, opts),
		Resources:       corev1.ResourceRequirements{Requests: s.Requests, Limits: s.Limits},
		VolumeMounts:    mounts,
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/v2/health/ready", Port: intstr.FromString("http")}},
			PeriodSeconds: 5, FailureThreshold: 3,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/health", Port: intstr.FromString("http")}},
			InitialDelaySeconds: 10, PeriodSeconds: 10, FailureThreshold: 6,
		},
		StartupProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/health", Port: intstr.FromString("http")}},
			PeriodSeconds: 5, FailureThreshold: 120,
		},
	}
	pod := corev1.PodSpec{
		Containers:   []corev1.Container{container},
		Volumes:      vols,
		NodeSelector: md.Spec.NodeSelector,
		Tolerations:  append([]corev1.Toleration(nil), md.Spec.Tolerations...),
		Affinity:     md.Spec.Affinity.DeepCopy(),
	}
	if md.Spec.Compute == "cpu" {
		// Keep CPU models off GPU nodes while other nodes have room (preferred, so a cluster of
		// GPU nodes alone still runs them).
		addPreferredNodeTerm(&pod, corev1.NodeSelectorRequirement{
			Key: GPUPresentLabel, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"true"}})
	}
	if md.Spec.Compute == "gpu" {
		// GPU nodes carry the nvidia.com/gpu taint; GPU pods tolerate it.
		pod.Tolerations = append(pod.Tolerations, corev1.Toleration{
			Key: string(GPUResource), Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
		if s.MinGPUMemoryMiB > 0 {
			addRequiredNodeTerm(&pod, corev1.NodeSelectorRequirement{
				Key: GPUMemoryLabel, Operator: corev1.NodeSelectorOpGt,
				Values: []string{strconv.FormatInt(s.MinGPUMemoryMiB-1, 10)}})
		}
	}
	labels := labelsFor(md)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: md.Name, Namespace: md.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas(md)),
			Selector: &metav1.LabelSelector{MatchLabels: selectorFor(md)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       pod,
			},
		},
	}
	return d
}

func addPreferredNodeTerm(pod *corev1.PodSpec, req corev1.NodeSelectorRequirement) {
	if pod.Affinity == nil {
		pod.Affinity = &corev1.Affinity{}
	}
	if pod.Affinity.NodeAffinity == nil {
		pod.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := pod.Affinity.NodeAffinity
	na.PreferredDuringSchedulingIgnoredDuringExecution = append(na.PreferredDuringSchedulingIgnoredDuringExecution,
		corev1.PreferredSchedulingTerm{Weight: 100, Preference: corev1.NodeSelectorTerm{
			MatchExpressions: []corev1.NodeSelectorRequirement{req}}})
}

func addRequiredNodeTerm(pod *corev1.PodSpec, req corev1.NodeSelectorRequirement) {
	if pod.Affinity == nil {
		pod.Affinity = &corev1.Affinity{}
	}
	if pod.Affinity.NodeAffinity == nil {
		pod.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := pod.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{}}}
	}
	terms := na.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	for i := range terms { // terms are ORed: the requirement goes into each
		terms[i].MatchExpressions = append(terms[i].MatchExpressions, req)
	}
}

// RenderService is the ClusterIP Service in front of the pods.
func RenderService(md *kilnv1.ModelDeployment) *corev1.Service {
	p := port(md)
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: md.Name, Namespace: md.Namespace, Labels: labelsFor(md)},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selectorFor(md),
			Ports: []corev1.ServicePort{{Name: "http", Port: p, TargetPort: intstr.FromString("http"),
				Protocol: corev1.ProtocolTCP}},
		},
	}
}

// RenderCacheClaim is the model's cache volume.
func RenderCacheClaim(md *kilnv1.ModelDeployment, r *Resolved, opts *Options) *corev1.PersistentVolumeClaim {
	size := int64(100)
	if md.Spec.Vllm != nil && md.Spec.Vllm.ModelCacheStorageGi != nil {
		size = int64(*md.Spec.Vllm.ModelCacheStorageGi)
	}
	mode := opts.CacheAccessMode
	if mode == "" {
		mode = corev1.ReadWriteOnce
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: cacheName(r), Namespace: md.Namespace, Labels: map[string]string{
			LabelName: "kiln", LabelManagedBy: ManagerName, LabelModelCache: r.CacheKey()}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{mode},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: *resource.NewQuantity(size<<30, resource.BinarySI)}},
		},
	}
	if opts.CacheStorageClass != "" {
		pvc.Spec.StorageClassName = ptr.To(opts.CacheStorageClass)
	}
	return pvc
}

// RenderCatalogConfigMap holds the model's catalog entry, which `kiln model pull` and
// `kiln serve` read through $KILN_CATALOG.
func RenderCatalogConfigMap(md *kilnv1.ModelDeployment, r *Resolved) *corev1.ConfigMap {
	doc, _ := json.Marshal(map[string][]json.RawMessage{"models": {r.Entry}})
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: cacheName(r), Namespace: md.Namespace, Labels: map[string]string{
			LabelName: "kiln", LabelManagedBy: ManagerName, LabelModelCache: r.CacheKey()}},
		Data: map[string]string{"catalog.json": string(doc)},
	}
}

// RenderPullJob fills the cache once: `kiln model pull`.
func RenderPullJob(md *kilnv1.ModelDeployment, r *Resolved, opts *Options) *batchv1.Job {
	vols, mounts := volumes(r, false)
	env := []corev1.EnvVar{
		{Name: "KILN_HOME", Value: KilnHome},
		{Name: "KILN_CATALOG", Value: CatalogDir + "/catalog.json"},
	}
	if c := r.Credentials; c != nil {
		ref := c.SecretRef
		key := func(k, d string) string { return orDefault(k, d) }
		env = append(env,
			corev1.EnvVar{Name: "KILN_OCI_USERNAME", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: ref.Name}, Key: key(ref.UsernameKey, "username")}}},
			corev1.EnvVar{Name: "KILN_OCI_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: ref.Name}, Key: key(ref.PasswordKey, "password")}}})
	}
	labels := map[string]string{LabelName: "kiln", LabelManagedBy: ManagerName, LabelModelCache: r.CacheKey()}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: pullJobName(r), Namespace: md.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To(int32(4)),
			// The operator deletes a finished Job once it recorded the pull on the claim; this
			// removes one it could not (a failed pull stays an hour for its logs).
			TTLSecondsAfterFinished: ptr.To(int32(3600)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyOnFailure,
					Containers: []corev1.Container{{
						Name: "pull", Image: opts.ServerImage, ImagePullPolicy: opts.ImagePullPolicy,
						Command: []string{"kiln"}, Args: []string{"model", "pull", r.ServedName},
						Env: env, VolumeMounts: mounts,
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"),
								corev1.ResourceMemory: resource.MustParse("128Mi")},
							Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
						},
					}},
					Volumes: vols,
				},
			},
		},
	}
}

// sortedKeys are a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// endpointPath is the external path: endpoint.path, default /<name>.
func endpointPath(md *kilnv1.ModelDeployment) string {
	if md.Spec.Endpoint != nil && md.Spec.Endpoint.Path != "" {
		return md.Spec.Endpoint.Path
	}
	return "/" + md.Name
}

// Exposure is endpoint.exposure, internal when unset. As Foundry's reference maps it, the
// deprecated endpoint.enabled (honored only without exposure) means internal, which is also
// the default.
func Exposure(md *kilnv1.ModelDeployment) string {
	if e := md.Spec.Endpoint; e != nil && e.Exposure != "" {
		return e.Exposure
	}
	return "internal"
}

func internalEndpoint(md *kilnv1.ModelDeployment) string {
	return fmt.Sprintf("http://%s.%s.svc.cluster.local:%d", md.Name, md.Namespace, port(md))
}
