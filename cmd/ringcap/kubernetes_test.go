package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"kernel.org/pub/linux/libs/security/libcap/cap"
	"sigs.k8s.io/yaml"

	"github.com/ringcap/ringcap/writer/pcapngtest"
)

// manifests are deploy/kubernetes's objects, each decoded strictly into
// the official type of its kind: a field the API does not have fails.
type manifests struct {
	namespace  *corev1.Namespace
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	daemonSet  *appsv1.DaemonSet
}

func readManifests(t *testing.T) manifests {
	t.Helper()
	paths, err := filepath.Glob("../../deploy/kubernetes/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	m := manifests{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s, document %d: %v", path, i+1, err)
			}
			strict := func(into any) {
				t.Helper()
				if err := yaml.UnmarshalStrict(doc, into); err != nil {
					t.Errorf("%s, document %d (%s): %v", path, i+1, meta.Kind, err)
				}
			}
			switch gvk := meta.APIVersion + " " + meta.Kind; gvk {
			case "v1 Namespace":
				m.namespace = &corev1.Namespace{}
				strict(m.namespace)
			case "v1 ConfigMap":
				var cm corev1.ConfigMap
				strict(&cm)
				m.configMaps[cm.Name] = &cm
			case "v1 Secret":
				var s corev1.Secret
				strict(&s)
				m.secrets[s.Name] = &s
			case "apps/v1 DaemonSet":
				m.daemonSet = &appsv1.DaemonSet{}
				strict(m.daemonSet)
			default:
				t.Errorf("%s, document %d: %q is not a kind the test knows", path, i+1, gvk)
			}
		}
	}
	if m.namespace == nil || m.daemonSet == nil {
		t.Fatal("deploy/kubernetes has no Namespace or no DaemonSet")
	}
	return m
}

// k8sVar is a variable reference in a container's args: $(NAME).
var k8sVar = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand expands args as the kubelet does, from env; an unknown reference
// stays as it is.
func expand(args []string, env map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = k8sVar.ReplaceAllStringFunc(a, func(ref string) string {
			if v, ok := env[ref[2:len(ref)-1]]; ok {
				return v
			}
			return ref
		})
	}
	return out
}

