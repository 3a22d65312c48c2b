package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
	"kiln.dev/operator/internal/planner"
)

// Condition types on a ModelDeployment.
const (
	CondModelResolved      = "ModelResolved"
	CondResourcesAvailable = "ResourcesAvailable"
	CondCached             = "Cached"
	CondAvailable          = "Available"
)

// pendingRecheck is how soon a deployment waiting on something outside the operator's watches
// (GPUs freed on a node, a registry) is looked at again.
const pendingRecheck = 30 * time.Second

// cacheRecheck is how soon a deployment waiting for its model cache is looked at again.
const cacheRecheck = 5 * time.Second

const indexModelRef = "spec.model.ref"

// ModelDeploymentReconciler turns a ModelDeployment into a model cache, a Deployment of Kiln
// servers, a Service, an API-key Secret and, for external exposure, an HTTPRoute.
type ModelDeploymentReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder events.EventRecorder
	Catalog  *CatalogSource
	Planner  *planner.Planner
	Options  Options
	// Gateway reports whether the Gateway API's HTTPRoute kind is served.
	Gateway func() bool
}

// +kubebuilder:rbac:groups=kiln.dev,resources=modeldeployments,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=kiln.dev,resources=modeldeployments/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=kiln.dev,resources=models,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services;persistentvolumeclaims;secrets;configmaps,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=nodes;pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one ModelDeployment's objects and status to what its spec asks.
func (r *ModelDeploymentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var md kilnv1.ModelDeployment
	if err := r.Get(ctx, req.NamespacedName, &md); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !md.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // owner references let the garbage collector remove the rest
	}
	st := md.Status.DeepCopy()
	st.ObservedGeneration = md.Generation
	result, err := r.reconcile(ctx, &md, st)
	if uerr := r.writeStatus(ctx, &md, st); uerr != nil && err == nil {
		err = uerr
	}
	return result, err
}

