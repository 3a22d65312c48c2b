package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ModelSource names the model a deployment serves: exactly one of ref, catalog or custom.
//
// +kubebuilder:validation:XValidation:rule="(has(self.ref) ? 1 : 0) + (has(self.catalog) ? 1 : 0) + (has(self.custom) ? 1 : 0) == 1",message="set exactly one of model.ref, model.catalog or model.custom"
type ModelSource struct {
	// Ref is the name of a Model in the deployment's namespace; it must be Available.
	// +kubebuilder:validation:MinLength=1
	// +optional
	Ref string `json:"ref,omitempty"`
	// Catalog picks an entry of Kiln's catalog.
	// +optional
	Catalog *CatalogModel `json:"catalog,omitempty"`
	// Custom is a model published as an OCI artifact (as ORAS pushes it).
	// +optional
	Custom *CustomModel `json:"custom,omitempty"`
}

// CatalogModel picks a catalog entry.
type CatalogModel struct {
	// Name is matched against the entries' alias, id and display name (case-insensitive).
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Version is the entry's model version, or latest.
	// +kubebuilder:default=latest
	// +optional
	Version string `json:"version,omitempty"`
}

// CustomModel is a model in an OCI registry.
type CustomModel struct {
	// Registry is the registry's host (and port), such as myregistry.azurecr.io.
	// +kubebuilder:validation:MinLength=1
	Registry string `json:"registry"`
	// Repository is the artifact's repository in the registry.
	// +kubebuilder:validation:MinLength=1
	Repository string `json:"repository"`
	// Tag is the artifact's tag, or a digest (sha256:...).
	// +kubebuilder:default=latest
	// +optional
	Tag string `json:"tag,omitempty"`
	// Credentials for a private registry.
	// +optional
	Credentials *RegistryCredentials `json:"credentials,omitempty"`
}

// RegistryCredentials point at a Secret holding a registry user name and password.
type RegistryCredentials struct {
	SecretRef CredentialsSecretRef `json:"secretRef"`
}

// CredentialsSecretRef names a Secret in the deployment's namespace and its keys.
type CredentialsSecretRef struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:default=username
	// +optional
	UsernameKey string `json:"usernameKey,omitempty"`
	// +kubebuilder:default=password
	// +optional
	PasswordKey string `json:"passwordKey,omitempty"`
}

// ResourceList is the CPU and memory of a request or a limit.
type ResourceList struct {
	// +optional
	CPU *resource.Quantity `json:"cpu,omitempty"`
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`
}

// ResourceLimits are the limits, with the GPU count.
type ResourceLimits struct {
	// +optional
	CPU *resource.Quantity `json:"cpu,omitempty"`
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`
	// GPU is the number of nvidia.com/gpu each pod asks for.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=8
	// +optional
	GPU *int32 `json:"gpu,omitempty"`
}

// Resources of each pod. Left out, CPU and memory default to 100m/256Mi requested and
// 1000m/1Gi as limits, raised to what the model needs; with compute gpu and no limits at all,
// one GPU.
type Resources struct {
	// +optional
	Requests *ResourceList `json:"requests,omitempty"`
	// +optional
	Limits *ResourceLimits `json:"limits,omitempty"`
}

// VllmConfig configures the vllm runtime.
type VllmConfig struct {
	// Preferences are vLLM engine arguments by their snake_case names (max_model_len,
	// max_num_seqs, kv_cache_dtype, tensor_parallel_size, ...). Kiln's planner takes them as
	// constraints and fits the rest to the device.
	// +optional
	Preferences *VllmPreferences `json:"preferences,omitempty"`
	// ModelCacheStorageGi is the size of the model cache volume in GiB.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=100
	// +optional
	ModelCacheStorageGi *int32 `json:"modelCacheStorageGi,omitempty"`
	// Epp configures the endpoint picker (KV-cache-aware routing across replicas).
	// +optional
	Epp *EppConfig `json:"epp,omitempty"`
}

// EppConfig turns the endpoint picker on or off.
type EppConfig struct {
	// Enabled defaults to true when replicas > 1.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
}

// EndpointTLS configures TLS on the external endpoint.
type EndpointTLS struct {
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// SecretName holds the certificate (kubernetes.io/tls).
	// +optional
	SecretName string `json:"secretName,omitempty"`
}

