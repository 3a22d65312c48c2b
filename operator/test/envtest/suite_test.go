// Tests of the API and the controllers on a real kube-apiserver and etcd (envtest). The binaries
// come from scripts/install_k8s_tools.sh, built from the Go module proxy; KUBEBUILDER_ASSETS
// names their folder and KILN_BINARY the kiln executable whose planner sizes models
// (scripts/test_operator.sh sets both). envtest runs no kube-controller-manager: where a test
// needs a Job to finish or a Deployment's pods to be ready, it writes that status itself, as
// those controllers would, and says so.
package envtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
	"kiln.dev/operator/internal/controller"
	"kiln.dev/operator/internal/planner"
)

var (
	k8s        client.Client
	restConfig *rest.Config
	scheme     = runtime.NewScheme()
	// operatorNamespace holds the catalog ConfigMap.
	operatorNamespace = "kiln-system"
)

const serverImage = "kiln.test/kiln:test"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	for _, v := range []string{"KUBEBUILDER_ASSETS", "KILN_BINARY", "KILN_GATEWAY_API_CRDS"} {
		if os.Getenv(v) == "" {
			fmt.Fprintf(os.Stderr, "%s is not set: run scripts/test_operator.sh, which builds and names it\n", v)
			return 1
		}
	}
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(kilnv1.AddToScheme(scheme))
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(zapcore.Level(zapLevel()))))

	env := &envtest.Environment{
		// Kiln's CRDs, and the Gateway API's (the standard channel, from the
		// sigs.k8s.io/gateway-api module) so external exposure has HTTPRoutes to make.
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "..", "deploy", "helm", "kiln", "crds"),
			os.Getenv("KILN_GATEWAY_API_CRDS")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting kube-apiserver and etcd: %v\n", err)
		return 1
	}
	defer func() { _ = env.Stop() }()

	restConfig = cfg
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := installCatalog(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	err = controller.Setup(ctx, mgr, controller.Config{
		Options: controller.Options{
			ServerImage: serverImage, ImagePullPolicy: corev1.PullIfNotPresent, APIKeys: true,
			CacheAccessMode: corev1.ReadWriteOnce, DefaultGPUMemoryMiB: 81559,
			GatewayName: "inference-gateway", GatewayNamespace: "gateway-system",
		},
		Catalog: controller.CatalogRef{Namespace: operatorNamespace, Name: "kiln-catalog", Key: "catalog.json"},
		Planner: &planner.Planner{Binary: os.Getenv("KILN_BINARY"), Timeout: 30 * time.Second},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "manager: %v\n", err)
		}
	}()
	return m.Run()
}

func zapLevel() int8 {
	if os.Getenv("KILN_OPERATOR_TEST_VERBOSE") != "" {
		return -1
	}
	return 2 // errors only
}

// installCatalog puts the chart's catalog in the ConfigMap the operator reads.
func installCatalog(ctx context.Context) error {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "helm", "kiln", "catalog.json"))
	if err != nil {
		return err
	}
	return k8s.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kiln-catalog", Namespace: operatorNamespace},
		Data:       map[string]string{"catalog.json": string(doc)},
	})
}