func (r *ModelDeploymentReconciler) reconcile(ctx context.Context, md *kilnv1.ModelDeployment,
	st *kilnv1.ModelDeploymentStatus) (ctrl.Result, error) {
	gen := md.Generation
	st.Replicas.Desired = replicas(md)
	st.Selector = metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: selectorFor(md)})

	resolved, err := ResolveModel(ctx, r.Client, r.Catalog, md)
	if err != nil {
		return r.stopAt(md, st, CondModelResolved, err)
	}
	st.Runtime = resolved.Runtime
	st.ResolvedModel = &kilnv1.ResolvedModel{Name: resolved.Name, Variant: resolved.Variant,
		Image: r.Options.ServerImage, URI: resolved.URI}
	r.setCondition(md, st, CondModelResolved, metav1.ConditionTrue, "Resolved",
		fmt.Sprintf("%s (%s) on the %s runtime", resolved.Name, resolved.URI, resolved.Runtime), gen)

	sizing, err := Size(ctx, r.Client, r.Planner, md, resolved, &r.Options)
	if err != nil {
		return r.stopAt(md, st, CondResourcesAvailable, err)
	}
	st.Limits = nil
	sizeMsg := fmt.Sprintf("requests %s, limits %s", describe(sizing.Requests), describe(sizing.Limits))
	if sizing.Plan != nil {
		d := sizing.Plan.Plan
		st.Limits = &kilnv1.PlanLimits{MaxModelLen: d.MaxModelLen, MaxNumSeqs: d.MaxNumSeqs,
			KvCacheDtype: d.KvCacheDtype, KvCacheBytes: d.KvCacheBytes, Device: sizing.Device}
		sizeMsg += fmt.Sprintf("; planned for %s: max_model_len %d, max_num_seqs %d, kv_cache_dtype %s",
			sizing.Device, d.MaxModelLen, d.MaxNumSeqs, d.KvCacheDtype)
	}
	if prefs, _ := preferencesOf(md); len(prefs) > 0 {
		if ignored := IgnoredPreferences(prefs); len(ignored) > 0 {
			sizeMsg += "; vllm.preferences not used by Kiln: " + strings.Join(ignored, ", ")
		}
	}
	r.setCondition(md, st, CondResourcesAvailable, metav1.ConditionTrue, "Sized", sizeMsg, gen)

	// The model cache: a volume filled once by a pull Job, shared by the model's deployments.
	cached, cacheMsg, failed, err := r.ensureCache(ctx, md, resolved)
	if err != nil {
		return ctrl.Result{}, err
	}
	switch {
	case failed:
		r.setCondition(md, st, CondCached, metav1.ConditionFalse, "PullFailed", cacheMsg, gen)
		setState(st, kilnv1.StateError, cacheMsg)
		return ctrl.Result{}, nil
	case !cached:
		r.setCondition(md, st, CondCached, metav1.ConditionFalse, "Pulling", cacheMsg, gen)
		r.setCondition(md, st, CondAvailable, metav1.ConditionFalse, "WaitingForCache",
			"the server starts once the model is in its cache", gen)
		setState(st, kilnv1.StateCreating, cacheMsg)
		// The Job's progress re-queues this deployment; a cache still being deleted (its last
		// owner went away) does not, so look again shortly.
		return ctrl.Result{RequeueAfter: cacheRecheck}, nil
	}
	r.setCondition(md, st, CondCached, metav1.ConditionTrue, "Cached", cacheMsg, gen)

	if r.Options.APIKeys {
		if err := r.ensureAPIKeys(ctx, md); err != nil {
			return ctrl.Result{}, err
		}
		st.Authentication = &kilnv1.AuthenticationStatus{KeysSecretName: APIKeysSecretName(md)}
	} else {
		st.Authentication = nil
	}

	dep := RenderDeployment(md, resolved, sizing, &r.Options)
	if err := r.apply(ctx, md, dep, true); err != nil {
		return ctrl.Result{}, err
	}
	exposure := Exposure(md)
	if exposure != "none" {
		if err := r.apply(ctx, md, RenderService(md), true); err != nil {
			return ctrl.Result{}, err
		}
		st.ServiceReady = true
		st.InternalEndpoint = internalEndpoint(md)
	} else {
		if err := r.deleteOwned(ctx, md, &corev1.Service{}); err != nil {
			return ctrl.Result{}, err
		}
		st.ServiceReady, st.InternalEndpoint = false, ""
	}
	endpointMsg, err := r.ensureRoute(ctx, md, st, exposure)
	if err != nil {
		return ctrl.Result{}, err
	}

	// Status from the Deployment as the cache last saw it.
	var live appsv1.Deployment
	if err := r.Get(ctx, client.ObjectKeyFromObject(dep), &live); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	desired := replicas(md)
	st.Replicas.Ready, st.Replicas.Available = live.Status.ReadyReplicas, live.Status.AvailableReplicas
	st.ReadyReplicas = live.Status.ReadyReplicas
	rolledOut := live.Status.ObservedGeneration >= live.Generation && live.Status.UpdatedReplicas == desired &&
		live.Status.Replicas == desired
	st.DeploymentReady = rolledOut && live.Status.ReadyReplicas == desired
	switch {
	case st.DeploymentReady:
		msg := fmt.Sprintf("%d/%d replicas ready at %s", live.Status.ReadyReplicas, desired, st.InternalEndpoint)
		if exposure == "none" {
			msg = fmt.Sprintf("%d/%d replicas ready (exposure none: no Service)", live.Status.ReadyReplicas, desired)
		}
		if endpointMsg != "" {
			msg += "; " + endpointMsg
		}
		r.setCondition(md, st, CondAvailable, metav1.ConditionTrue, "ReplicasReady", msg, gen)
		setState(st, kilnv1.StateRunning, msg)
	case st.State == kilnv1.StateRunning || st.State == kilnv1.StateUpdating:
		msg := fmt.Sprintf("rolling out: %d/%d replicas updated, %d ready", live.Status.UpdatedReplicas,
			desired, live.Status.ReadyReplicas)
		r.setCondition(md, st, CondAvailable, boolCondition(live.Status.AvailableReplicas > 0), "RollingOut", msg, gen)
		setState(st, kilnv1.StateUpdating, msg)
	default:
		msg := fmt.Sprintf("waiting for pods: %d/%d ready", live.Status.ReadyReplicas, desired)
		if why := r.podTrouble(ctx, md); why != "" {
			msg += "; " + why
		}
		r.setCondition(md, st, CondAvailable, metav1.ConditionFalse, "ReplicasNotReady", msg, gen)
		setState(st, kilnv1.StateCreating, msg)
	}
	return ctrl.Result{}, nil
}

