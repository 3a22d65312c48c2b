package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
	"kiln.dev/operator/internal/planner"
)

// Preferences the server must never take from a manifest: they would run code or read files
// the cluster's administrator did not choose.
var blockedPreferences = []string{
	"trust_remote_code", "hf_token", "download_dir", "allowed_local_media_path", "worker_cls",
	"scheduler_cls",
}

// preferencesOf are vllm.preferences as plain values.
func preferencesOf(md *kilnv1.ModelDeployment) (map[string]any, error) {
	if md.Spec.Vllm == nil || md.Spec.Vllm.Preferences == nil {
		return map[string]any{}, nil
	}
	prefs, err := md.Spec.Vllm.Preferences.Map()
	if err != nil {
		return nil, err
	}
	for _, key := range blockedPreferences {
		if _, ok := prefs[key]; ok {
			return nil, &ConditionError{Reason: "PreferenceNotAllowed", Message: fmt.Sprintf(
				"vllm.preferences.%s is not allowed: it would let a manifest run code or read files "+
					"on the node", key)}
		}
	}
	return prefs, nil
}

// IgnoredPreferences are the preferences neither the planner nor the server reads (vLLM
// arguments without a meaning in Kiln, such as enforce_eager or dtype); status says so.
func IgnoredPreferences(prefs map[string]any) []string {
	var ignored []string
	for k := range prefs {
		if !planner.IsPlannerKey(k) {
			ignored = append(ignored, k)
		}
	}
	sort.Strings(ignored)
	return ignored
}

// gpuNode is a node that can hold one replica of a GPU deployment.
type gpuNode struct {
	name      string
	free      int64
	memoryMiB int64 // 0: not labelled
}

