package envtest

import (
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// autoscalingScale wraps the autoscaling/v1 Scale that the scale subresource reads and writes.
type autoscalingScale struct{ Scale autoscalingv1.Scale }

func (s *autoscalingScale) obj() client.Object { return &s.Scale }