// stopAt ends a reconcile at condition `typ` when `err` is a ConditionError: the condition False
// with its reason, and state Pending (looked at again later) or Error. Other errors go back to
// the work queue.
func (r *ModelDeploymentReconciler) stopAt(md *kilnv1.ModelDeployment, st *kilnv1.ModelDeploymentStatus,
	typ string, err error) (ctrl.Result, error) {
	var ce *ConditionError
	if !errors.As(err, &ce) {
		return ctrl.Result{}, err
	}
	r.setCondition(md, st, typ, metav1.ConditionFalse, ce.Reason, ce.Message, md.Generation)
	if ce.Retry {
		setState(st, kilnv1.StatePending, ce.Message)
		return ctrl.Result{RequeueAfter: pendingRecheck}, nil
	}
	setState(st, kilnv1.StateError, ce.Message)
	return ctrl.Result{}, nil
}

func boolCondition(b bool) metav1.ConditionStatus {
	if b {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}

func describe(l corev1.ResourceList) string {
	var parts []string
	for _, k := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, GPUResource} {
		if q, ok := l[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%s", k, q.String()))
		}
	}
	return strings.Join(parts, " ")
}

func setState(st *kilnv1.ModelDeploymentStatus, state, msg string) {
	st.State, st.Message = state, msg
}

// setCondition sets a condition and records an event when it changes.
func (r *ModelDeploymentReconciler) setCondition(md *kilnv1.ModelDeployment, st *kilnv1.ModelDeploymentStatus,
	typ string, status metav1.ConditionStatus, reason, msg string, gen int64) {
	prev := meta.FindStatusCondition(st.Conditions, typ)
	changed := prev == nil || prev.Status != status || prev.Reason != reason || prev.Message != msg
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason,
		Message: msg, ObservedGeneration: gen})
	if changed && r.Recorder != nil {
		kind := corev1.EventTypeNormal
		if status == metav1.ConditionFalse && reason != "Pulling" && reason != "WaitingForCache" &&
			reason != "ReplicasNotReady" && reason != "RollingOut" {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(md, nil, kind, reason, typ, "%s", msg)
	}
}

// writeStatus writes the status when it changed (lastUpdated moves only then).
func (r *ModelDeploymentReconciler) writeStatus(ctx context.Context, md *kilnv1.ModelDeployment,
	st *kilnv1.ModelDeploymentStatus) error {
	st.LastUpdated = md.Status.LastUpdated
	if apiequality.Semantic.DeepEqual(&md.Status, st) {
		return nil
	}
	now := metav1.Now()
	st.LastUpdated = &now
	// The status is the operator's alone: a merge patch needs no resourceVersion, so a cache a
	// moment behind does not turn the write into a conflict.
	orig := md.DeepCopy()
	md.Status = *st
	return r.Status().Patch(ctx, md, client.MergeFrom(orig))
}

// apply creates `obj` or, when the live object's spec hash differs from the rendered one,
// updates it; an unchanged object is not written. `controller` makes `md` its controller owner.
func (r *ModelDeploymentReconciler) apply(ctx context.Context, md *kilnv1.ModelDeployment,
	obj client.Object, controller bool) error {
	return applyObject(ctx, r.Client, r.Scheme, r.Recorder, md, obj, controller)
}

