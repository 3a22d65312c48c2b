package envtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"kiln.dev/operator/test/testutil"
)

// readManifest reads one YAML object.
func readManifest(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &obj.Object); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return obj
}

// placeholder matches the <...> values the documentation leaves for the reader to fill in.
var placeholder = regexp.MustCompile(`<[^>]*>`)

// fillPlaceholders replaces each <...> in string values with a DNS-safe word, as a reader of
// the documentation would.
func fillPlaceholders(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = fillPlaceholders(e)
		}
	case []any:
		for i, e := range x {
			x[i] = fillPlaceholders(e)
		}
	case string:
		return placeholder.ReplaceAllString(x, "example")
	}
	return v
}

func ensureNamespace(t *testing.T, name string) { testutil.EnsureNamespace(t, k8s, name) }

// Foundry Local's documented manifests, with only apiVersion changed (and the documentation's
// <placeholders> filled in), are accepted by the API server under strict field validation.
func TestFoundryManifestsAccepted(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "foundry", "*.yaml"))
	if err != nil || len(files) < 18 {
		t.Fatalf("want the 18 documented examples, found %d (%v)", len(files), err)
	}
	ensureNamespace(t, "foundry-local-operator")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			obj := readManifest(t, f)
			if got := obj.GetAPIVersion(); got != "foundrylocal.azure.com/v1" {
				t.Fatalf("the fixture should be Foundry's own manifest, apiVersion %q", got)
			}
			obj.SetAPIVersion("kiln.dev/v1alpha1")
			obj.Object = fillPlaceholders(obj.Object).(map[string]any)
			if obj.GetNamespace() == "" {
				obj.SetNamespace("foundry-local-operator")
			}
			err := k8s.Create(context.Background(), obj, client.DryRunAll, client.FieldValidation("Strict"))
			if err != nil {
				t.Fatalf("the API server refused %s: %v", filepath.Base(f), err)
			}
		})
	}
}

// Invalid manifests are refused with a message that names the field; each fixture's first line
// holds the message expected.
func TestInvalidManifestsRefused(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "invalid", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatal("no invalid fixtures")
	}
	ensureNamespace(t, "invalid")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, _ := os.ReadFile(f)
			first, _, _ := strings.Cut(string(raw), "\n")
			want := strings.TrimPrefix(first, "# want: ")
			if want == first {
				t.Fatal("the fixture's first line must be '# want: <message>'")
			}
			obj := readManifest(t, f)
			obj.SetNamespace("invalid")
			err := k8s.Create(context.Background(), obj, client.DryRunAll, client.FieldValidation("Strict"))
			if err == nil {
				t.Fatalf("the API server accepted %s", filepath.Base(f))
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("refused, but the message does not say %q:\n%v", want, err)
			}
		})
	}
}

// kubectl get mdep prints what the API server's table for the resource holds: the CRD's
// printer columns (State, Runtime, Compute, Ready, Endpoint) filled from each object.
func TestGetMdepColumns(t *testing.T) {
	ctx := context.Background()
	md := testutil.CreateDeployment(t, k8s, "columns", `
metadata: {name: smol}
spec: {model: {catalog: {name: smollm2-135m}}, workloadType: generative, compute: cpu}
`)
	eventually(t, 30*time.Second, "a state", func() error {
		if got := getDeployment(t, md); got.Status.State == "" {
			return fmt.Errorf("no state yet")
		}
		return nil
	})
	cs, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cs.RESTClient().Get().AbsPath("/apis/kiln.dev/v1alpha1/namespaces/columns/modeldeployments").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range table.ColumnDefinitions {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "Name,State,Runtime,Compute,Ready,Endpoint,Age" || len(table.Rows) != 1 {
		t.Fatalf("columns %v, %d rows", names, len(table.Rows))
	}
	cells := table.Rows[0].Cells
	if cells[0] != "smol" || cells[1] != "Creating" || cells[2] != "vllm" || cells[3] != "cpu" {
		t.Fatalf("row %v", cells)
	}
}