// Endpoint says how the deployment is reached.
type Endpoint struct {
	// Exposure: internal (a ClusterIP Service), external (also an HTTPRoute on the cluster's
	// gateway) or none (no Service).
	// +kubebuilder:validation:Enum=internal;external;none
	// +optional
	Exposure string `json:"exposure,omitempty"`
	// Host is the external host name.
	// +optional
	Host string `json:"host,omitempty"`
	// Path is the external path prefix (default /<name>).
	// +optional
	Path string `json:"path,omitempty"`
	// RewritePath replaces Path before the request reaches the pod (default /).
	// +optional
	RewritePath string `json:"rewritePath,omitempty"`
	// GatewayAnnotations are put on the HTTPRoute.
	// +optional
	GatewayAnnotations map[string]string `json:"gatewayAnnotations,omitempty"`
	// +optional
	TLS *EndpointTLS `json:"tls,omitempty"`

	// Enabled is deprecated: honored only without exposure, true means exposure internal (the
	// default).
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// IngressClassName is deprecated and ignored.
	// +optional
	IngressClassName string `json:"ingressClassName,omitempty"`
	// Annotations is deprecated and ignored: gatewayAnnotations replace them.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// PathType is deprecated: Prefix or Exact, the HTTPRoute's path match.
	// +kubebuilder:validation:Enum=Prefix;Exact;ImplementationSpecific
	// +optional
	PathType string `json:"pathType,omitempty"`
}

// ModelDeploymentSpec is what to run: one model, its runtime, compute and replicas.
//
// +kubebuilder:validation:XValidation:rule="self.compute != 'gpu' || (has(self.skipGpuResource) && self.skipGpuResource) || !has(self.resources) || !has(self.resources.limits) || (has(self.resources.limits.gpu) && self.resources.limits.gpu > 0)",message="compute gpu with resources.limits needs resources.limits.gpu of at least 1 (or skipGpuResource with a nodeSelector)",fieldPath=".resources.limits.gpu",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="!has(self.skipGpuResource) || !self.skipGpuResource || (has(self.nodeSelector) && size(self.nodeSelector) > 0)",message="skipGpuResource needs a nodeSelector that picks the GPU nodes",fieldPath=".nodeSelector",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="self.compute != 'cpu' || !has(self.resources) || !has(self.resources.limits) || !has(self.resources.limits.gpu) || self.resources.limits.gpu == 0",message="compute cpu cannot ask for GPUs in resources.limits.gpu",fieldPath=".resources.limits.gpu"
// +kubebuilder:validation:XValidation:rule="self.compute != 'cpu' || !has(self.vllm) || !has(self.vllm.preferences) || ((!has(self.vllm.preferences.tensor_parallel_size) || self.vllm.preferences.tensor_parallel_size == 1) && (!has(self.vllm.preferences.pipeline_parallel_size) || self.vllm.preferences.pipeline_parallel_size == 1))",message="vllm.preferences tensor_parallel_size and pipeline_parallel_size above 1 need compute gpu",fieldPath=".compute"
// +kubebuilder:validation:XValidation:rule="self.compute != 'gpu' || (has(self.skipGpuResource) && self.skipGpuResource) || !has(self.resources) || !has(self.resources.limits) || !has(self.resources.limits.gpu) || !has(self.vllm) || !has(self.vllm.preferences) || self.resources.limits.gpu >= (has(self.vllm.preferences.tensor_parallel_size) ? self.vllm.preferences.tensor_parallel_size : 1) * (has(self.vllm.preferences.pipeline_parallel_size) ? self.vllm.preferences.pipeline_parallel_size : 1)",message="resources.limits.gpu must be at least tensor_parallel_size x pipeline_parallel_size",fieldPath=".resources.limits.gpu"
// +kubebuilder:validation:XValidation:rule="self.workloadType != 'predictive' || !has(self.model.catalog)",message="workloadType predictive is for bring-your-own models (model.ref or model.custom)",fieldPath=".workloadType"
// +kubebuilder:validation:XValidation:rule="self.workloadType != 'predictive' || !has(self.runtime) || self.runtime == 'onnx-genai'",message="a predictive model runs on ONNX Runtime: leave runtime out or set onnx-genai",fieldPath=".runtime"
// +kubebuilder:validation:XValidation:rule="!has(self.endpoint) || !has(self.endpoint.tls) || !self.endpoint.tls.enabled || (has(self.endpoint.tls.secretName) && size(self.endpoint.tls.secretName) > 0)",message="endpoint.tls.enabled needs endpoint.tls.secretName",fieldPath=".endpoint.tls.secretName",reason=FieldValueRequired
type ModelDeploymentSpec struct {
	// DisplayName is a name for people.
	// +optional
	DisplayName string `json:"displayName,omitempty"`
	// Model is what to serve.
	Model ModelSource `json:"model"`
	// WorkloadType is generative (chat and completions) or predictive (/v1/predict).
	// +kubebuilder:validation:Enum=generative;predictive
	WorkloadType string `json:"workloadType"`
	// Compute is cpu or gpu.
	// +kubebuilder:validation:Enum=cpu;gpu
	Compute string `json:"compute"`
	// Replicas is the number of pods.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// Port is the container port the server listens on.
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=8080
	// +optional
	Port int32 `json:"port,omitempty"`
	// +optional
	Resources *Resources `json:"resources,omitempty"`
	// Runtime is onnx-genai or vllm; left out, the catalog entry's framework decides
	// (onnx-genai for custom models).
	// +kubebuilder:validation:Enum=onnx-genai;vllm
	// +optional
	Runtime string `json:"runtime,omitempty"`
	// +optional
	Vllm *VllmConfig `json:"vllm,omitempty"`
	// NodeSelector constrains the nodes the pods may run on.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// SkipGpuResource leaves the nvidia.com/gpu limit out (for GPUs shared by other means);
	// nodeSelector must then pick the GPU nodes.
	// +optional
	SkipGpuResource bool `json:"skipGpuResource,omitempty"`
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// Env is added to the server container's environment.
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
	// +optional
	Endpoint *Endpoint `json:"endpoint,omitempty"`
}

