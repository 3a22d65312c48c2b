package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
)

// BenchmarkScale applies 200 ModelDeployments at once on 50 simulated nodes and reports the
// time until each is Running (p50, p99, all), the operator's API requests per reconcile, its
// peak memory, and the writes it makes when it reconciles everything again with nothing
// changed (a restart). The peer is Kubernetes itself: 200 plain Deployments of the same pod
// template on the same cluster, timed to available, so the ratio is what the operator adds.
// Run it with bench/operator_scale.sh.
func BenchmarkScale(b *testing.B) {
	const nodes, deployments, namespaces = 50, 200, 10
	ctx := context.Background()
	// Start from a quiet machine: wait (up to 3 minutes) for the 1-minute load to fall below
	// the core count. The control plane and the operator then load it themselves.
	for i := 0; i < 180 && load1() >= float64(runtime.NumCPU()); i++ {
		time.Sleep(time.Second)
	}
	fmt.Printf("load average before: %s (cores: %d)\n", loadavg(), runtime.NumCPU())
	for i := 0; i < nodes; i++ {
		if err := addNode(ctx, k8s, fmt.Sprintf("bench-%02d", i), "16", "64Gi", 0, "", nil); err != nil {
			b.Fatal(err)
		}
	}
	for n := 0; n < namespaces; n++ {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", n)}}); err != nil {
			b.Fatal(err)
		}
	}
	before := scrape(b)

	// The operator: 200 deployments of one catalog model over 10 namespaces (10 caches).
	created := make([]time.Time, deployments)
	mds := make([]*kilnv1.ModelDeployment, deployments)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < deployments; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			md := &kilnv1.ModelDeployment{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("m-%03d", i), Namespace: fmt.Sprintf("bench-%d", i%namespaces)},
				Spec: kilnv1.ModelDeploymentSpec{Model: kilnv1.ModelSource{Catalog: &kilnv1.CatalogModel{Name: "smollm2-135m"}},
					WorkloadType: "generative", Compute: "cpu"},
			}
			created[i] = time.Now()
			if err := k8s.Create(ctx, md); err != nil {
				b.Error(err)
			}
			mds[i] = md
		}(i)
	}
	wg.Wait()
	ready := waitAll(b, deployments, 5*time.Minute, func(i int) bool {
		var md kilnv1.ModelDeployment
		return k8s.Get(ctx, client.ObjectKeyFromObject(mds[i]), &md) == nil && md.Status.State == kilnv1.StateRunning
	})
	allOperator := time.Since(start)
	after := scrape(b)
	opLat := latencies(created, ready)

	// Nothing changes; the operator restarts and reconciles all 200 again.
	operator.stop()
	if err := operator.start(); err != nil { // a new process: its counters start at zero
		b.Fatal(err)
	}
	var resync map[string]float64
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		m, err := scrapeOnce()
		if err == nil && m["reconcile_total"] >= deployments {
			time.Sleep(2 * time.Second) // let requeued ones settle
			resync, _ = scrapeOnce()
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if resync == nil {
		b.Fatal("the restarted operator did not reconcile every deployment within 2 minutes")
	}

	// The peer: plain Deployments with the same pod template.
	var template corev1.PodTemplateSpec
	var d appsv1.Deployment
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "bench-0", Name: "m-000"}, &d); err != nil {
		b.Fatal(err)
	}
	template = *d.Spec.Template.DeepCopy()
	template.Spec.Volumes = nil
	template.Spec.Containers[0].VolumeMounts = nil
	template.Spec.Containers[0].Env = nil
	plainCreated := make([]time.Time, deployments)
	plain := make([]*appsv1.Deployment, deployments)
	start = time.Now()
	for i := 0; i < deployments; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			labels := map[string]string{"app": fmt.Sprintf("plain-%03d", i)}
			t := *template.DeepCopy()
			t.Labels = labels
			dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("plain-%03d", i), Namespace: fmt.Sprintf("bench-%d", i%namespaces)},
				Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: t}}
			plainCreated[i] = time.Now()
			if err := k8s.Create(ctx, dep); err != nil {
				b.Error(err)
			}
			plain[i] = dep
		}(i)
	}
	wg.Wait()
	plainReady := waitAll(b, deployments, 5*time.Minute, func(i int) bool {
		var dep appsv1.Deployment
		return k8s.Get(ctx, client.ObjectKeyFromObject(plain[i]), &dep) == nil && dep.Status.AvailableReplicas == 1
	})
	allPlain := time.Since(start)
	plainLat := latencies(plainCreated, plainReady)

	reconciles := after["reconcile_total"] - before["reconcile_total"]
	requests := after["requests_total"] - before["requests_total"]
	fmt.Printf("\n%d ModelDeployments on %d kwok nodes (%d namespaces, one cache each)\n", deployments, nodes, namespaces)
	fmt.Printf("  to Running: p50 %.2f s, p99 %.2f s, all %.2f s (target: all within 60 s)\n",
		pct(opLat, 50), pct(opLat, 99), allOperator.Seconds())
	fmt.Printf("  plain Deployments to available (peer): p50 %.2f s, p99 %.2f s, all %.2f s\n",
		pct(plainLat, 50), pct(plainLat, 99), allPlain.Seconds())
	fmt.Printf("  ratio operator / plain: p50 %.2fx, p99 %.2fx, all %.2fx\n",
		pct(opLat, 50)/pct(plainLat, 50), pct(opLat, 99)/pct(plainLat, 99), allOperator.Seconds()/allPlain.Seconds())
	writes := after["writes_total"] - before["writes_total"]
	fmt.Printf("  reconciles %.0f; writes %.0f (%.2f per reconcile); client-go requests %.0f in all, "+
		"with lists, watches and leader election (%.2f per reconcile)\n",
		reconciles, writes, writes/reconciles, requests, requests/reconciles)
	fmt.Printf("  after a restart with nothing changed: %.0f reconciles, %.0f writes (target 0), "+
		"%.0f client-go requests\n", resync["reconcile_total"], resync["writes_total"], resync["requests_total"])
	fmt.Printf("  operator peak memory (VmHWM) %.1f MiB\n", peakRSS())
	fmt.Printf("load average after: %s\n", loadavg())
	if resync["writes_total"] != 0 {
		b.Errorf("a reconcile with nothing changed wrote %.0f times", resync["writes_total"])
	}
}

