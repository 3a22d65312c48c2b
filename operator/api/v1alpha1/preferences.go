package v1alpha1

import (
	"encoding/json"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// VllmPreferences are vLLM engine arguments by their snake_case names. The schema names the ones
// its rules read; every other key is kept as written (the schema preserves unknown fields) and
// handed to the planner, which refuses keys it does not know.
//
// +kubebuilder:pruning:PreserveUnknownFields
type VllmPreferences struct {
	// +kubebuilder:validation:Minimum=1
	// +optional
	TensorParallelSize *int32 `json:"tensor_parallel_size,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +optional
	PipelineParallelSize *int32 `json:"pipeline_parallel_size,omitempty"`

	// Other holds the other keys as written.
	Other map[string]apiextensionsv1.JSON `json:"-"`
}

// UnmarshalJSON reads the named keys and keeps the others.
func (p *VllmPreferences) UnmarshalJSON(data []byte) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	*p = VllmPreferences{}
	for key, value := range all {
		var err error
		switch key {
		case "tensor_parallel_size":
			err = json.Unmarshal(value, &p.TensorParallelSize)
		case "pipeline_parallel_size":
			err = json.Unmarshal(value, &p.PipelineParallelSize)
		default:
			if p.Other == nil {
				p.Other = map[string]apiextensionsv1.JSON{}
			}
			p.Other[key] = apiextensionsv1.JSON{Raw: append([]byte(nil), value...)}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// MarshalJSON writes every key.
func (p VllmPreferences) MarshalJSON() ([]byte, error) {
	all := map[string]json.RawMessage{}
	for key, value := range p.Other {
		all[key] = value.Raw
	}
	for key, value := range map[string]*int32{
		"tensor_parallel_size":   p.TensorParallelSize,
		"pipeline_parallel_size": p.PipelineParallelSize,
	} {
		if value != nil {
			raw, err := json.Marshal(*value)
			if err != nil {
				return nil, err
			}
			all[key] = raw
		}
	}
	return json.Marshal(all)
}

// Map returns every preference as a plain Go value (numbers as float64, as encoding/json reads
// them).
func (p *VllmPreferences) Map() (map[string]any, error) {
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(raw, &m)
}