// deploy/'s DaemonSet runs ringcap on every node with the host's
// network, three capabilities and not privileged, a hostPath for the
// files, the node's name in the upload prefix, credentials from the
// Secret, options from the ConfigMap, the metrics port with Prometheus'
// scrape annotations; and its args, expanded as the kubelet expands them,
// run ringcap for real: in a test namespace, uploading to a real S3
// server there, after SIGTERM as Kubernetes stops a pod.
func TestKubernetesManifests(t *testing.T) {
	m := readManifests(t)
	ds := m.daemonSet
	for _, obj := range []metav1.ObjectMeta{ds.ObjectMeta, m.configMaps["ringcap"].ObjectMeta} {
		if obj.Namespace != m.namespace.Name {
			t.Errorf("%s is in namespace %q, not the manifests' %q", obj.Name, obj.Namespace, m.namespace.Name)
		}
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		t.Error("the pod does not use the host's network")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil || (sc.Privileged != nil && *sc.Privileged) {
		t.Fatalf("the container is privileged or has no capabilities: %+v", sc)
	}
	if add := sc.Capabilities.Add; !slices.Equal(add, []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON"}) {
		t.Errorf("capabilities added %v, want BPF, NET_ADMIN and PERFMON", add)
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities dropped %v, want ALL", sc.Capabilities.Drop)
	}

	// Each variable from the node's name, the ConfigMap or the Secret,
	// and each reference in the args defined.
	env := map[string]string{}
	var fromSecret []string
	for _, e := range c.Env {
		switch from := e.ValueFrom; {
		case from != nil && from.FieldRef != nil:
			if e.Name != "NODE_NAME" || from.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("%s from field %s", e.Name, from.FieldRef.FieldPath)
			}
			env[e.Name] = "node-1"
		case from != nil && from.ConfigMapKeyRef != nil:
			cm, ok := m.configMaps[from.ConfigMapKeyRef.Name]
			v, has := "", false
			if ok {
				v, has = cm.Data[from.ConfigMapKeyRef.Key]
			}
			if !has {
				t.Errorf("%s: no key %s in ConfigMap %s", e.Name, from.ConfigMapKeyRef.Key, from.ConfigMapKeyRef.Name)
			}
			env[e.Name] = v
		case from != nil && from.SecretKeyRef != nil:
			s, ok := m.secrets[from.SecretKeyRef.Name]
			if !ok || s.StringData[from.SecretKeyRef.Key] == "" {
				t.Errorf("%s: no key %s in Secret %s", e.Name, from.SecretKeyRef.Key, from.SecretKeyRef.Name)
			}
			fromSecret = append(fromSecret, e.Name)
		default:
			t.Errorf("%s is not from the node, the ConfigMap or the Secret", e.Name)
		}
	}
	if !slices.Equal(fromSecret, []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}) {
		t.Errorf("from the Secret: %v, want the AWS keys", fromSecret)
	}
	args := expand(c.Args, env)
	for _, a := range args {
		if ref := k8sVar.FindString(a); ref != "" {
			t.Errorf("the args refer to %s, which the container does not define", ref)
		}
	}
	flag := func(name string) string {
		i := slices.Index(args, name)
		if i < 0 || i+1 >= len(args) {
			t.Fatalf("the args have no %s: %q", name, args)
		}
		return args[i+1]
	}
	if up := flag("--upload"); !strings.HasSuffix(up, "/node-1") || !strings.HasPrefix(up, "s3://") {
		t.Errorf("--upload %s is not s3://BUCKET/<node name>", up)
	}
	// The files on the node, through the hostPath.
	dir := filepath.Dir(flag("-w"))
	var mounted bool
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.HostPath != nil && vm.MountPath == dir {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("-w's directory %s is not a hostPath volume", dir)
	}
	// The metrics port, declared and annotated.
	metricsAddr := flag("--metrics")
	_, port, _ := strings.Cut(metricsAddr, ":")
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != port || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v, want port %s", ann, port)
	}
	if len(c.Ports) != 1 || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port {
		t.Errorf("ports %+v, want %s", c.Ports, port)
	}
	if grace, timeout := pod.TerminationGracePeriodSeconds, defaultUploadTimeout; grace == nil || time.Duration(*grace)*time.Second <= timeout {
		t.Errorf("terminationGracePeriodSeconds %v leaves ringcap no time for its --upload-timeout %v", grace, timeout)
	}

	// The args for real, in the test network: the hostPath's directory
	// becomes a temporary one, and the metrics listen on loopback only,
	// as the tests' servers do.
	p := newVethPair(t)
	srv := p.newStore(t)
	local := t.TempDir()
	for i, a := range args {
		args[i] = strings.Replace(a, dir, local, 1)
		if a == metricsAddr {
			args[i] = "127.0.0.1:" + port
		}
	}
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		if k == "AWS_ENDPOINT_URL" || k == "AWS_REGION" {
			if _, ok := env[k]; !ok {
				t.Errorf("the container does not set %s", k)
			}
		}
		t.Setenv(k, v)
	}
	bucket := strings.TrimPrefix(env["RINGCAP_UPLOAD"], "s3://")
	if bucket != srv.Bucket {
		t.Fatalf("the ConfigMap's bucket %q is not the test server's %q", bucket, srv.Bucket)
	}
	// As the container runtime starts it: root, the capabilities added
	// and no others (the bounding set too), and no new privileges
	// (allowPrivilegeEscalation: false). ringcap keeps all three: -i
	// any attaches to interfaces as they come.
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("the container runs as %v, allowPrivilegeEscalation %v: want root with no privilege escalation", sc.RunAsUser, sc.AllowPrivilegeEscalation)
	}
	bounding := "-all"
	var added []int
	for _, c := range sc.Capabilities.Add {
		name := strings.ToLower(string(c))
		v, err := cap.FromName("cap_" + name)
		if err != nil {
			t.Fatal(err)
		}
		bounding += ",+" + name
		added = append(added, int(v))
	}
	r := p.startWrapped(t, []string{"setpriv", "--inh-caps=-all", "--bounding-set=" + bounding, "--no-new-privs"}, args...)
	held := readCreds(t, "/proc/self/status")
	held["CapInh"], held["CapAmb"] = capMask(), capMask()
	held["CapPrm"], held["CapEff"], held["CapBnd"] = capMask(added...), capMask(added...), capMask(added...)
	checkThreads(t, r.cmd.Process.Pid, held)
	p.ping(t, 2000)
	p.pingAddr(t, rxAddr2, 3000)
	if code := r.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("ringcap exited with %d:\n%s", code, r.errors())
	}
	keys := srv.Keys("node-1")
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "node-1/node-1_00001_") {
		t.Fatalf("the store holds %q, want node-1's first file:\n%s", keys, r.errors())
	}
	data, err := srv.Object(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "got.pcapng")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rows := pcapngtest.Fields(t, path, "frame.interface_name", "frame.len", "icmp.type")
	if want := fmt.Sprint([][]string{{rxIf, "2042", "8"}, {rxIf, "2042", "0"}, {rxIf2, "3042", "8"}, {rxIf2, "3042", "0"}}); fmt.Sprint(rows) != want {
		t.Errorf("the uploaded file holds %v, want %s", rows, want)
	}
}
