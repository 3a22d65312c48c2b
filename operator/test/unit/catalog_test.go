// Unit tests of the operator's pure parts: the catalog reader and resolution, the planner's
// output parsing, and what the renderers make of a spec.
package unit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln.dev/operator/internal/catalog"
)

func chartCatalog(t *testing.T) *catalog.Catalog {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "helm", "kiln", "catalog.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.Parse(doc, "catalog.json")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestResolveMatchesAliasIdAndDisplayNameForTheCompute(t *testing.T) {
	c := chartCatalog(t)
	for _, tc := range []struct{ name, compute, runtime, want string }{
		{"phi-4-mini", "cpu", "", "Phi-4-mini-instruct-generic-cpu:5"},
		{"PHI-4-MINI", "gpu", "", "Phi-4-mini-instruct-cuda-gpu:5"},
		{"Phi-4-mini-instruct-cuda-gpu", "gpu", "", "Phi-4-mini-instruct-cuda-gpu:5"}, // id without version
		{"Qwen2.5-7B-Instruct", "gpu", "vllm", "Qwen2.5-7B-Instruct-vllm:1"},          // display name
		{"smollm2-135m-instruct-vllm:1", "cpu", "", "smollm2-135m-instruct-vllm:1"},   // full id
	} {
		e, err := c.Resolve(tc.name, "latest", tc.compute, tc.runtime)
		if err != nil || e.ID != tc.want {
			t.Errorf("Resolve(%q, %s) = %v, %v; want %s", tc.name, tc.compute, e, err, tc.want)
		}
	}
	e, _ := c.Resolve("qwen2.5-0.5b", "", "cpu", "")
	if e.Runtime() != "vllm" || e.VariantFor("cpu") != "Qwen2.5-0.5B-Instruct-vllm:1" || len(e.HFConfig) == 0 {
		t.Fatalf("entry %+v", e)
	}
	phi, _ := c.Resolve("phi-4-mini", "", "cpu", "")
	if phi.Runtime() != "onnx-genai" || phi.SizeBytes() != 5153960755 {
		t.Fatalf("phi %s %d", phi.Runtime(), phi.SizeBytes())
	}
}

func TestResolveSaysWhyNot(t *testing.T) {
	c := chartCatalog(t)
	_, err := c.Resolve("mistral-7b", "", "cpu", "vllm")
	var nf *catalog.NotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "has no cpu variant") ||
		!strings.Contains(err.Error(), "Mistral-7B-Instruct-v0.3-vllm:1") {
		t.Fatalf("%v", err)
	}
	_, err = c.Resolve("gpt-5", "", "cpu", "")
	if err == nil || !strings.Contains(err.Error(), `no catalog model "gpt-5"`) || !strings.Contains(err.Error(), "qwen2.5-7b") {
		t.Fatalf("%v", err)
	}
	_, err = c.Resolve("phi-4-mini", "9", "cpu", "")
	if err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Fatalf("%v", err)
	}
}

func TestResolvePicksTheNewestVersionAndTheAskedRuntime(t *testing.T) {
	c, err := catalog.Parse([]byte(`{"models": [
	  {"id": "m-cpu:2", "alias": "m", "framework": "ONNX", "modelVersion": "2", "supportedCompute": ["cpu"]},
	  {"id": "m-cpu:10", "alias": "m", "framework": "ONNX", "modelVersion": "10", "supportedCompute": ["cpu"]},
	  {"id": "m-vllm:1", "alias": "m", "framework": "vllm", "modelVersion": "1", "supportedCompute": ["cpu"]},
	  {"id": "p:1", "alias": "p", "framework": "ONNX", "task": "classification"}]}`), "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ version, runtime, want string }{
		{"", "", "m-cpu:10"}, {"latest", "", "m-cpu:10"}, {"2", "", "m-cpu:2"}, {"", "vllm", "m-vllm:1"},
	} {
		if e, err := c.Resolve("m", tc.version, "cpu", tc.runtime); err != nil || e.ID != tc.want {
			t.Errorf("version %q runtime %q: %v %v, want %s", tc.version, tc.runtime, e, err, tc.want)
		}
	}
	if p, err := c.Resolve("p", "", "cpu", ""); err != nil || p.Runtime() != "predictive" {
		t.Fatalf("%v %v", p, err)
	}
}

func TestParseNamesTheEntry(t *testing.T) {
	for doc, want := range map[string]string{
		`{"models": [{"id": "a:1", "alias": "a", "framework": "ONNX"}, {"id": "b:1", "framework": "vllm"}]}`: "models[1]: id, alias and framework are required",
		`{"models": [{"id": 5}]}`: "models[0]",
		`[1, 2`:                   "not a catalog",
	} {
		_, err := catalog.Parse([]byte(doc), "doc.json")
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "doc.json") {
			t.Errorf("%s: %v, want %q", doc, err, want)
		}
	}
}
