package controller

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
)

// HTTPRouteKind is the Gateway API kind external exposure makes.
var HTTPRouteKind = schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "HTTPRoute"}

// GatewayServed reports whether the cluster serves HTTPRoutes (the Gateway API CRDs are installed).
func GatewayServed(mapper meta.RESTMapper) func() bool {
	return func() bool {
		_, err := mapper.RESTMapping(HTTPRouteKind.GroupKind(), HTTPRouteKind.Version)
		return err == nil
	}
}

// RenderHTTPRoute is the route of an externally exposed deployment: endpoint.path (PathPrefix,
// or Exact when the deprecated pathType says so; Foundry documents no mapping for it) rewritten
// to endpoint.rewritePath, to the Service.
func RenderHTTPRoute(md *kilnv1.ModelDeployment, opts *Options) *unstructured.Unstructured {
	e := md.Spec.Endpoint
	if e == nil {
		e = &kilnv1.Endpoint{}
	}
	matchType := "PathPrefix"
	if e.PathType == "Exact" {
		matchType = "Exact"
	}
	rewrite := e.RewritePath
	if rewrite == "" {
		rewrite = "/"
	}
	parent := map[string]any{"name": opts.GatewayName}
	if opts.GatewayNamespace != "" {
		parent["namespace"] = opts.GatewayNamespace
	}
	rule := map[string]any{
		"matches":     []any{map[string]any{"path": map[string]any{"type": matchType, "value": endpointPath(md)}}},
		"backendRefs": []any{map[string]any{"name": md.Name, "port": int64(port(md))}},
	}
	if matchType == "PathPrefix" {
		rule["filters"] = []any{map[string]any{"type": "URLRewrite", "urlRewrite": map[string]any{
			"path": map[string]any{"type": "ReplacePrefixMatch", "replacePrefixMatch": rewrite}}}}
	}
	spec := map[string]any{"parentRefs": []any{parent}, "rules": []any{rule}}
	if e.Host != "" {
		spec["hostnames"] = []any{e.Host}
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(HTTPRouteKind)
	u.SetName(md.Name)
	u.SetNamespace(md.Namespace)
	u.SetLabels(labelsFor(md))
	// The deprecated endpoint.annotations and ingressClassName configured an nginx Ingress; as
	// Foundry's reference says, they are accepted and ignored (gatewayAnnotations replace them).
	ann := map[string]string{}
	for k, v := range e.GatewayAnnotations {
		ann[k] = v
	}
	if len(ann) > 0 {
		u.SetAnnotations(ann)
	}
	return u
}

// ensureRoute makes or removes the HTTPRoute and fills the endpoint fields of the status. It
// returns a sentence for the status message when something is missing.
func (r *ModelDeploymentReconciler) ensureRoute(ctx context.Context, md *kilnv1.ModelDeployment,
	st *kilnv1.ModelDeploymentStatus, exposure string) (string, error) {
	served := r.Gateway != nil && r.Gateway()
	if exposure != "external" {
		st.ExternalEndpoint, st.EndpointReady, st.HTTPRouteReady = "", false, false
		if served {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(HTTPRouteKind)
			if err := r.deleteOwned(ctx, md, u); err != nil && !meta.IsNoMatchError(err) {
				return "", err
			}
		}
		return "", nil
	}
	if !served {
		st.ExternalEndpoint, st.EndpointReady, st.HTTPRouteReady = "", false, false
		return "exposure external needs the Gateway API (HTTPRoute) installed in the cluster; " +
			"the deployment is reachable inside the cluster only", nil
	}
	if r.Options.GatewayName == "" {
		return "exposure external needs the operator's gateway setting (gateway.name in the chart's values)", nil
	}
	route := RenderHTTPRoute(md, &r.Options)
	if err := r.apply(ctx, md, route, true); err != nil {
		return "", err
	}
	st.HTTPRouteReady = true
	var live unstructured.Unstructured
	live.SetGroupVersionKind(HTTPRouteKind)
	if err := r.Get(ctx, client.ObjectKeyFromObject(route), &live); err != nil && !apierrors.IsNotFound(err) {
		return "", err
	}
	st.EndpointReady = routeAccepted(&live)
	host := "<gateway address>"
	if md.Spec.Endpoint != nil && md.Spec.Endpoint.Host != "" {
		host = md.Spec.Endpoint.Host
	}
	scheme := "http"
	if md.Spec.Endpoint != nil && md.Spec.Endpoint.TLS != nil && md.Spec.Endpoint.TLS.Enabled {
		scheme = "https"
	}
	st.ExternalEndpoint = fmt.Sprintf("%s://%s%s", scheme, host, endpointPath(md))
	if !st.EndpointReady {
		return "HTTPRoute " + md.Name + " is not yet accepted by gateway " + r.Options.GatewayName, nil
	}
	return "", nil
}

// routeAccepted reports whether a parent gateway accepted the route.
func routeAccepted(u *unstructured.Unstructured) bool {
	parents, _, _ := unstructured.NestedSlice(u.Object, "status", "parents")
	for _, p := range parents {
		conds, _, _ := unstructured.NestedSlice(p.(map[string]any), "conditions")
		for _, c := range conds {
			m := c.(map[string]any)
			if m["type"] == "Accepted" && m["status"] == "True" {
				return true
			}
		}
	}
	return false
}
