package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ModelCatalogSource points a Model at a catalog entry.
type ModelCatalogSource struct {
	// +optional
	Alias string `json:"alias,omitempty"`
	// +optional
	ModelID string `json:"modelId,omitempty"`
}

// ModelSourceSpec says where a Model's files come from: a catalog entry or an OCI artifact.
// type may be left out; it is then the one of catalog and custom that is set.
//
// +kubebuilder:validation:XValidation:rule="(has(self.catalog) ? 1 : 0) + (has(self.custom) ? 1 : 0) == 1",message="set exactly one of source.catalog and source.custom"
// +kubebuilder:validation:XValidation:rule="!has(self.type) || (self.type == 'custom') == has(self.custom)",message="source.type must name the source that is set (catalog or custom)",fieldPath=".type"
// +kubebuilder:validation:XValidation:rule="!has(self.catalog) || has(self.catalog.alias) || has(self.catalog.modelId)",message="source.catalog needs alias or modelId",fieldPath=".catalog.alias",reason=FieldValueRequired
type ModelSourceSpec struct {
	// +kubebuilder:validation:Enum=catalog;custom
	// +optional
	Type string `json:"type,omitempty"`
	// +optional
	Catalog *ModelCatalogSource `json:"catalog,omitempty"`
	// +optional
	Custom *CustomModel `json:"custom,omitempty"`
}

// ModelVariant is one build of a model (for a device or execution provider).
type ModelVariant struct {
	// +kubebuilder:validation:MinLength=1
	ID string `json:"id"`
	// +kubebuilder:validation:Enum=cpu;gpu
	// +optional
	Compute string `json:"compute,omitempty"`
	// Priority orders variants of the same compute: the highest wins.
	// +optional
	Priority int32 `json:"priority,omitempty"`
	// +optional
	ExecutionProvider string `json:"executionProvider,omitempty"`
}

// ModelRequirements are what a node needs to run the model.
type ModelRequirements struct {
	// +optional
	MinMemory *resource.Quantity `json:"minMemory,omitempty"`
	// +optional
	MinVRAM *resource.Quantity `json:"minVRAM,omitempty"`
	// +optional
	SupportedCompute []string `json:"supportedCompute,omitempty"`
}

// ModelCapabilities describe what the model does.
type ModelCapabilities struct {
	// Task: chat-completion, text-completion, classification, object-detection, regression, ...
	// +optional
	Task string `json:"task,omitempty"`
	// +optional
	Streaming *bool `json:"streaming,omitempty"`
	// +optional
	ContextLength *int64 `json:"contextLength,omitempty"`
}

// ModelSpec describes a bring-your-own model.
type ModelSpec struct {
	// +optional
	DisplayName string `json:"displayName,omitempty"`
	// +optional
	Description string `json:"description,omitempty"`
	// +optional
	Publisher string `json:"publisher,omitempty"`
	// +optional
	License string `json:"license,omitempty"`
	// +optional
	LicenseURL string          `json:"licenseUrl,omitempty"`
	Source     ModelSourceSpec `json:"source"`
	// +optional
	Variants []ModelVariant `json:"variants,omitempty"`
	// +optional
	Requirements *ModelRequirements `json:"requirements,omitempty"`
	// +optional
	Capabilities *ModelCapabilities `json:"capabilities,omitempty"`
}

// Model phases.
const (
	PhasePending   = "Pending"
	PhaseAvailable = "Available"
	PhaseError     = "Error"
)

// ModelStatus is what the operator found of the model.
type ModelStatus struct {
	// +kubebuilder:validation:Enum=Pending;Available;Error
	// +optional
	Phase string `json:"phase,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// URI is where the files come from (oci://..., or the catalog entry's uri).
	// +optional
	URI string `json:"uri,omitempty"`
	// CacheVolumeClaim is the PersistentVolumeClaim that holds the files, once pulled.
	// +optional
	CacheVolumeClaim string `json:"cacheVolumeClaim,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	LastUpdated *metav1.Time `json:"lastUpdated,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Model is a bring-your-own model that ModelDeployments refer to by name (model.ref).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mdl,categories=kiln
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.source.type`
// +kubebuilder:printcolumn:name="URI",type=string,JSONPath=`.status.uri`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Model struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ModelSpec   `json:"spec"`
	Status ModelStatus `json:"status,omitempty"`
}

// ModelList is a list of Models.
//
// +kubebuilder:object:root=true
type ModelList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Model `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Model{}, &ModelList{})
}
