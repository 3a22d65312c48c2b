// Package catalog reads Kiln's model catalog (docs/catalog-format.md: Foundry Local's
// catalog.json with Kiln's fields) and picks the entry a ModelDeployment names, as
// `kiln serve <name>` does.
package catalog

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Variant is one build of an entry.
type Variant struct {
	ID                string `json:"id"`
	Compute           string `json:"compute"`
	ExecutionProvider string `json:"executionProvider,omitempty"`
	FileSizeBytes     int64  `json:"fileSizeBytes,omitempty"`
}

// Entry is one catalog entry. Raw keeps the entry as written, so the server is handed exactly
// what the catalog says.
type Entry struct {
	ID                  string          `json:"id"`
	Alias               string          `json:"alias"`
	DisplayName         string          `json:"displayName,omitempty"`
	Publisher           string          `json:"publisher,omitempty"`
	License             string          `json:"license,omitempty"`
	Task                string          `json:"task,omitempty"`
	Framework           string          `json:"framework"`
	ModelVersion        string          `json:"modelVersion,omitempty"`
	Variants            []Variant       `json:"variants,omitempty"`
	SupportedCompute    []string        `json:"supportedCompute,omitempty"`
	URI                 string          `json:"uri,omitempty"`
	ContextLength       int64           `json:"contextLength,omitempty"`
	SupportsToolCalling bool            `json:"supportsToolCalling,omitempty"`
	HFConfig            json.RawMessage `json:"hfConfig,omitempty"`
	Raw                 json.RawMessage `json:"-"`
}

// Runtime is the runtime the entry's framework names: vllm, or onnx-genai for ONNX (predictive
// for a predictive task).
func (e *Entry) Runtime() string {
	if strings.EqualFold(e.Framework, "vllm") {
		return "vllm"
	}
	if e.Task == "predictive" || e.Task == "classification" || e.Task == "object-detection" ||
		e.Task == "regression" {
		return "predictive"
	}
	return "onnx-genai"
}

// Supports reports whether the entry runs on `compute` (cpu or gpu).
func (e *Entry) Supports(compute string) bool {
	if len(e.SupportedCompute) == 0 {
		for _, v := range e.Variants {
			if v.Compute == compute {
				return true
			}
		}
		return len(e.Variants) == 0 && compute == "cpu"
	}
	for _, c := range e.SupportedCompute {
		if c == compute {
			return true
		}
	}
	return false
}

// VariantFor is the entry's variant for `compute`, or "" when it has none.
func (e *Entry) VariantFor(compute string) string {
	for _, v := range e.Variants {
		if v.Compute == compute {
			return v.ID
		}
	}
	return ""
}

// SizeBytes is the largest variant's file size, or 0 when the catalog does not state it.
func (e *Entry) SizeBytes() int64 {
	var size int64
	for _, v := range e.Variants {
		if v.FileSizeBytes > size {
			size = v.FileSizeBytes
		}
	}
	return size
}

// Catalog is a parsed catalog document.
type Catalog struct {
	Entries []Entry
}

// Parse reads {"models": [...]} or a bare array of entries. `origin` names the document in
// errors.
func Parse(doc []byte, origin string) (*Catalog, error) {
	var raws []json.RawMessage
	var wrapped struct {
		Models []json.RawMessage `json:"models"`
	}
	if err := json.Unmarshal(doc, &wrapped); err == nil && wrapped.Models != nil {
		raws = wrapped.Models
	} else if err := json.Unmarshal(doc, &raws); err != nil {
		return nil, fmt.Errorf("%s: not a catalog ({\"models\": [...]} or an array of entries): %v",
			origin, err)
	}
	c := &Catalog{}
	for i, raw := range raws {
		var e Entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("%s: models[%d]: %v", origin, i, err)
		}
		if e.ID == "" || e.Alias == "" || e.Framework == "" {
			return nil, fmt.Errorf("%s: models[%d]: id, alias and framework are required", origin, i)
		}
		e.Raw = append(json.RawMessage(nil), raw...)
		c.Entries = append(c.Entries, e)
	}
	return c, nil
}

// versionNumber orders model versions: numbers numerically, others after them as text.
func versionLess(a, b string) bool {
	na, errA := strconv.Atoi(a)
	nb, errB := strconv.Atoi(b)
	if errA == nil && errB == nil {
		return na < nb
	}
	if (errA == nil) != (errB == nil) {
		return errA == nil
	}
	return a < b
}

// NotFoundError says no entry matched; Known lists the aliases there are.
type NotFoundError struct {
	Name, Version, Compute string
	Known                  []string
	ComputeMismatch        []string // entries that match the name but not the compute
}

func (e *NotFoundError) Error() string {
	if len(e.ComputeMismatch) > 0 {
		return fmt.Sprintf("catalog model %q has no %s variant (entries %s); set compute to what "+
			"the entry supports", e.Name, e.Compute, strings.Join(e.ComputeMismatch, ", "))
	}
	v := ""
	if e.Version != "" && e.Version != "latest" {
		v = " version " + e.Version
	}
	return fmt.Sprintf("no catalog model %q%s; the catalog has: %s", e.Name, v,
		strings.Join(e.Known, ", "))
}

// Resolve picks the entry `name` (alias, id, or display name, case-insensitive; an id may leave
// out its ":version") stands for at `version` ("" or latest: the highest) for `compute`. Among
// several, an entry whose framework matches `runtime` (when given) wins, then the highest
// version, then catalog order.
func (c *Catalog) Resolve(name, version, compute, runtime string) (*Entry, error) {
	var named []*Entry
	for i := range c.Entries {
		e := &c.Entries[i]
		idName, _, _ := strings.Cut(e.ID, ":")
		if strings.EqualFold(e.Alias, name) || strings.EqualFold(e.ID, name) ||
			strings.EqualFold(idName, name) || strings.EqualFold(e.DisplayName, name) {
			if version != "" && version != "latest" && e.ModelVersion != version &&
				!strings.HasSuffix(e.ID, ":"+version) {
				continue
			}
			named = append(named, e)
		}
	}
	var fit []*Entry
	var mismatch []string
	for _, e := range named {
		if e.Supports(compute) {
			fit = append(fit, e)
		} else {
			mismatch = append(mismatch, e.ID)
		}
	}
	if len(fit) == 0 {
		known := map[string]bool{}
		for _, e := range c.Entries {
			known[e.Alias] = true
		}
		var list []string
		for a := range known {
			list = append(list, a)
		}
		sort.Strings(list)
		return nil, &NotFoundError{Name: name, Version: version, Compute: compute, Known: list,
			ComputeMismatch: mismatch}
	}
	sort.SliceStable(fit, func(i, j int) bool {
		if runtime != "" {
			ri, rj := fit[i].Runtime() == runtime, fit[j].Runtime() == runtime
			if ri != rj {
				return ri
			}
		}
		return versionLess(fit[j].ModelVersion, fit[i].ModelVersion)
	})
	return fit[0], nil
}