// tolerates reports whether `tolerations` tolerate every NoSchedule/NoExecute taint of `node`.
func tolerates(node *corev1.Node, tolerations []corev1.Toleration) bool {
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		ok := false
		for j := range tolerations {
			if tolerations[j].ToleratesTaint(klog.Background(), t, true) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// gpuNodes are the nodes a replica of `md` could go to, with the GPUs not yet asked for by pods
// of other deployments.
func gpuNodes(ctx context.Context, c client.Reader, md *kilnv1.ModelDeployment, gpus int64,
	tolerations []corev1.Toleration) ([]gpuNode, string, error) {
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return nil, "", err
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods); err != nil {
		return nil, "", err
	}
	used := map[string]int64{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.Namespace == md.Namespace && p.Labels[LabelDeployment] == md.Name {
			continue // this deployment's own pods hold what they hold
		}
		for _, ctr := range p.Spec.Containers {
			if q, ok := ctr.Resources.Limits[GPUResource]; ok {
				used[p.Spec.NodeName] += q.Value()
			}
		}
	}
	selector := labels.SelectorFromSet(md.Spec.NodeSelector)
	var fit []gpuNode
	var gpuTotal, withGPUs int
	for i := range nodes.Items {
		n := &nodes.Items[i]
		alloc, ok := n.Status.Allocatable[GPUResource]
		if !ok || alloc.Value() == 0 {
			continue
		}
		withGPUs++
		gpuTotal += int(alloc.Value())
		if n.Spec.Unschedulable || !nodeReady(n) || !selector.Matches(labels.Set(n.Labels)) ||
			!tolerates(n, tolerations) {
			continue
		}
		free := alloc.Value() - used[n.Name]
		if free < gpus {
			continue
		}
		mem, _ := strconv.ParseInt(n.Labels[GPUMemoryLabel], 10, 64)
		fit = append(fit, gpuNode{name: n.Name, free: free, memoryMiB: mem})
	}
	why := ""
	if len(fit) == 0 {
		switch {
		case withGPUs == 0:
			why = "no node has nvidia.com/gpu capacity"
		default:
			why = fmt.Sprintf("no Ready node that matches nodeSelector and tolerations has %d free GPU(s) "+
				"(%d GPU node(s), %d GPU(s) in all; the others are in use)", gpus, withGPUs, gpuTotal)
		}
	}
	return fit, why, nil
}

// podTolerations are the tolerations the rendered pods carry.
func podTolerations(md *kilnv1.ModelDeployment) []corev1.Toleration {
	t := append([]corev1.Toleration(nil), md.Spec.Tolerations...)
	if md.Spec.Compute == "gpu" {
		t = append(t, corev1.Toleration{Key: string(GPUResource), Operator: corev1.TolerationOpExists,
			Effect: corev1.TaintEffectNoSchedule})
	}
	return t
}

// Size works out a deployment's resources and plan. `plan` is nil for the planner (tests may
// leave it out; the model is then sized by the catalog's file size alone).
func Size(ctx context.Context, c client.Reader, p *planner.Planner, md *kilnv1.ModelDeployment,
	r *Resolved, opts *Options) (*Sizing, error) {
	prefs, err := preferencesOf(md)
	if err != nil {
		return nil, err
	}
	req, lim, memoryGiven := baseResources(md)
	s := &Sizing{Requests: req, Limits: lim}
	generative := r.Runtime != "predictive"
	canPlan := generative && p != nil && len(r.HFConfig) > 0

	if md.Spec.Compute == "gpu" {
		gpus := gpuCount(md)
		if md.Spec.SkipGpuResource {
			gpus = 0
		}
		nodes, why, err := gpuNodes(ctx, c, md, gpus, podTolerations(md))
		if err != nil {
			return nil, err
		}
		if len(nodes) == 0 {
			return nil, &ConditionError{Reason: "InsufficientGPU", Retry: true, Message: fmt.Sprintf(
				"no node can hold a replica needing %d GPU(s): %s", gpus, why)}
		}
		if !canPlan {
			return s, nil
		}
		// Plan for each GPU memory size among the nodes, smallest first: the smallest that fits
		// is the plan, and pods go only to nodes with at least that much.
		sizes := map[int64]bool{}
		for _, n := range nodes {
			m := n.memoryMiB
			if m == 0 {
				m = opts.DefaultGPUMemoryMiB
			}
			sizes[m] = true
		}
		var ordered []int64
		for m := range sizes {
			ordered = append(ordered, m)
		}
		sort.Slice(ordered, func(i, j int) bool { return ordered[i] < ordered[j] })
		var lastErr error
		for _, m := range ordered {
			device := fmt.Sprintf("gpu:%d", m)
			plan, err := p.Make(ctx, r.HFConfig, device, prefs)
			if err != nil {
				var pe *planner.Error
				if errors.As(err, &pe) {
					lastErr = err
					continue
				}
				return nil, err
			}
			s.Plan, s.Device = plan, device
			if m != ordered[0] { // smaller GPUs cannot hold it: keep the pods off them
				s.MinGPUMemoryMiB = m
			}
			return s, nil
		}
		return nil, &ConditionError{Reason: "PlanDoesNotFit", Message: fmt.Sprintf(
			"the model does not fit the GPUs of the nodes that have room (%s): %v",
			joinMiB(ordered), lastErr)}
	}

	if !canPlan {
		if r.SizeBytes > 0 && !memoryGiven {
			raiseMemory(s, r.SizeBytes*2)
		}
		return s, nil
	}
	memLimit := s.Limits[corev1.ResourceMemory]
	if !memoryGiven {
		// A first plan on a device too large to bind anything gives the model's weights and one
		// step's activations; the pod gets room for them and a KV cache of one context (up to
		// 4,096 tokens), at the planner's share of memory.
		probe, err := p.Make(ctx, r.HFConfig, "cpu:1048576", prefs)
		if err != nil {
			return nil, planFailure(err)
		}
		context := probe.Plan.MaxModelLen
		if context > 4096 {
			context = 4096
		}
		need := probe.Plan.WeightBytes + probe.Plan.ActivationBytes + probe.Plan.KvBytesPerToken*context
		util := probe.Plan.MemoryUtilization
		if util <= 0 {
			util = 0.5
		}
		raiseMemory(s, int64(float64(need)/util))
		memLimit = s.Limits[corev1.ResourceMemory]
	}
	device := fmt.Sprintf("cpu:%d", memLimit.Value()>>20)
	plan, err := p.Make(ctx, r.HFConfig, device, prefs)
	if err != nil {
		return nil, planFailure(err)
	}
	s.Plan, s.Device = plan, device
	return s, nil
}

func joinMiB(sizes []int64) string {
	parts := make([]string, len(sizes))
	for i, m := range sizes {
		parts[i] = fmt.Sprintf("%d MiB", m)
	}
	return strings.Join(parts, ", ")
}

func planFailure(err error) error {
	var pe *planner.Error
	if errors.As(err, &pe) {
		return &ConditionError{Reason: "PlanDoesNotFit", Message: "kiln plan: " + pe.Message}
	}
	return err
}

// raiseMemory lifts the memory limit (and the request, so the scheduler reserves it) to `bytes`
// rounded up to 256 MiB, when that is more than the defaults.
func raiseMemory(s *Sizing, bytes int64) {
	mib := roundUpMiB(bytes)
	q := *resource.NewQuantity(mib<<20, resource.BinarySI)
	if cur := s.Limits[corev1.ResourceMemory]; q.Cmp(cur) > 0 {
		s.Limits[corev1.ResourceMemory] = q
		s.Requests[corev1.ResourceMemory] = q
	}
}