func applyObject(ctx context.Context, c client.Client, scheme *runtime.Scheme, rec events.EventRecorder,
	owner client.Object, obj client.Object, controller bool) error {
	hash := hashOf(obj)
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationSpecHash] = hash
	obj.SetAnnotations(ann)
	if controller {
		if err := controllerutil.SetControllerReference(owner, obj, scheme); err != nil {
			return err
		}
	}
	live := obj.DeepCopyObject().(client.Object)
	err := c.Get(ctx, client.ObjectKeyFromObject(obj), live)
	if apierrors.IsNotFound(err) {
		if err := c.Create(ctx, obj); err != nil {
			return err
		}
		if rec != nil {
			rec.Eventf(owner, obj, corev1.EventTypeNormal, "Created", "Create", "created %s %s",
				kindOf(obj), obj.GetName())
		}
		return nil
	}
	if err != nil {
		return err
	}
	if live.GetAnnotations()[AnnotationSpecHash] == hash {
		return nil
	}
	obj.SetResourceVersion(live.GetResourceVersion())
	// Keep what others own on the live object: other owners, a Service's cluster IPs.
	obj.SetOwnerReferences(mergeOwners(live.GetOwnerReferences(), obj.GetOwnerReferences()))
	if svc, ok := obj.(*corev1.Service); ok {
		l := live.(*corev1.Service)
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = l.Spec.ClusterIP, l.Spec.ClusterIPs
		svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy = l.Spec.IPFamilies, l.Spec.IPFamilyPolicy
	}
	if err := c.Update(ctx, obj); err != nil {
		return err
	}
	if rec != nil {
		rec.Eventf(owner, obj, corev1.EventTypeNormal, "Updated", "Update", "updated %s %s", kindOf(obj), obj.GetName())
	}
	return nil
}

func kindOf(obj client.Object) string {
	t := fmt.Sprintf("%T", obj)
	return t[strings.LastIndex(t, ".")+1:]
}

func mergeOwners(live, want []metav1.OwnerReference) []metav1.OwnerReference {
	out := append([]metav1.OwnerReference(nil), live...)
	for _, w := range want {
		found := false
		for i := range out {
			if out[i].UID == w.UID {
				out[i] = w
				found = true
			}
		}
		if !found {
			out = append(out, w)
		}
	}
	return out
}

// addOwner adds `owner` as a (non-controller) owner of the live object `obj` if it is not one.
func addOwner(ctx context.Context, c client.Client, scheme *runtime.Scheme, owner, obj client.Object) error {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.UID == owner.GetUID() {
			return nil
		}
	}
	if err := controllerutil.SetOwnerReference(owner, obj, scheme); err != nil {
		return err
	}
	return c.Update(ctx, obj)
}

