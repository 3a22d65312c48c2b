package envtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"kiln.dev/operator/internal/controller"
)

// The pod specs the operator renders for a CPU model, run on this machine: the pull Job's
// command fills a folder standing for the cache volume, then the server's command (its args,
// env and the Secret's API key, /var/lib/kiln and /etc/kiln mapped to local folders) starts a
// Kiln server that lists the model and answers a chat request. The operator starts Kiln the way
// Kiln really starts. The model is the default one's GGUF (KILN_SMOLLM2_GGUF), served over
// HTTP from this test as a catalog entry's uri.
func TestRenderedPodsRunOnHost(t *testing.T) {
	gguf := os.Getenv("KILN_SMOLLM2_GGUF")
	if gguf == "" {
		t.Fatal("KILN_SMOLLM2_GGUF is not set: scripts/test_operator.sh sets it")
	}
	ctx := context.Background()
	data, err := os.ReadFile(gguf)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "smollm2.gguf", time.Now(), bytes.NewReader(data))
	}))
	defer files.Close()

	// The catalog gets an entry whose files this test serves.
	var cm corev1.ConfigMap
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: operatorNamespace, Name: "kiln-catalog"}, &cm); err != nil {
		t.Fatal(err)
	}
	var cat map[string][]map[string]any
	if err := json.Unmarshal([]byte(cm.Data["catalog.json"]), &cat); err != nil {
		t.Fatal(err)
	}
	var smol map[string]any
	for _, e := range cat["models"] {
		if e["alias"] == "smollm2-135m" {
			smol = e
		}
	}
	entry := map[string]any{}
	for k, v := range smol {
		entry[k] = v
	}
	entry["id"], entry["alias"] = "smollm2-135m-local:1", "smollm2-local"
	entry["uri"], entry["sha256"] = files.URL+"/smollm2-135m-instruct.Q4_1.gguf", hex.EncodeToString(sum[:])
	cat["models"] = append(cat["models"], entry)
	doc, _ := json.Marshal(cat)
	cm.Data["catalog.json"] = string(doc)
	if err := k8s.Update(ctx, &cm); err != nil {
		t.Fatal(err)
	}

	port := freePort(t)
	md := newDeployment(t, "hostrun", fmt.Sprintf(`
metadata: {name: smol}
spec:
  model: {catalog: {name: smollm2-local}}
  workloadType: generative
  compute: cpu
  port: %d
  resources:
    limits: {cpu: "2", memory: 2Gi}
`, port))
	job := cacheJob(t, md)
	root := t.TempDir()
	mounts := map[string]string{controller.KilnHome: filepath.Join(root, "cache"), controller.CatalogDir: filepath.Join(root, "catalog")}
	for _, dir := range mounts {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var entryCM corev1.ConfigMap
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: "hostrun",
		Name: job.Spec.Template.Spec.Volumes[1].ConfigMap.Name}, &entryCM); err != nil {
		t.Fatal(err)
	}
	for k, v := range entryCM.Data {
		if err := os.WriteFile(filepath.Join(mounts[controller.CatalogDir], k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	pull := hostCommand(t, job.Spec.Template.Spec.Containers[0], mounts, nil)
	if out, err := pull.CombinedOutput(); err != nil {
		t.Fatalf("the pull Job's command failed: %v\n%s", err, out)
	}
	finishJob(t, job)

	d := serverDeployment(t, md)
	var keys corev1.Secret
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: "hostrun", Name: "smol-api-keys"}, &keys); err != nil {
		t.Fatal(err)
	}
	server := hostCommand(t, d.Spec.Template.Spec.Containers[0], mounts, &keys)
	var log bytes.Buffer
	server.Stdout, server.Stderr = &log, &log
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = server.Process.Signal(os.Interrupt)
		_ = server.Wait()
	}()
	key := string(keys.Data["primary-key"])
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	eventually(t, 120*time.Second, "the server's readiness probe path", func() error {
		probe := d.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path
		resp, err := http.Get(base + probe)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %d; server log:\n%s", probe, resp.StatusCode, log.String())
		}
		return nil
	})
	models := call(t, "GET", base+"/v1/models", key, "")
	if !strings.Contains(models, `"id":"smollm2-local"`) {
		t.Fatalf("/v1/models: %s", models)
	}
	// The secondary key is accepted too, so either can be rotated.
	call(t, "GET", base+"/v1/models", string(keys.Data["secondary-key"]), "")
	if resp, err := http.Get(base + "/v1/models"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("without the Secret's API key the server should answer 401: %v %v", err, resp)
	}
	reply := call(t, "POST", base+"/v1/chat/completions", key,
		`{"model":"smollm2-local","messages":[{"role":"user","content":"Name the capital of France."}],"max_tokens":16,"temperature":0}`)
	var parsed struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal([]byte(reply), &parsed); err != nil || len(parsed.Choices) != 1 ||
		!strings.Contains(parsed.Choices[0].Message.Content, "Paris") {
		t.Fatalf("chat reply: %s", reply)
	}
}

var dollarRef = regexp.MustCompile(`\$\([A-Za-z_][A-Za-z0-9_]*\)`)

// hostCommand is a container's command with its env, run here: volume paths mapped to local
// folders, secretKeyRef values read from `secret`.
func hostCommand(t *testing.T, c corev1.Container, mounts map[string]string, secret *corev1.Secret) *exec.Cmd {
	t.Helper()
	mapPath := func(s string) string {
		for from, to := range mounts {
			s = strings.ReplaceAll(s, from, to)
		}
		return s
	}
	if len(c.Command) != 1 || c.Command[0] != "kiln" {
		t.Fatalf("the container runs %v, not kiln", c.Command)
	}
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = mapPath(a)
	}
	cmd := exec.Command(os.Getenv("KILN_BINARY"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	// As the kubelet does: values from Secrets, and $(NAME) expanded from the variables before.
	defined := map[string]string{}
	for _, e := range c.Env {
		var value string
		switch {
		case e.ValueFrom == nil:
			value = dollarRef.ReplaceAllStringFunc(mapPath(e.Value), func(ref string) string {
				if v, ok := defined[ref[2:len(ref)-1]]; ok {
					return v
				}
				return ref
			})
		case e.ValueFrom.SecretKeyRef != nil && secret != nil && e.ValueFrom.SecretKeyRef.Name == secret.Name:
			value = string(secret.Data[e.ValueFrom.SecretKeyRef.Key])
		default:
			t.Fatalf("env %s comes from somewhere this test does not map: %+v", e.Name, e.ValueFrom)
		}
		defined[e.Name] = value
		cmd.Env = append(cmd.Env, e.Name+"="+value)
	}
	return cmd
}

func call(t *testing.T, method, url, key, body string) string {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, out)
	}
	return string(out)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
