package controller

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"

	"kiln.dev/operator/internal/planner"
)

// CatalogRef names the catalog ConfigMap.
type CatalogRef struct{ Namespace, Name, Key string }

// Config is what the controllers need besides the manager.
type Config struct {
	Options Options
	Catalog CatalogRef
	Planner *planner.Planner
}

// Setup registers the ModelDeployment and Model controllers with `mgr`.
func Setup(ctx context.Context, mgr ctrl.Manager, cfg Config) error {
	// The catalog is read through the manager's cache, which watches ConfigMaps anyway (each
	// model's catalog entry is one).
	cat := &CatalogSource{Client: mgr.GetClient(), Namespace: cfg.Catalog.Namespace,
		Name: cfg.Catalog.Name, Key: cfg.Catalog.Key}
	if cat.Key == "" {
		cat.Key = "catalog.json"
	}
	writer := countingClient{mgr.GetClient()}
	md := &ModelDeploymentReconciler{
		Client: writer, Scheme: mgr.GetScheme(), Recorder: mgr.GetEventRecorder("kiln-operator"),
		Catalog: cat, Planner: cfg.Planner, Options: cfg.Options, Gateway: GatewayServed(mgr.GetRESTMapper()),
	}
	if err := md.SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	return (&ModelReconciler{Client: writer, Catalog: cat}).SetupWithManager(mgr)
}
