package controller

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
	"kiln.dev/operator/internal/catalog"
)

// CondReady is the Model's condition: it can be deployed.
const CondReady = "Ready"

// ModelReconciler checks a bring-your-own Model's source and makes it Available.
type ModelReconciler struct {
	client.Client
	Catalog *CatalogSource
}

// +kubebuilder:rbac:groups=kiln.dev,resources=models,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=kiln.dev,resources=models/status,verbs=get;update;patch

// Reconcile sets the Model's phase: Available when its source is usable, Pending while a
// credentials Secret is missing, Error when the source can never work.
func (r *ModelReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var m kilnv1.Model
	if err := r.Get(ctx, req.NamespacedName, &m); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	st := m.Status.DeepCopy()
	st.ObservedGeneration = m.Generation
	phase, reason, msg, uri, err := r.check(ctx, &m)
	if err != nil {
		return ctrl.Result{}, err
	}
	st.Phase, st.Message, st.URI = phase, msg, uri
	status := metav1.ConditionFalse
	if phase == kilnv1.PhaseAvailable {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: CondReady, Status: status,
		Reason: reason, Message: msg, ObservedGeneration: m.Generation})
	// The cache volume claim the Model owns, once a deployment made it.
	var claims corev1.PersistentVolumeClaimList
	if err := r.List(ctx, &claims, client.InNamespace(m.Namespace), client.HasLabels{LabelModelCache}); err == nil {
		st.CacheVolumeClaim = ""
		for _, c := range claims.Items {
			if metav1.IsControlledBy(&c, &m) || ownedBy(&c, &m) {
				st.CacheVolumeClaim = c.Name
			}
		}
	}
	st.LastUpdated = m.Status.LastUpdated
	if !apiequality.Semantic.DeepEqual(&m.Status, st) {
		now := metav1.Now()
		st.LastUpdated = &now
		orig := m.DeepCopy()
		m.Status = *st
		if err := r.Status().Patch(ctx, &m, client.MergeFrom(orig)); err != nil {
			return ctrl.Result{}, err
		}
	}
	if phase == kilnv1.PhasePending {
		return ctrl.Result{RequeueAfter: pendingRecheck}, nil
	}
	return ctrl.Result{}, nil
}

func ownedBy(o client.Object, owner client.Object) bool {
	for _, ref := range o.GetOwnerReferences() {
		if ref.UID == owner.GetUID() {
			return true
		}
	}
	return false
}

func (r *ModelReconciler) check(ctx context.Context, m *kilnv1.Model) (phase, reason, msg, uri string, err error) {
	src := m.Spec.Source
	if src.Catalog != nil {
		loaded, err := r.Catalog.Load(ctx)
		if err != nil {
			return kilnv1.PhasePending, "CatalogUnavailable", err.Error(), "", nil
		}
		name := orDefault(src.Catalog.ModelID, src.Catalog.Alias)
		for _, compute := range []string{"cpu", "gpu"} {
			if e, err := loaded.Resolve(name, "", compute, ""); err == nil {
				return kilnv1.PhaseAvailable, "InCatalog", fmt.Sprintf("catalog entry %s", e.ID), e.URI, nil
			}
		}
		_, err = loaded.Resolve(name, "", "cpu", "")
		var nf *catalog.NotFoundError
		if errors.As(err, &nf) {
			nf.ComputeMismatch = nil
		}
		return kilnv1.PhaseError, "NotInCatalog", err.Error(), "", nil
	}
	c := src.Custom
	uri = ociURI(c)
	if c.Credentials != nil {
		var s corev1.Secret
		err := r.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: c.Credentials.SecretRef.Name}, &s)
		if apierrors.IsNotFound(err) {
			return kilnv1.PhasePending, "CredentialsMissing", fmt.Sprintf(
				"source.custom.credentials.secretRef names Secret %q, which does not exist in namespace %s",
				c.Credentials.SecretRef.Name, m.Namespace), uri, nil
		}
		if err != nil {
			return "", "", "", "", err
		}
		for _, key := range []string{orDefault(c.Credentials.SecretRef.UsernameKey, "username"),
			orDefault(c.Credentials.SecretRef.PasswordKey, "password")} {
			if _, ok := s.Data[key]; !ok {
				return kilnv1.PhaseError, "CredentialsIncomplete", fmt.Sprintf(
					"Secret %s has no key %q", s.Name, key), uri, nil
			}
		}
	}
	return kilnv1.PhaseAvailable, "SourceValid", "model from " + uri, uri, nil
}

// SetupWithManager registers the controller; a Secret that appears may complete a Model.
func (r *ModelReconciler) SetupWithManager(mgr ctrl.Manager) error {
	secretToModels := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		var list kilnv1.ModelList
		if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
			return nil
		}
		var out []reconcile.Request
		for _, m := range list.Items {
			if c := m.Spec.Source.Custom; c != nil && c.Credentials != nil && c.Credentials.SecretRef.Name == o.GetName() {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: m.Name}})
			}
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&kilnv1.Model{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, secretToModels).
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestForOwner(mgr.GetScheme(),
			mgr.GetRESTMapper(), &kilnv1.Model{})).
		Named("model").
		Complete(r)
}