// ensureCache makes the model's cache volume, catalog ConfigMap and pull Job, and reports
// whether the pull finished.
func (r *ModelDeploymentReconciler) ensureCache(ctx context.Context, md *kilnv1.ModelDeployment,
	res *Resolved) (cached bool, msg string, failed bool, err error) {
	var owner client.Object = md
	if res.Model != nil {
		owner = res.Model // a Model's cache outlives its deployments
	}
	pvc := RenderCacheClaim(md, res, &r.Options)
	var live corev1.PersistentVolumeClaim
	err = r.Get(ctx, client.ObjectKeyFromObject(pvc), &live)
	switch {
	case apierrors.IsNotFound(err):
		if err := controllerutil.SetOwnerReference(owner, pvc, r.Scheme); err != nil {
			return false, "", false, err
		}
		if err := r.Create(ctx, pvc); err != nil && !apierrors.IsAlreadyExists(err) {
			return false, "", false, err
		}
		if r.Recorder != nil {
			r.Recorder.Eventf(md, pvc, corev1.EventTypeNormal, "Created", "Create",
				"created model cache volume claim %s (%s)", pvc.Name, pvc.Spec.Resources.Requests.Storage())
		}
		live = *pvc
	case err != nil:
		return false, "", false, err
	default:
		if !live.DeletionTimestamp.IsZero() {
			return false, "the model cache " + live.Name + " is being deleted; waiting to make it again", false, nil
		}
		if err := addOwner(ctx, r.Client, r.Scheme, owner, &live); err != nil {
			return false, "", false, err
		}
	}
	cm := RenderCatalogConfigMap(md, res)
	if err := applyObject(ctx, r.Client, r.Scheme, nil, &live, cm, true); err != nil {
		return false, "", false, err
	}
	job := RenderPullJob(md, res, &r.Options)
	if live.Annotations[AnnotationCached] == res.URI {
		// Pulled before. The Job, if still there, is no longer needed: its finished pod would
		// otherwise hold the claim (and so its deletion) as long as the Job exists.
		var old batchv1.Job
		if err := r.Get(ctx, client.ObjectKeyFromObject(job), &old); err == nil && old.DeletionTimestamp.IsZero() {
			if err := r.Delete(ctx, &old, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil &&
				!apierrors.IsNotFound(err) {
				return false, "", false, err
			}
		}
		return true, fmt.Sprintf("%s is in volume claim %s", res.URI, pvc.Name), false, nil
	}
	var liveJob batchv1.Job
	err = r.Get(ctx, client.ObjectKeyFromObject(job), &liveJob)
	if apierrors.IsNotFound(err) {
		if err := controllerutil.SetControllerReference(&live, job, r.Scheme); err != nil {
			return false, "", false, err
		}
		if err := r.Create(ctx, job); err != nil && !apierrors.IsAlreadyExists(err) {
			return false, "", false, err
		}
		if r.Recorder != nil {
			r.Recorder.Eventf(md, job, corev1.EventTypeNormal, "Pulling", "Create",
				"pulling %s into %s with Job %s", res.URI, pvc.Name, job.Name)
		}
		return false, fmt.Sprintf("pulling %s into volume claim %s (Job %s)", res.URI, pvc.Name, job.Name), false, nil
	}
	if err != nil {
		return false, "", false, err
	}
	for _, c := range liveJob.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete, batchv1.JobSuccessCriteriaMet:
			// Record the pull on the claim, then let the Job go.
			if live.Annotations == nil {
				live.Annotations = map[string]string{}
			}
			live.Annotations[AnnotationCached] = res.URI
			if err := r.Update(ctx, &live); err != nil {
				return false, "", false, err
			}
			if r.Recorder != nil {
				r.Recorder.Eventf(md, &live, corev1.EventTypeNormal, "Cached", "Pull", "%s is in volume claim %s",
					res.URI, live.Name)
			}
			if err := r.Delete(ctx, &liveJob, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil &&
				!apierrors.IsNotFound(err) {
				return false, "", false, err
			}
			return true, fmt.Sprintf("%s is in volume claim %s", res.URI, pvc.Name), false, nil
		case batchv1.JobFailed:
			return false, fmt.Sprintf("pulling %s failed (Job %s: %s); see `kubectl logs job/%s`. "+
				"Delete the Job to try again", res.URI, liveJob.Name, c.Message, liveJob.Name), true, nil
		}
	}
	return false, fmt.Sprintf("pulling %s into volume claim %s (Job %s)", res.URI, pvc.Name, liveJob.Name), false, nil
}

// ensureAPIKeys makes the deployment's Secret of API keys once; keys are never rewritten.
func (r *ModelDeploymentReconciler) ensureAPIKeys(ctx context.Context, md *kilnv1.ModelDeployment) error {
	var live corev1.Secret
	err := r.Get(ctx, types.NamespacedName{Namespace: md.Namespace, Name: APIKeysSecretName(md)}, &live)
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	key := func() string {
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		return "kiln-" + hex.EncodeToString(b)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: APIKeysSecretName(md), Namespace: md.Namespace, Labels: labelsFor(md)},
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{"primary-key": key(), "secondary-key": key()},
	}
	if err := controllerutil.SetControllerReference(md, secret, r.Scheme); err != nil {
		return err
	}
	if err := r.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if r.Recorder != nil {
		r.Recorder.Eventf(md, secret, corev1.EventTypeNormal, "Created", "Create", "created API-key Secret %s", secret.Name)
	}
	return nil
}

// deleteOwned deletes the object of `obj`'s kind named after `md`, when `md` controls it.
func (r *ModelDeploymentReconciler) deleteOwned(ctx context.Context, md *kilnv1.ModelDeployment, obj client.Object) error {
	if err := r.Get(ctx, types.NamespacedName{Namespace: md.Namespace, Name: md.Name}, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, md) {
		return nil
	}
	return client.IgnoreNotFound(r.Delete(ctx, obj))
}

// podTrouble is why the deployment's pods are not running, from their status (unschedulable,
// image pull errors), or "".
func (r *ModelDeploymentReconciler) podTrouble(ctx context.Context, md *kilnv1.ModelDeployment) string {
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.InNamespace(md.Namespace), client.MatchingLabels(selectorFor(md))); err != nil {
		return ""
	}
	for _, p := range pods.Items {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message != "" {
				return fmt.Sprintf("pod %s is not scheduled: %s", p.Name, c.Message)
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" {
				return fmt.Sprintf("pod %s: %s: %s", p.Name, w.Reason, w.Message)
			}
		}
	}
	return ""
}

