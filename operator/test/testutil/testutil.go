// Package testutil holds what the operator's envtest and e2e suites share.
package testutil

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
)

// Eventually retries `check` every `every` until it returns nil or `timeout` passes; the last
// error fails the test.
func Eventually(t testing.TB, timeout, every time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(every)
	}
}

// EnsureNamespace creates a namespace unless it exists.
func EnsureNamespace(t testing.TB, c client.Client, name string) {
	t.Helper()
	err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// CreateDeployment parses a ModelDeployment from YAML (strictly) and creates it in `ns`.
func CreateDeployment(t testing.TB, c client.Client, ns, manifest string) *kilnv1.ModelDeployment {
	t.Helper()
	EnsureNamespace(t, c, ns)
	md := &kilnv1.ModelDeployment{}
	if err := yaml.UnmarshalStrict([]byte(manifest), md); err != nil {
		t.Fatal(err)
	}
	md.APIVersion, md.Kind, md.Namespace = "kiln.dev/v1alpha1", "ModelDeployment", ns
	if err := c.Create(context.Background(), md); err != nil {
		t.Fatal(err)
	}
	return md
}
