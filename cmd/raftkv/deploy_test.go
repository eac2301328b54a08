package main

// The deployment files (Dockerfile, deploy/docker-compose.yml,
// deploy/kubernetes/) checked against the binary: every flag and RAFTKV_*
// variable they set is a flag of raftkv serve and its value parses, each
// node's configuration passes serve's own rules (an id, a data dir, an
// advertised address for a listener bound to all interfaces), the members
// name each other consistently, probes hit routes the API has, the compose
// healthcheck runs raftkv health with flags it has, ports agree,
// containers run as non-root and the PodDisruptionBudget keeps a quorum.
// Nothing here needs Docker, a cluster or the network; where kubectl is on
// PATH, kubectl kustomize (offline) must accept the manifests and read them
// as the test does.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/testkit"
)

const repoRoot = "../.."

// serveConfig is one container's raftkv serve configuration, as the
// files give it: environment (image ENV, then the file's) and arguments.
type serveConfig struct {
	where string
	env   map[string]string
	args  []string
}

// check parses the configuration with serve's own flag set, as serve does
// (the command line, then the environment), and applies serve's rules.
func (sc serveConfig) check(t *testing.T) *serveFlags {
	t.Helper()
	c, f := newServeCommand(io.Discard)
	for name := range sc.env {
		if !strings.HasPrefix(name, "RAFTKV_") {
			continue
		}
		known := false
		c.fs.VisitAll(func(fl *flag.Flag) { known = known || envName(fl.Name) == name })
		if !known {
			t.Errorf("%s: %s is not the variable of any raftkv serve flag", sc.where, name)
		}
	}
	for _, a := range sc.args {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			if c.fs.Lookup(name) == nil {
				t.Errorf("%s: --%s is not a raftkv serve flag", sc.where, name)
			}
		}
	}
	if _, err := c.parse(sc.args, 0, 0); err != nil {
		t.Errorf("%s: arguments %q: %v", sc.where, sc.args, err)
	}
	lookup := func(k string) (string, bool) { v, ok := sc.env[k]; return v, ok }
	if err := flagsFromLookup(c.fs, lookup); err != nil {
		t.Errorf("%s: %v", sc.where, err)
	}
	if *f.id == "" || *f.dataDir == "" {
		t.Errorf("%s: no id (%q) or data dir (%q)", sc.where, *f.id, *f.dataDir)
	}
	for _, l := range []struct{ flag, addr, adv string }{
		{"http-addr", *f.httpAddr, *f.httpAdv},
		{"raft-addr", *f.raftAddr, *f.raftAdv},
	} {
		host, _, err := net.SplitHostPort(l.addr)
		if err != nil {
			t.Errorf("%s: --%s %q: %v", sc.where, l.flag, l.addr, err)
			continue
		}
		if ip := net.ParseIP(host); (host == "" || ip != nil && ip.IsUnspecified()) && l.adv == "" {
			t.Errorf("%s: --%s %s binds every interface without an advertised address", sc.where, l.flag, l.addr)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			t.Errorf("%s: --%s %s: peers in other containers cannot reach loopback", sc.where, l.flag, l.addr)
		}
	}
	return f
}

func port(t *testing.T, where, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(p)
	if err != nil || perr != nil {
		t.Fatalf("%s: %q is not host:port", where, addr)
	}
	return n
}

func host(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }

func splitList(s string) []string {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// --- Dockerfile ---

type dockerfile struct {
	env        map[string]string // final stage
	entrypoint []string
	user       string
	expose     []int
	volumes    []string
	build      string // the builder stages' RUN lines
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, drop comments.
	var lines []string
	cur := ""
	for l := range strings.SplitSeq(string(b), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "#") || (l == "" && cur == "") {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur += s + " "
			continue
		}
		lines = append(lines, cur+l)
		cur = ""
	}
	var d dockerfile
	stages := 0
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			stages++
			d = dockerfile{env: map[string]string{}, build: d.build}
		case "RUN":
			d.build += rest + "\n"
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("Dockerfile: ENV %q: write ENV NAME=value", rest)
				}
				d.env[k] = strings.Trim(v, `"`)
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				t.Fatalf("Dockerfile: ENTRYPOINT %s: want the exec (JSON) form: %v", rest, err)
			}
		case "USER":
			d.user = rest
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				if err != nil {
					t.Fatalf("Dockerfile: EXPOSE %s", p)
				}
				d.expose = append(d.expose, n)
			}
		case "VOLUME":
			if err := json.Unmarshal([]byte(rest), &d.volumes); err != nil {
				d.volumes = strings.Fields(rest)
			}
		}
	}
	if stages < 2 {
		t.Fatalf("Dockerfile: %d stages, want a builder and a final stage", stages)
	}
	return d
}

