package controller

import (
	"context"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// apiWrites counts the operator's writes to the API server by verb and kind
// (kiln_operator_api_writes_total): with nothing to change, a reconcile writes nothing.
var apiWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "kiln_operator_api_writes_total",
	Help: "Writes the operator's controllers made to the API server, by verb and kind.",
}, []string{"verb", "kind"})

func init() { metrics.Registry.MustRegister(apiWrites) }

// countingClient is a client whose writes are counted in kiln_operator_api_writes_total.
type countingClient struct{ client.Client }

func countWrite(verb string, obj client.Object) {
	kind := fmt.Sprintf("%T", obj)
	kind = kind[strings.LastIndex(kind, ".")+1:]
	if u, ok := obj.(interface{ GetKind() string }); ok && u.GetKind() != "" {
		kind = u.GetKind()
	}
	apiWrites.WithLabelValues(verb, kind).Inc()
}

func (c countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	countWrite("create", obj)
	return c.Client.Create(ctx, obj, opts...)
}

func (c countingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	countWrite("update", obj)
	return c.Client.Update(ctx, obj, opts...)
}

func (c countingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	countWrite("patch", obj)
	return c.Client.Patch(ctx, obj, patch, opts...)
}

func (c countingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	countWrite("delete", obj)
	return c.Client.Delete(ctx, obj, opts...)
}

func (c countingClient) Status() client.SubResourceWriter {
	return countingStatus{c.Client.Status()}
}

type countingStatus struct{ client.SubResourceWriter }

func (s countingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	countWrite("update-status", obj)
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s countingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	countWrite("patch-status", obj)
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}
