package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
	"kiln.dev/operator/internal/catalog"
)

// Resolved is the model a deployment runs, as the server and the pull Job need it.
type Resolved struct {
	// Name is what status.resolvedModel.name shows: the catalog entry id, the Model's name or the
	// OCI reference.
	Name    string
	Variant string
	// URI is where the files come from.
	URI string
	// ServedName is the name the server answers to (the request's "model").
	ServedName string
	// Runtime: onnx-genai, vllm or predictive.
	Runtime string
	// Entry is the catalog entry the server's catalog file holds.
	Entry json.RawMessage
	// HFConfig is the model's config.json, for the planner; nil when the catalog has none.
	HFConfig json.RawMessage
	// SizeBytes is the model's file size when the catalog states it.
	SizeBytes int64
	// ContextLength as the catalog states it (0: unknown).
	ContextLength int64
	// Credentials for a custom model's registry.
	Credentials *kilnv1.RegistryCredentials
	// Model is the Model resource a model.ref names (the cache is then the Model's).
	Model *kilnv1.Model
}

// CacheKey names the model's cache: one volume per model and namespace, whatever deployment
// asks for it.
func (r *Resolved) CacheKey() string {
	sum := sha256.Sum256([]byte(r.URI + "\x00" + r.Name))
	return hex.EncodeToString(sum[:])[:12]
}

// ConditionError is why a deployment cannot go on: Reason goes on the condition it stopped at
// (ModelResolved, ResourcesAvailable), Message says what to do.
type ConditionError struct {
	Reason  string
	Message string
	// Retry: the cause may go away by itself (a Model not yet Available, GPUs in use).
	Retry bool
}

func (e *ConditionError) Error() string { return e.Message }

// CatalogSource loads the catalog the Helm chart puts in a ConfigMap.
type CatalogSource struct {
	Client    client.Reader
	Namespace string
	Name      string
	Key       string
}

// Load reads and parses the catalog.
func (s *CatalogSource) Load(ctx context.Context) (*catalog.Catalog, error) {
	var cm corev1.ConfigMap
	if err := s.Client.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: s.Name}, &cm); err != nil {
		return nil, fmt.Errorf("reading the catalog ConfigMap %s/%s: %w", s.Namespace, s.Name, err)
	}
	doc, ok := cm.Data[s.Key]
	if !ok {
		return nil, fmt.Errorf("the catalog ConfigMap %s/%s has no key %q", s.Namespace, s.Name, s.Key)
	}
	return catalog.Parse([]byte(doc), fmt.Sprintf("ConfigMap %s/%s key %s", s.Namespace, s.Name, s.Key))
}

// ociURI is the oci:// reference of a custom model.
func ociURI(c *kilnv1.CustomModel) string {
	tag := c.Tag
	if tag == "" {
		tag = "latest"
	}
	sep := ":"
	if strings.HasPrefix(tag, "sha256:") {
		sep = "@"
	}
	return "oci://" + strings.TrimSuffix(c.Registry, "/") + "/" + strings.Trim(c.Repository, "/") + sep + tag
}

// customEntry is a catalog entry for a bring-your-own model: the server pulls it from its
// registry and serves it under `served`.
func customEntry(uri, served, runtime, task string, contextLength int64) json.RawMessage {
	framework := "ONNX"
	if runtime == "vllm" {
		framework = "vllm"
	}
	if task == "" {
		task = "chat-completion"
		if runtime == "predictive" {
			task = "predictive"
		}
	}
	e := map[string]any{
		"id": served + ":1", "alias": served, "displayName": served, "task": task,
		"source": "custom", "framework": framework, "modelVersion": "1", "uri": uri,
	}
	if contextLength > 0 {
		e["contextLength"] = contextLength
	}
	raw, _ := json.Marshal(e)
	return raw
}

func runtimeFor(md *kilnv1.ModelDeployment, fromCatalog string) string {
	if md.Spec.WorkloadType == "predictive" {
		return "predictive"
	}
	if md.Spec.Runtime != "" {
		return md.Spec.Runtime
	}
	if fromCatalog != "" && fromCatalog != "predictive" {
		return fromCatalog
	}
	return "onnx-genai"
}

