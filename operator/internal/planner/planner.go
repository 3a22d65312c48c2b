// Package planner runs Kiln's planner (`kiln plan --output json`, docs/plan-format.md) for a
// model and a device and reads its plan. The planner lives once, in C++: the operator image
// carries the kiln binary and the operator calls it.
package planner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// FormatVersion is the plan format this package reads.
const FormatVersion = 1

// ModelFacts is the plan's "model" object (the fields the operator reads).
type ModelFacts struct {
	Parameters            int64 `json:"parameters"`
	WeightBytes           int64 `json:"weight_bytes"`
	CPUWeightBytes        int64 `json:"cpu_weight_bytes"`
	MaxPositionEmbeddings int64 `json:"max_position_embeddings"`
}

// Decision is the plan's "plan" object.
type Decision struct {
	MemoryUtilization   float64  `json:"memory_utilization"`
	TensorParallelSize  int64    `json:"tensor_parallel_size"`
	BudgetBytes         int64    `json:"budget_bytes"`
	WeightBytes         int64    `json:"weight_bytes"`
	ActivationBytes     int64    `json:"activation_bytes"`
	KvBytesPerToken     int64    `json:"kv_bytes_per_token"`
	KvBlocks            int64    `json:"kv_blocks"`
	BlockSize           int64    `json:"block_size"`
	KvCacheBytes        int64    `json:"kv_cache_bytes"`
	KvTokens            int64    `json:"kv_tokens"`
	MaxModelLen         int64    `json:"max_model_len"`
	MaxNumSeqs          int64    `json:"max_num_seqs"`
	MaxNumBatchedTokens int64    `json:"max_num_batched_tokens"`
	KvCacheDtype        string   `json:"kv_cache_dtype"`
	EnablePrefixCaching bool     `json:"enable_prefix_caching"`
	MaxConcurrencyAtLen float64  `json:"max_concurrency_at_max_model_len"`
	Notes               []string `json:"notes"`
}

// Plan is `kiln plan --output json`.
type Plan struct {
	FormatVersion int        `json:"format_version"`
	Model         ModelFacts `json:"model"`
	Device        struct {
		Name        string `json:"name"`
		Kind        string `json:"kind"`
		MemoryBytes int64  `json:"memory_bytes"`
		Count       int64  `json:"count"`
	} `json:"device"`
	Plan Decision `json:"plan"`
	// ServeArgs are `kiln serve`'s arguments for the plan.
	ServeArgs []string `json:"serve_args"`
}

// Error is a plan that could not be made: the planner's own message (what does not fit and what
// would).
type Error struct{ Message string }

func (e *Error) Error() string { return e.Message }

// Planner calls the kiln binary.
type Planner struct {
	// Binary is the kiln executable.
	Binary string
	// Timeout bounds one run (default 30 s).
	Timeout time.Duration
}

// Keys the planner takes; other preferences are the server's alone.
var plannerKeys = map[string]bool{
	"memory_utilization": true, "gpu_memory_utilization": true, "max_model_len": true,
	"max_num_seqs": true, "max_num_batched_tokens": true, "kv_cache_dtype": true,
	"block_size": true, "enable_prefix_caching": true, "tensor_parallel_size": true,
	"pipeline_parallel_size": true, "quantization": true,
}

// IsPlannerKey reports whether `key` is a preference the planner reads.
func IsPlannerKey(key string) bool { return plannerKeys[key] }

// PreferenceText is a preference value as `--set key=value` takes it.
func PreferenceText(value any) string {
	switch v := value.(type) {
	case string:
		return v
	case bool:
		if v {
			return "true"
		}
		return "false"
	case float64:
		if v == float64(int64(v)) {
			return fmt.Sprintf("%d", int64(v))
		}
		return fmt.Sprintf("%g", v)
	default:
		raw, _ := json.Marshal(v)
		return string(raw)
	}
}

// Make plans the model whose Hugging Face config.json is `hfConfig` for `device` (cpu:<MiB>,
// gpu:<MiB> or a GPU name) with the planner's preferences among `prefs`.
func (p *Planner) Make(ctx context.Context, hfConfig []byte, device string,
	prefs map[string]any) (*Plan, error) {
	dir, err := os.MkdirTemp("", "kiln-plan-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	config := filepath.Join(dir, "config.json")
	if err := os.WriteFile(config, hfConfig, 0o600); err != nil {
		return nil, err
	}
	args := []string{"plan", config, "--device", device, "--output", "json"}
	var keys []string
	for k := range prefs {
		if plannerKeys[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) > 0 {
		args = append(args, "--set")
		for _, k := range keys {
			args = append(args, k+"="+PreferenceText(prefs[k]))
		}
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.Binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); ok && ctx.Err() == nil {
			msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(stderr.String()),
				"kiln plan: "))
			return nil, &Error{Message: msg}
		}
		return nil, fmt.Errorf("running %s plan: %v (%s)", p.Binary, err,
			strings.TrimSpace(stderr.String()))
	}
	var plan Plan
	if err := json.Unmarshal(stdout.Bytes(), &plan); err != nil {
		return nil, fmt.Errorf("kiln plan wrote no plan JSON: %v", err)
	}
	if plan.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("kiln plan wrote format_version %d; this operator reads %d",
			plan.FormatVersion, FormatVersion)
	}
	return &plan, nil
}