func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	if !slices.Equal(d.entrypoint, []string{"raftkv", "serve"}) {
		t.Errorf("ENTRYPOINT %q, want [raftkv serve]", d.entrypoint)
	}
	if u, _, _ := strings.Cut(d.user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("USER %q: the container must not run as root", d.user)
	} else if _, err := strconv.Atoi(u); err != nil {
		t.Errorf("USER %q: give a numeric uid, so that Kubernetes' runAsNonRoot can verify it", d.user)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/raftkv"} {
		if !strings.Contains(d.build, want) {
			t.Errorf("Dockerfile: the build does not use %s", want)
		}
	}
	// The image's own configuration: what a container adds is its id and
	// advertised addresses.
	env := maps.Clone(d.env)
	env["RAFTKV_ID"], env["RAFTKV_HTTP_ADVERTISE"], env["RAFTKV_RAFT_ADVERTISE"] = "n1", "n1:8001", "n1:9001"
	f := serveConfig{where: "Dockerfile", env: env}.check(t)
	if !slices.Contains(d.volumes, *f.dataDir) {
		t.Errorf("the data dir %s is not a VOLUME (%q)", *f.dataDir, d.volumes)
	}
	for _, p := range []int{port(t, "Dockerfile", *f.httpAddr), port(t, "Dockerfile", *f.raftAddr)} {
		if !slices.Contains(d.expose, p) {
			t.Errorf("port %d is not EXPOSEd (%v)", p, d.expose)
		}
	}
}

// --- docker-compose.yml ---

