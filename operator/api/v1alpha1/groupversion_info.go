// Package v1alpha1 holds Kiln's Kubernetes API, group kiln.dev: ModelDeployment (a running
// inference endpoint) and Model (a bring-your-own model). Field names and rules follow Foundry
// Local on Azure Local's ModelDeployment and Model, so its manifests apply with only apiVersion
// changed.
//
// +kubebuilder:object:generate=true
// +groupName=kiln.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API's group and version.
	GroupVersion = schema.GroupVersion{Group: "kiln.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the API's types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the API's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