// ResolveModel finds what `md` serves.
func ResolveModel(ctx context.Context, c client.Reader, cat *CatalogSource,
	md *kilnv1.ModelDeployment) (*Resolved, error) {
	src := md.Spec.Model
	switch {
	case src.Catalog != nil:
		loaded, err := cat.Load(ctx)
		if err != nil {
			return nil, &ConditionError{Reason: "CatalogUnavailable", Message: err.Error(), Retry: true}
		}
		entry, err := loaded.Resolve(src.Catalog.Name, src.Catalog.Version, md.Spec.Compute, md.Spec.Runtime)
		if err != nil {
			return nil, &ConditionError{Reason: "ModelNotInCatalog", Message: err.Error()}
		}
		rt := runtimeFor(md, entry.Runtime())
		if entry.Runtime() == "predictive" && md.Spec.WorkloadType != "predictive" {
			return nil, &ConditionError{Reason: "WorkloadMismatch", Message: fmt.Sprintf(
				"catalog model %s is predictive: set workloadType predictive", entry.ID)}
		}
		return &Resolved{
			Name: entry.ID, Variant: entry.VariantFor(md.Spec.Compute), URI: entry.URI,
			ServedName: entry.Alias, Runtime: rt, Entry: entry.Raw, HFConfig: entry.HFConfig,
			SizeBytes: entry.SizeBytes(), ContextLength: entry.ContextLength,
		}, nil
	case src.Custom != nil:
		uri := ociURI(src.Custom)
		rt := runtimeFor(md, "")
		return &Resolved{
			Name: strings.TrimPrefix(uri, "oci://"), URI: uri, ServedName: md.Name, Runtime: rt,
			Entry:       customEntry(uri, md.Name, rt, "", 0),
			Credentials: src.Custom.Credentials,
		}, nil
	default:
		var m kilnv1.Model
		err := c.Get(ctx, types.NamespacedName{Namespace: md.Namespace, Name: src.Ref}, &m)
		if apierrors.IsNotFound(err) {
			return nil, &ConditionError{Reason: "ModelNotFound", Retry: true, Message: fmt.Sprintf(
				"model.ref names Model %q, which does not exist in namespace %s", src.Ref, md.Namespace)}
		}
		if err != nil {
			return nil, err
		}
		if m.Status.Phase != kilnv1.PhaseAvailable {
			msg := fmt.Sprintf("Model %s is %s, not Available", m.Name, orDefault(m.Status.Phase, "not yet resolved"))
			if m.Status.Message != "" {
				msg += ": " + m.Status.Message
			}
			return nil, &ConditionError{Reason: "ModelNotAvailable", Message: msg, Retry: true}
		}
		if m.Spec.Requirements != nil && len(m.Spec.Requirements.SupportedCompute) > 0 &&
			!contains(m.Spec.Requirements.SupportedCompute, md.Spec.Compute) {
			return nil, &ConditionError{Reason: "ComputeNotSupported", Message: fmt.Sprintf(
				"Model %s supports compute %s, not %s", m.Name,
				strings.Join(m.Spec.Requirements.SupportedCompute, ", "), md.Spec.Compute)}
		}
		rt := runtimeFor(md, "")
		var task string
		var contextLength int64
		if m.Spec.Capabilities != nil {
			task = m.Spec.Capabilities.Task
			if m.Spec.Capabilities.ContextLength != nil {
				contextLength = *m.Spec.Capabilities.ContextLength
			}
		}
		r := &Resolved{
			Name: m.Name, URI: m.Status.URI, ServedName: m.Name, Runtime: rt,
			ContextLength: contextLength, Model: &m,
		}
		if m.Spec.Source.Type == "catalog" && m.Spec.Source.Catalog != nil {
			loaded, err := cat.Load(ctx)
			if err != nil {
				return nil, &ConditionError{Reason: "CatalogUnavailable", Message: err.Error(), Retry: true}
			}
			name := orDefault(m.Spec.Source.Catalog.ModelID, m.Spec.Source.Catalog.Alias)
			entry, err := loaded.Resolve(name, "", md.Spec.Compute, md.Spec.Runtime)
			if err != nil {
				return nil, &ConditionError{Reason: "ModelNotInCatalog", Message: fmt.Sprintf(
					"Model %s: %v", m.Name, err)}
			}
			r.Runtime = runtimeFor(md, entry.Runtime())
			r.URI, r.Entry, r.HFConfig = entry.URI, entry.Raw, entry.HFConfig
			r.SizeBytes, r.ServedName, r.Variant = entry.SizeBytes(), entry.Alias, entry.VariantFor(md.Spec.Compute)
			if r.ContextLength == 0 {
				r.ContextLength = entry.ContextLength
			}
		} else {
			r.Entry = customEntry(m.Status.URI, m.Name, rt, task, contextLength)
			if m.Spec.Source.Custom != nil {
				r.Credentials = m.Spec.Source.Custom.Credentials
			}
		}
		return r, nil
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