func readYAMLFile(t *testing.T, path string) []any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := parseYAML(string(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return docs
}

// get walks v along path (map keys, or sequence indexes as ints).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			s, _ := v.([]any)
			if k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func TestComposeFile(t *testing.T) {
	d := readDockerfile(t)
	docs := readYAMLFile(t, filepath.Join(repoRoot, "deploy/docker-compose.yml"))
	if len(docs) != 1 {
		t.Fatalf("docker-compose.yml: %d documents", len(docs))
	}
	services, _ := get(docs[0], "services").(map[string]any)
	if len(services) != 3 {
		t.Fatalf("docker-compose.yml: %d services, want 3", len(services))
	}
	names := slices.Sorted(maps.Keys(services))
	ids := map[string]bool{}
	var healthArgs []string
	for _, name := range names {
		svc := services[name]
		where := "docker-compose.yml " + name
		env := maps.Clone(d.env)
		envMap, ok := get(svc, "environment").(map[string]any)
		if !ok {
			t.Fatalf("%s: environment must be a mapping", where)
		}
		for k, v := range envMap {
			env[k] = str(v)
		}
		var args []string
		for _, a := range asSlice(get(svc, "command")) {
			args = append(args, str(a))
		}
		if get(svc, "entrypoint") != nil {
			t.Errorf("%s: keep the image's entrypoint (raftkv serve)", where)
		}
		if u := str(get(svc, "user")); u == "root" || strings.HasPrefix(u, "0") {
			t.Errorf("%s: user %q", where, u)
		}
		f := serveConfig{where: where, env: env, args: args}.check(t)
		if ids[*f.id] {
			t.Errorf("%s: id %s used twice", where, *f.id)
		}
		ids[*f.id] = true
		if host(*f.httpAdv) != name || host(*f.raftAdv) != name {
			t.Errorf("%s: advertises %s and %s, want the service name %s", where, *f.httpAdv, *f.raftAdv, name)
		}
		if *f.expect != len(services) {
			t.Errorf("%s: --bootstrap-expect %d for %d services", where, *f.expect, len(services))
		}
		var wantJoin, wantPeers []string
		for _, n := range names {
			wantJoin = append(wantJoin, n+":"+strconv.Itoa(port(t, where, *f.httpAdv)))
			wantPeers = append(wantPeers, n+"="+n+":"+strconv.Itoa(port(t, where, *f.raftAdv)))
		}
		if got := splitList(*f.join); !slices.Equal(got, wantJoin) {
			t.Errorf("%s: --join %q, want %q", where, got, wantJoin)
		}
		if got := splitList(*f.peerAddrs); !slices.Equal(got, wantPeers) {
			t.Errorf("%s: --raft-peer-addrs %q, want %q", where, got, wantPeers)
		}
		httpPort := strconv.Itoa(port(t, where, *f.httpAddr))
		published := false
		for _, p := range asSlice(get(svc, "ports")) {
			parts := strings.Split(str(p), ":")
			published = published || parts[len(parts)-1] == httpPort
		}
		if !published {
			t.Errorf("%s: the HTTP port %s is not published (%v)", where, httpPort, get(svc, "ports"))
		}
		mounted := false
		for _, v := range asSlice(get(svc, "volumes")) {
			src, dst, _ := strings.Cut(str(v), ":")
			if dst == *f.dataDir {
				mounted = true
				if _, ok := get(docs[0], "volumes").(map[string]any)[src]; !ok {
					t.Errorf("%s: volume %s is not declared", where, src)
				}
			}
		}
		if !mounted {
			t.Errorf("%s: no volume on the data dir %s", where, *f.dataDir)
		}
		healthArgs = checkHealthcheck(t, where, d, get(svc, "healthcheck"), port(t, where, *f.httpAddr))
	}
	// The healthcheck's command, pointed at a real node, passes.
	if healthArgs != nil {
		c := testkit.NewCluster(t, 1, testkit.Options{})
		args := append(append([]string{"health"}, healthArgs...), "--addr", c.URL(0))
		var out, errOut bytes.Buffer
		if err := run(t.Context(), args, nil, &out, &errOut); err != nil {
			t.Errorf("raftkv %s on a ready node: %v %s", strings.Join(args, " "), err, errOut.String())
		}
	}
}

// checkHealthcheck checks a compose service's healthcheck: the exec form
// (the image has no shell) of the image's binary running raftkv health,
// whose arguments parse with that command's own flag set, asking for
// readiness (not --live) on the container's own HTTP port over loopback,
// with a --timeout shorter than the healthcheck's. It returns the
// arguments after "health".
func checkHealthcheck(t *testing.T, where string, d dockerfile, hc any, httpPort int) []string {
	t.Helper()
	var test []string
	for _, a := range asSlice(get(hc, "test")) {
		test = append(test, str(a))
	}
	if len(test) < 3 || test[0] != "CMD" || len(d.entrypoint) == 0 || test[1] != d.entrypoint[0] || test[2] != "health" {
		t.Errorf("%s: healthcheck test %q, want [CMD %s health ...] (exec form: no shell in the image)", where, test, strings.Join(d.entrypoint[:min(1, len(d.entrypoint))], ""))
		return nil
	}
	c, live := newHealthCommand(io.Discard)
	if _, err := c.parse(test[3:], 0, 0); err != nil {
		t.Errorf("%s: healthcheck: raftkv health %q: %v", where, test[3:], err)
		return nil
	}
	if *live {
		t.Errorf("%s: the healthcheck checks /livez: want readiness (/readyz)", where)
	}
	endpoints, err := splitAddr(c.addr, false)
	if err != nil || len(endpoints) != 1 {
		t.Errorf("%s: healthcheck --addr %q: want one endpoint (%v)", where, c.addr, err)
		return nil
	}
	base, err := client.ParseEndpoint(endpoints[0])
	if err != nil {
		t.Errorf("%s: healthcheck --addr: %v", where, err)
		return nil
	}
	u, _ := url.Parse(base)
	if h := u.Hostname(); h != "127.0.0.1" && h != "localhost" {
		t.Errorf("%s: the healthcheck asks %s: want this container (127.0.0.1)", where, h)
	}
	if p, _ := strconv.Atoi(u.Port()); p != httpPort {
		t.Errorf("%s: the healthcheck asks port %s, the node listens on %d", where, u.Port(), httpPort)
	}
	durations := map[string]time.Duration{}
	for _, k := range []string{"interval", "timeout", "start_period"} {
		v, err := time.ParseDuration(str(get(hc, k)))
		if err != nil || v <= 0 {
			t.Errorf("%s: healthcheck %s %q: want a duration", where, k, str(get(hc, k)))
		}
		durations[k] = v
	}
	if c.timeout <= 0 || c.timeout >= durations["timeout"] {
		t.Errorf("%s: raftkv health --timeout %s: want it shorter than the healthcheck's timeout %s", where, c.timeout, durations["timeout"])
	}
	return test[3:]
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// --- Kubernetes ---

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// k8sObjects reads every manifest kustomization.yaml lists, keyed by
// kind/name, and checks that no manifest in the directory is left out.
func k8sObjects(t *testing.T) map[string]map[string]any {
	t.Helper()
	dir := filepath.Join(repoRoot, "deploy/kubernetes")
	kust := readYAMLFile(t, filepath.Join(dir, "kustomization.yaml"))
	var listed []string
	for _, r := range asSlice(get(kust[0], "resources")) {
		listed = append(listed, str(r))
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(listed, b) {
			t.Errorf("deploy/kubernetes/%s is not in kustomization.yaml", b)
		}
	}
	objs := map[string]map[string]any{}
	for _, name := range listed {
		for _, doc := range readYAMLFile(t, filepath.Join(dir, name)) {
			m, ok := doc.(map[string]any)
			if !ok {
				t.Fatalf("%s: a document is not a mapping", name)
			}
			objs[str(m["kind"])+"/"+str(get(m, "metadata", "name"))] = m
		}
	}
	return objs
}

func TestKubernetesManifests(t *testing.T) {
	objs := k8sObjects(t)
	sts := objs["StatefulSet/raftkv"]
	peersSvc := objs["Service/"+str(get(sts, "spec", "serviceName"))]
	clientSvc := objs["Service/raftkv"]
	pdb := objs["PodDisruptionBudget/raftkv"]
	if sts == nil || peersSvc == nil || clientSvc == nil || pdb == nil {
		t.Fatalf("want StatefulSet/raftkv, its headless Service, Service/raftkv and PodDisruptionBudget/raftkv; have %v", slices.Sorted(maps.Keys(objs)))
	}
	replicas, _ := get(sts, "spec", "replicas").(int64)
	if replicas < 1 {
		t.Fatalf("replicas %v", get(sts, "spec", "replicas"))
	}
	podLabels, _ := get(sts, "spec", "template", "metadata", "labels").(map[string]any)
	selects := func(where string, sel any) {
		m, _ := sel.(map[string]any)
		if len(m) == 0 {
			t.Errorf("%s: empty selector", where)
		}
		for k, v := range m {
			if podLabels[k] != v {
				t.Errorf("%s: selector %s=%v does not match the pods' labels %v", where, k, v, podLabels)
			}
		}
	}
	selects("StatefulSet", get(sts, "spec", "selector", "matchLabels"))
	selects("headless Service", get(peersSvc, "spec", "selector"))
	selects("client Service", get(clientSvc, "spec", "selector"))
	selects("PodDisruptionBudget", get(pdb, "spec", "selector", "matchLabels"))

	if str(get(peersSvc, "spec", "clusterIP")) != "None" {
		t.Errorf("Service/%s is not headless (clusterIP None)", get(peersSvc, "metadata", "name"))
	}
	if get(peersSvc, "spec", "publishNotReadyAddresses") != true {
		t.Error("the headless Service must publish pods that are not ready: members find each other through it before any is ready")
	}

	// Quorum: a majority of replicas must stay up.
	maxUnavail, ok := get(pdb, "spec", "maxUnavailable").(int64)
	if !ok || maxUnavail < 1 || replicas-maxUnavail < replicas/2+1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v with %d replicas: a quorum is %d", get(pdb, "spec", "maxUnavailable"), replicas, replicas/2+1)
	}

	pod := get(sts, "spec", "template", "spec")
	containers := asSlice(get(pod, "containers"))
	if len(containers) != 1 {
		t.Fatalf("%d containers", len(containers))
	}
	ctr := containers[0]
	if get(ctr, "command") != nil {
		t.Error("keep the image's entrypoint (raftkv serve): set args, not command")
	}

	// Non-root, read-only root file system.
	if get(pod, "securityContext", "runAsNonRoot") != true && get(ctr, "securityContext", "runAsNonRoot") != true {
		t.Error("runAsNonRoot is not set")
	}
	if uid, ok := get(pod, "securityContext", "runAsUser").(int64); ok && uid == 0 {
		t.Error("runAsUser 0")
	}
	if get(ctr, "securityContext", "readOnlyRootFilesystem") != true {
		t.Error("readOnlyRootFilesystem is not set")
	}
	if get(ctr, "securityContext", "allowPrivilegeEscalation") != false {
		t.Error("allowPrivilegeEscalation is not false")
	}

	// One configuration per pod: the downward API's values put in.
	ctrPorts := map[string]int64{}
	for _, p := range asSlice(get(ctr, "ports")) {
		ctrPorts[str(get(p, "name"))], _ = get(p, "containerPort").(int64)
	}
	ns := "ns1"
	headless := str(get(peersSvc, "metadata", "name"))
	var ids []string
	for i := range int(replicas) {
		podName := fmt.Sprintf("%s-%d", get(sts, "metadata", "name"), i)
		fields := map[string]string{"metadata.name": podName, "metadata.namespace": ns, "status.podIP": fmt.Sprintf("10.1.0.%d", i+10)}
		where := "StatefulSet pod " + podName
		env := map[string]string{}
		for _, e := range asSlice(get(ctr, "env")) {
			name := str(get(e, "name"))
			if fp := str(get(e, "valueFrom", "fieldRef", "fieldPath")); fp != "" {
				v, ok := fields[fp]
				if !ok {
					t.Fatalf("%s: %s from field %s, which this test does not know", where, name, fp)
				}
				env[name] = v
				continue
			}
			// Kubernetes expands $(VAR) from variables defined before; an
			// unknown reference stays as it is, silently.
			env[name] = envRef.ReplaceAllStringFunc(str(get(e, "value")), func(ref string) string {
				v, ok := env[envRef.FindStringSubmatch(ref)[1]]
				if !ok {
					t.Errorf("%s: %s refers to %s, not defined before it", where, name, ref)
				}
				return v
			})
		}
		var args []string
		for _, a := range asSlice(get(ctr, "args")) {
			args = append(args, str(a))
		}
		f := serveConfig{where: where, env: env, args: args}.check(t)
		ids = append(ids, *f.id)
		if *f.id != podName {
			t.Errorf("%s: id %q, want the pod name", where, *f.id)
		}
		dns := func(pod string) string { return pod + "." + headless + "." + ns + ".svc.cluster.local" }
		if host(*f.httpAdv) != dns(podName) {
			t.Errorf("%s: advertises %s, want %s", where, *f.httpAdv, dns(podName))
		}
		if *f.expect != int(replicas) {
			t.Errorf("%s: --bootstrap-expect %d with %d replicas", where, *f.expect, replicas)
		}
		httpPort, raftPort := port(t, where, *f.httpAddr), port(t, where, *f.raftAddr)
		if ctrPorts["http"] != int64(httpPort) || ctrPorts["raft"] != int64(raftPort) {
			t.Errorf("%s: container ports %v, serve listens on %d and %d", where, ctrPorts, httpPort, raftPort)
		}
		if port(t, where, *f.httpAdv) != httpPort || port(t, where, *f.raftAdv) != raftPort {
			t.Errorf("%s: advertised ports differ from the bound ones", where)
		}
		var wantJoin, wantPeers []string
		for j := range int(replicas) {
			p := fmt.Sprintf("%s-%d", get(sts, "metadata", "name"), j)
			wantJoin = append(wantJoin, fmt.Sprintf("%s:%d", dns(p), httpPort))
			wantPeers = append(wantPeers, fmt.Sprintf("%s=%s:%d", p, dns(p), raftPort))
		}
		if got := splitList(*f.join); !slices.Equal(got, wantJoin) {
			t.Errorf("%s: --join %q, want %q", where, got, wantJoin)
		}
		if got := splitList(*f.peerAddrs); !slices.Equal(got, wantPeers) {
			t.Errorf("%s: --raft-peer-addrs %q, want %q", where, got, wantPeers)
		}
		// The data dir is a claim of the StatefulSet.
		mounted := false
		for _, m := range asSlice(get(ctr, "volumeMounts")) {
			if str(get(m, "mountPath")) != *f.dataDir {
				continue
			}
			for _, vct := range asSlice(get(sts, "spec", "volumeClaimTemplates")) {
				mounted = mounted || str(get(vct, "metadata", "name")) == str(get(m, "name"))
			}
		}
		if !mounted && i == 0 {
			t.Errorf("the data dir %s is not on a volumeClaimTemplate", *f.dataDir)
		}
	}
	if len(ids) > 1 && str(get(sts, "spec", "podManagementPolicy")) != "Parallel" {
		t.Error("podManagementPolicy must be Parallel: with OrderedReady the first pod waits to be ready, which needs the others")
	}

	// Service ports lead to the container's.
	for _, svc := range []any{peersSvc, clientSvc} {
		for _, p := range asSlice(get(svc, "spec", "ports")) {
			tp := get(p, "targetPort")
			if n, ok := tp.(int64); ok && !slices.Contains(slices.Collect(maps.Values(ctrPorts)), n) ||
				!ok && ctrPorts[str(tp)] == 0 {
				t.Errorf("Service/%s: targetPort %v is not a container port (%v)", get(svc, "metadata", "name"), tp, ctrPorts)
			}
		}
	}

	// Probes: the routes, on the HTTP port.
	probes := map[string]string{}
	for _, kind := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
		pr := get(ctr, kind, "httpGet")
		if pr == nil {
			continue
		}
		probes[kind] = str(get(pr, "path"))
		if p := get(pr, "port"); p != "http" && p != ctrPorts["http"] {
			t.Errorf("%s on port %v, not the HTTP port", kind, p)
		}
	}
	if probes["readinessProbe"] != "/readyz" || probes["livenessProbe"] != "/livez" {
		t.Errorf("probes %v: want readiness on /readyz and liveness on /livez", probes)
	}
	checkRoutes(t, slices.Collect(maps.Values(probes)))

	kubectlKustomize(t, objs)
}

