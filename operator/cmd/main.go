// The Kiln operator: runs ModelDeployments and Models (group kiln.dev) on a Kubernetes cluster.
package main

import (
	"context"
	"flag"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
	"kiln.dev/operator/internal/controller"
	"kiln.dev/operator/internal/planner"
)

func main() {
	var (
		metricsAddr, probeAddr, leaderNamespace   string
		leaderElect, apiKeys                      bool
		catalogNamespace, catalogName, catalogKey string
		kilnBinary                                string
		opts                                      controller.Options
		pullPolicy, accessMode                    string
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address of the metrics endpoint (0 turns it off)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect one active operator among replicas")
	flag.StringVar(&leaderNamespace, "leader-election-namespace", "", "Namespace of the leader-election lease (default: the pod's)")
	flag.StringVar(&catalogNamespace, "catalog-namespace", "kiln-system", "Namespace of the catalog ConfigMap")
	flag.StringVar(&catalogName, "catalog-configmap", "kiln-catalog", "Name of the catalog ConfigMap")
	flag.StringVar(&catalogKey, "catalog-key", "catalog.json", "Key of the catalog in the ConfigMap")
	flag.StringVar(&kilnBinary, "kiln-binary", "kiln", "The kiln executable whose planner sizes generative models")
	flag.StringVar(&opts.ServerImage, "server-image", "ghcr.io/kiln-ai/kiln:latest", "Image of the Kiln server")
	flag.StringVar(&pullPolicy, "image-pull-policy", "IfNotPresent", "Pull policy of the server image")
	flag.StringVar(&opts.CacheStorageClass, "cache-storage-class", "", "Storage class of model cache volumes (default: the cluster's)")
	flag.StringVar(&accessMode, "cache-access-mode", "ReadWriteOnce", "Access mode of model cache volumes (ReadWriteMany lets replicas on several nodes share one)")
	flag.BoolVar(&apiKeys, "api-keys", true, "Give each deployment a Secret of API keys that its server requires")
	flag.StringVar(&opts.GatewayName, "gateway-name", "", "Gateway that HTTPRoutes of exposure external attach to")
	flag.StringVar(&opts.GatewayNamespace, "gateway-namespace", "", "Namespace of that Gateway")
	flag.Int64Var(&opts.DefaultGPUMemoryMiB, "default-gpu-memory-mib", 81559, "GPU memory to plan for when nodes do not label it (nvidia.com/gpu.memory)")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	opts.ImagePullPolicy = corev1.PullPolicy(pullPolicy)
	opts.CacheAccessMode = corev1.PersistentVolumeAccessMode(accessMode)
	opts.APIKeys = apiKeys

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(kilnv1.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "kiln-operator.kiln.dev",
		LeaderElectionNamespace:       leaderNamespace,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		log.Error(err, "starting the manager")
		os.Exit(1)
	}
	if err := controller.Setup(context.Background(), mgr, controller.Config{
		Options: opts,
		Catalog: controller.CatalogRef{Namespace: catalogNamespace, Name: catalogName, Key: catalogKey},
		Planner: &planner.Planner{Binary: kilnBinary},
	}); err != nil {
		log.Error(err, "setting up the controllers")
		os.Exit(1)
	}
	utilruntime.Must(mgr.AddHealthzCheck("healthz", healthz.Ping))
	utilruntime.Must(mgr.AddReadyzCheck("readyz", healthz.Ping))
	log.Info("starting", "serverImage", opts.ServerImage, "catalog", catalogNamespace+"/"+catalogName)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "running the manager")
		os.Exit(1)
	}
}
