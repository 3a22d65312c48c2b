package envtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kilnv1 "kiln.dev/operator/api/v1alpha1"
	"kiln.dev/operator/internal/controller"
	"kiln.dev/operator/test/testutil"
)

func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	testutil.Eventually(t, timeout, 100*time.Millisecond, what, check)
}

func newDeployment(t *testing.T, ns, manifest string) *kilnv1.ModelDeployment {
	t.Helper()
	return testutil.CreateDeployment(t, k8s, ns, manifest)
}

func getDeployment(t *testing.T, md *kilnv1.ModelDeployment) *kilnv1.ModelDeployment {
	t.Helper()
	var got kilnv1.ModelDeployment
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(md), &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

// waitCondition waits for a condition of `md` with the status and reason given.
func waitCondition(t *testing.T, md *kilnv1.ModelDeployment, typ string, status metav1.ConditionStatus,
	reason string) *kilnv1.ModelDeployment {
	t.Helper()
	var got *kilnv1.ModelDeployment
	eventually(t, 30*time.Second, fmt.Sprintf("%s %s=%s (%s)", md.Name, typ, status, reason), func() error {
		got = getDeployment(t, md)
		c := meta.FindStatusCondition(got.Status.Conditions, typ)
		if c == nil || c.Status != status || c.Reason != reason {
			return fmt.Errorf("conditions %+v, state %q: %s", got.Status.Conditions, got.Status.State, got.Status.Message)
		}
		return nil
	})
	return got
}

func waitState(t *testing.T, md *kilnv1.ModelDeployment, state string) *kilnv1.ModelDeployment {
	t.Helper()
	var got *kilnv1.ModelDeployment
	eventually(t, 30*time.Second, md.Name+" state "+state, func() error {
		got = getDeployment(t, md)
		if got.Status.State != state {
			return fmt.Errorf("state %q: %s", got.Status.State, got.Status.Message)
		}
		return nil
	})
	return got
}

// cacheJob is the pull Job of the model cache `md` uses.
func cacheJob(t *testing.T, md *kilnv1.ModelDeployment) *batchv1.Job {
	t.Helper()
	var job *batchv1.Job
	eventually(t, 30*time.Second, "the pull Job of "+md.Name, func() error {
		var jobs batchv1.JobList
		if err := k8s.List(context.Background(), &jobs, client.InNamespace(md.Namespace),
			client.HasLabels{controller.LabelModelCache}); err != nil {
			return err
		}
		if len(jobs.Items) != 1 {
			return fmt.Errorf("%d pull Jobs", len(jobs.Items))
		}
		job = &jobs.Items[0]
		return nil
	})
	return job
}

// finishJob writes what the Job controller writes when the pull's pod succeeded (envtest runs no
// Job controller).
func finishJob(t *testing.T, job *batchv1.Job) {
	t.Helper()
	now := metav1.Now()
	job.Status.StartTime = &now
	job.Status.CompletionTime = &now
	job.Status.Succeeded = 1
	job.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	if err := k8s.Status().Update(context.Background(), job); err != nil {
		t.Fatal(err)
	}
}

// failJob writes what the Job controller writes when the pull failed for good.
func failJob(t *testing.T, job *batchv1.Job, msg string) {
	t.Helper()
	now := metav1.Now()
	job.Status.StartTime = &now
	job.Status.Failed = 5
	job.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, LastTransitionTime: now,
			Reason: "BackoffLimitExceeded", Message: msg},
		{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastTransitionTime: now,
			Reason: "BackoffLimitExceeded", Message: msg},
	}
	if err := k8s.Status().Update(context.Background(), job); err != nil {
		t.Fatal(err)
	}
}

// serverDeployment waits for the Deployment of `md`.
func serverDeployment(t *testing.T, md *kilnv1.ModelDeployment) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	eventually(t, 30*time.Second, "the Deployment of "+md.Name, func() error {
		return k8s.Get(context.Background(), types.NamespacedName{Namespace: md.Namespace, Name: md.Name}, &d)
	})
	return &d
}

// markReady writes what the Deployment controller writes once `ready` of its pods are ready and
// all run the current template (envtest runs no Deployment controller).
func markReady(t *testing.T, d *appsv1.Deployment, ready int32) {
	t.Helper()
	eventually(t, 10*time.Second, "status of Deployment "+d.Name, func() error {
		var live appsv1.Deployment
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(d), &live); err != nil {
			return err
		}
		want := *live.Spec.Replicas
		live.Status = appsv1.DeploymentStatus{ObservedGeneration: live.Generation, Replicas: want,
			UpdatedReplicas: want, ReadyReplicas: ready, AvailableReplicas: ready}
		return k8s.Status().Update(context.Background(), &live)
	})
}

func argsOf(d *appsv1.Deployment) []string { return d.Spec.Template.Spec.Containers[0].Args }

func argValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

func hasArg(args []string, want string) bool {
	for _, a := range args {
		if a == want {
			return true
		}
	}
	return false
}