// checkRoutes asks a running node for each path: it must be served (not 404
// or 405), and /livez and /readyz must answer 200 once the node is ready.
func checkRoutes(t *testing.T, paths []string) {
	t.Helper()
	c := testkit.NewCluster(t, 1, testkit.Options{})
	c.WaitReady()
	hc := &http.Client{Timeout: 5 * time.Second}
	for _, p := range slices.Compact(slices.Sorted(slices.Values(paths))) {
		resp, err := hc.Get(c.URL(0) + p)
		if err != nil {
			t.Errorf("GET %s: %v", p, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s on a ready node: %s", p, resp.Status)
		}
	}
}

// kubectlKustomize, where kubectl is on PATH, renders the manifests with
// kubectl kustomize (offline; kubectl apply --dry-run=client needs an API
// server) and compares them with what parseYAML read: a real YAML parser
// and ours must agree.
func kubectlKustomize(t *testing.T, objs map[string]map[string]any) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("kubectl is not on PATH: the kubectl kustomize check is skipped (the checks above ran)")
		return
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", filepath.Join(repoRoot, "deploy/kubernetes"))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/kubernetes: %v\n%s", err, stderr.String())
	}
	docs, err := parseYAML(string(out))
	if err != nil {
		t.Fatalf("kubectl kustomize output: %v", err)
	}
	got := map[string]map[string]any{}
	for _, d := range docs {
		m, _ := d.(map[string]any)
		got[str(m["kind"])+"/"+str(get(m, "metadata", "name"))] = m
	}
	for k, want := range objs {
		if !reflect.DeepEqual(got[k], want) {
			t.Errorf("%s: kubectl kustomize reads\n%v\nparseYAML reads\n%v", k, got[k], want)
		}
	}
	if len(got) != len(objs) {
		t.Errorf("kubectl kustomize: %d objects, parseYAML: %d", len(got), len(objs))
	}
	t.Logf("kubectl kustomize: %d objects, read alike", len(got))
}