// Deployment states.
const (
	StatePending     = "Pending"
	StateCreating    = "Creating"
	StateRunning     = "Running"
	StateUpdating    = "Updating"
	StateError       = "Error"
	StateTerminating = "Terminating"
)

// ReplicaStatus counts pods.
type ReplicaStatus struct {
	// +optional
	Desired int32 `json:"desired,omitempty"`
	// +optional
	Ready int32 `json:"ready,omitempty"`
	// +optional
	Available int32 `json:"available,omitempty"`
}

// ResolvedModel is the model a deployment runs.
type ResolvedModel struct {
	// Name is the catalog entry id, the Model's name or the OCI reference.
	Name string `json:"name,omitempty"`
	// Variant is the catalog variant (its compute and execution provider).
	Variant string `json:"variant,omitempty"`
	// Image is the server image.
	Image string `json:"image,omitempty"`
	// URI is where the files come from (hf://, oci://, https:// or a store path).
	URI string `json:"uri,omitempty"`
}

// AuthenticationStatus names the Secret holding the API keys.
type AuthenticationStatus struct {
	KeysSecretName string `json:"keysSecretName,omitempty"`
}

// PlanLimits are the serving limits Kiln's planner chose (kiln plan --output json).
type PlanLimits struct {
	MaxModelLen  int64  `json:"maxModelLen,omitempty"`
	MaxNumSeqs   int64  `json:"maxNumSeqs,omitempty"`
	KvCacheDtype string `json:"kvCacheDtype,omitempty"`
	// KvCacheBytes is the KV cache per pod (per GPU with tensor parallelism).
	KvCacheBytes int64 `json:"kvCacheBytes,omitempty"`
	// Device is the device the plan was made for (cpu or a GPU name).
	Device string `json:"device,omitempty"`
}

// ModelDeploymentStatus is what the operator observed.
type ModelDeploymentStatus struct {
	// +kubebuilder:validation:Enum=Pending;Creating;Running;Updating;Error;Terminating
	// +optional
	State string `json:"state,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	Replicas ReplicaStatus `json:"replicas,omitempty"`
	// ReadyReplicas is deprecated: replicas.ready.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// HTTPRouteReady mirrors endpointReady.
	// +optional
	HTTPRouteReady bool `json:"httpRouteReady,omitempty"`
	// Selector is the pods' label selector, for the scale subresource (HPA, KEDA).
	// +optional
	Selector string `json:"selector,omitempty"`
	// +optional
	DeploymentReady bool `json:"deploymentReady,omitempty"`
	// +optional
	ServiceReady bool `json:"serviceReady,omitempty"`
	// +optional
	InternalEndpoint string `json:"internalEndpoint,omitempty"`
	// +optional
	ExternalEndpoint string `json:"externalEndpoint,omitempty"`
	// +optional
	EndpointReady bool `json:"endpointReady,omitempty"`
	// +optional
	ResolvedModel *ResolvedModel `json:"resolvedModel,omitempty"`
	// +optional
	Authentication *AuthenticationStatus `json:"authentication,omitempty"`
	// +optional
	LastUpdated *metav1.Time `json:"lastUpdated,omitempty"`
	// Runtime is the runtime the pods run.
	// +optional
	Runtime string `json:"runtime,omitempty"`
	// Limits are the planner's serving limits.
	// +optional
	Limits *PlanLimits `json:"limits,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: ModelResolved, ResourcesAvailable, Cached, Available.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ModelDeployment runs one model as an inference endpoint: a Deployment of Kiln servers, a
// Service, the model's cache and, when asked, an external route.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas.ready,selectorpath=.status.selector
// +kubebuilder:resource:shortName=mdep,categories=kiln
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Runtime",type=string,JSONPath=`.status.runtime`
// +kubebuilder:printcolumn:name="Compute",type=string,JSONPath=`.spec.compute`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.replicas.ready`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.internalEndpoint`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ModelDeployment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ModelDeploymentSpec   `json:"spec"`
	Status ModelDeploymentStatus `json:"status,omitempty"`
}

// ModelDeploymentList is a list of ModelDeployments.
//
// +kubebuilder:object:root=true
type ModelDeploymentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ModelDeployment `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ModelDeployment{}, &ModelDeploymentList{})
}