// waitAll polls until done(i) holds for every i, and returns when each first held.
func waitAll(b *testing.B, n int, timeout time.Duration, done func(int) bool) []time.Time {
	at := make([]time.Time, n)
	deadline := time.Now().Add(timeout)
	left := n
	for left > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d not done within %s", left, n, timeout)
		}
		for i := 0; i < n; i++ {
			if at[i].IsZero() && done(i) {
				at[i] = time.Now()
				left--
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return at
}

func latencies(from, to []time.Time) []float64 {
	out := make([]float64, len(from))
	for i := range from {
		out[i] = to[i].Sub(from[i]).Seconds()
	}
	sort.Float64s(out)
	return out
}

func pct(sorted []float64, p int) float64 {
	i := (len(sorted)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return sorted[i-1]
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func peakRSS() float64 {
	operator.mu.Lock()
	cmd := operator.cmd
	operator.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(s.Text())[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func load1() float64 {
	f := strings.Fields(loadavg())
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// scrape reads the operator's metrics, waiting (up to 30 s) for its metrics server.
func scrape(b *testing.B) map[string]float64 {
	var err error
	for i := 0; i < 300; i++ {
		var m map[string]float64
		if m, err = scrapeOnce(); err == nil {
			return m
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatal(err)
	return nil
}

// scrapeOnce reads the operator's metrics: reconciles of the ModelDeployment controller, and
// client-go's API requests (all, and the writing ones).
func scrapeOnce() (map[string]float64, error) {
	var addr string
	for _, a := range operator.args {
		if strings.HasPrefix(a, "--metrics-bind-address=") {
			addr = strings.TrimPrefix(a, "--metrics-bind-address=")
		}
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndex(line, " ")
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, "controller_runtime_reconcile_total{") && strings.Contains(line, `controller="modeldeployment"`):
			out["reconcile_total"] += v
		case strings.HasPrefix(line, "rest_client_requests_total{"):
			out["requests_total"] += v // all of client-go's: watches and leader election too
		case strings.HasPrefix(line, "kiln_operator_api_writes_total{"):
			out["writes_total"] += v
		}
	}
	return out, s.Err()
}