// SetupWithManager registers the controller and what it watches.
func (r *ModelDeploymentReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &kilnv1.ModelDeployment{}, indexModelRef,
		func(o client.Object) []string {
			if ref := o.(*kilnv1.ModelDeployment).Spec.Model.Ref; ref != "" {
				return []string{ref}
			}
			return nil
		}); err != nil {
		return err
	}
	// A pull Job belongs to its cache volume claim, which the deployments own.
	jobToDeployments := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		ref := metav1.GetControllerOf(o)
		if ref == nil || ref.Kind != "PersistentVolumeClaim" {
			return nil
		}
		var pvc corev1.PersistentVolumeClaim
		if err := r.Get(ctx, types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}, &pvc); err != nil {
			return nil
		}
		return r.deploymentsUsing(ctx, &pvc)
	})
	pvcToDeployments := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.deploymentsUsing(ctx, o)
	})
	modelToDeployments := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var list kilnv1.ModelDeploymentList
		if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()),
			client.MatchingFields{indexModelRef: o.GetName()}); err != nil {
			return nil
		}
		return requestsFor(list.Items)
	})
	// Nodes that join, leave or change what they offer may let a waiting GPU deployment in.
	nodeToWaiting := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list kilnv1.ModelDeploymentList
		if err := r.List(ctx, &list); err != nil {
			return nil
		}
		var waiting []kilnv1.ModelDeployment
		for _, md := range list.Items {
			if c := meta.FindStatusCondition(md.Status.Conditions, CondResourcesAvailable); c != nil &&
				c.Status == metav1.ConditionFalse {
				waiting = append(waiting, md)
			}
		}
		return requestsFor(waiting)
	})
	nodeChanged := predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			a, b := e.ObjectOld.(*corev1.Node), e.ObjectNew.(*corev1.Node)
			return !apiequality.Semantic.DeepEqual(a.Status.Allocatable, b.Status.Allocatable) ||
				!apiequality.Semantic.DeepEqual(a.Labels, b.Labels) ||
				!apiequality.Semantic.DeepEqual(a.Spec.Taints, b.Spec.Taints) ||
				a.Spec.Unschedulable != b.Spec.Unschedulable || nodeReady(a) != nodeReady(b)
		},
	}
	b := ctrl.NewControllerManagedBy(mgr).
		For(&kilnv1.ModelDeployment{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.Secret{}).
		Watches(&corev1.PersistentVolumeClaim{}, pvcToDeployments).
		Watches(&batchv1.Job{}, jobToDeployments).
		Watches(&kilnv1.Model{}, modelToDeployments).
		Watches(&corev1.Node{}, nodeToWaiting, builder.WithPredicates(nodeChanged))
	if r.Gateway != nil && r.Gateway() {
		// A gateway accepting a route changes the deployment's endpointReady.
		route := &unstructured.Unstructured{}
		route.SetGroupVersionKind(HTTPRouteKind)
		b = b.Owns(route)
	}
	return b.Named("modeldeployment").Complete(r)
}

// deploymentsUsing are the ModelDeployments that own `pvc`, or that use the Model owning it.
func (r *ModelDeploymentReconciler) deploymentsUsing(ctx context.Context, pvc client.Object) []reconcile.Request {
	var out []reconcile.Request
	for _, ref := range pvc.GetOwnerReferences() {
		switch ref.Kind {
		case "ModelDeployment":
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{
				Namespace: pvc.GetNamespace(), Name: ref.Name}})
		case "Model":
			var list kilnv1.ModelDeploymentList
			if err := r.List(ctx, &list, client.InNamespace(pvc.GetNamespace()),
				client.MatchingFields{indexModelRef: ref.Name}); err == nil {
				out = append(out, requestsFor(list.Items)...)
			}
		}
	}
	return out
}

func requestsFor(items []kilnv1.ModelDeployment) []reconcile.Request {
	out := make([]reconcile.Request, 0, len(items))
	for _, md := range items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: md.Namespace, Name: md.Name}})
	}
	return out
}
