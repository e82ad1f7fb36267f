// Package deploy holds the deployment files. TestCompose checks the
// docker-compose file statically (machines without Docker run it too);
// TestComposeLive runs it (make test-compose).
package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vmapp/vmapp/topology"
)

type compose struct {
	// Anchors for the services to merge.
	XBuild   any                `yaml:"x-build"`
	XMinio   any                `yaml:"x-minio"`
	XVmappd  any                `yaml:"x-vmappd"`
	XAgent   any                `yaml:"x-agent"`
	Services map[string]service `yaml:"services"`
	Networks map[string]any     `yaml:"networks"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       *build            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Profiles    []string `yaml:"profiles"`
	Restart     string   `yaml:"restart"`
	Networks    []string `yaml:"networks"`
	NetworkMode string   `yaml:"network_mode"`
}

type build struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
	Target     string `yaml:"target"`
}

// TestCompose checks that everything deploy/docker-compose.yml refers to
// resolves: images and the Dockerfile stages that build them, mounted
// files, named volumes and networks, dependencies and their conditions,
// published ports, the environment; that the regions file's endpoints are
// the MinIO services, each on the control network and its region's, with
// the agents of that region; that the cluster's nodes name each other by
// service; and that the machines the agents run as are the ones setup.sh
// registers.
func TestCompose(t *testing.T) {
	c := loadCompose(t)
	df, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var minios []string
	ports := map[string]string{}
	for name, s := range c.Services {
		checkImage(t, name, s, df)
		if s.Build != nil && s.Build.Target == "minio" {
			minios = append(minios, name)
		}
		for _, v := range s.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s: volume %s: %v", name, v, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: volume %q is not declared under volumes", name, src)
			}
		}
		// Every container is on the networks it names, never on an
		// implicit default one.
		if len(s.Networks) == 0 && s.NetworkMode != "none" {
			t.Errorf("%s: no networks (it would join an implicit default network)", name)
		}
		for _, n := range s.Networks {
			if _, ok := c.Networks[n]; !ok {
				t.Errorf("%s: network %q is not declared under networks", name, n)
			}
		}
		for dep, d := range s.DependsOn {
			other, ok := c.Services[dep]
			if !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
			if d.Condition == "service_healthy" && other.Healthcheck == nil {
				t.Errorf("%s waits for %s to be healthy, but it has no health check", name, dep)
			}
		}
		for _, p := range s.Ports {
			parts := strings.Split(strings.Replace(p, publishIP, "IP", 1), ":")
			if len(parts) != 3 || parts[0] != "IP" {
				t.Errorf("%s: port %q: publish on %s only (ip:host port:container port)", name, p, publishIP)
				continue
			}
			if other, dup := ports[parts[1]]; dup {
				t.Errorf("host port %s published by %s and %s", parts[1], other, name)
			}
			ports[parts[1]] = name
		}
		for k, v := range s.Environment {
			for _, ref := range regexp.MustCompile(`\$\{([^}]*)\}`).FindAllStringSubmatch(v, -1) {
				if !strings.Contains(ref[1], ":-") {
					t.Errorf("%s: %s=%s: ${%s} has no default", name, k, v, ref[1])
				}
			}
			if strings.Contains(strings.ToUpper(k), "SECRET") && !strings.HasPrefix(v, "${") {
				t.Errorf("%s: %s is a literal secret; take it from the environment", name, k)
			}
		}
		for _, addr := range strings.Split(s.Environment["VMAPP_SERVER"], ",") {
			if addr == "" {
				continue
			}
			if _, ok := c.Services[strings.Split(addr, ":")[0]]; !ok {
				t.Errorf("%s: VMAPP_SERVER names %s, which is not a service", name, addr)
			}
		}
	}
	for _, name := range []string{"cluster-key", "vmappd-1", "vmappd-2", "vmappd-3", "setup", "cli", "agent-vm1", "agent-vm2", "agent-web-0", "agent-web-1"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	for _, name := range append([]string{"vmappd-1", "vmappd-2", "vmappd-3"}, minios...) {
		if c.Services[name].Healthcheck == nil {
			t.Errorf("%s has no health check", name)
		}
	}
	checkNodes(t, c)
	checkRegions(t, c, minios)
	checkMachines(t, c)
}

// publishIP is the address the ports are published on.
const publishIP = "${VMAPP_PUBLISH_IP:-127.0.0.1}"

func loadCompose(t *testing.T) compose {
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	// Decoding again strictly catches misspelt keys (the anchors' merge
	// keys are resolved by the decoder).
	var strict compose
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&strict); err != nil {
		t.Fatalf("docker-compose.yml has keys this test does not know: %v", err)
	}
	return c
}

// checkImage: a service runs one of the images the Dockerfile builds,
// vmapp/TARGET:${VMAPP_TAG:-dev}, and builds it from that stage (so that
// `up --build` and make images make the same names).
func checkImage(t *testing.T, name string, s service, dockerfile []byte) {
	if s.Build == nil {
		t.Errorf("%s: no build (every image is built from deploy/docker/Dockerfile)", name)
		return
	}
	if got := filepath.Join(s.Build.Context, s.Build.Dockerfile); got != "../deploy/docker/Dockerfile" {
		t.Errorf("%s: builds %s, want ../deploy/docker/Dockerfile", name, got)
	}
	if !regexp.MustCompile(`(?m)^FROM .* AS ` + regexp.QuoteMeta(s.Build.Target) + `$`).Match(dockerfile) {
		t.Errorf("%s: the Dockerfile has no stage %q", name, s.Build.Target)
	}
	if want := "vmapp/" + s.Build.Target + ":${VMAPP_TAG:-dev}"; s.Image != want {
		t.Errorf("%s: image %q, want %q", name, s.Image, want)
	}
}

// flag is the value of --name in args ("" without it).
func flag(args []string, name string) string {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// checkNodes: vmappd-N is node nN, advertised (API and raft) by its
// service name, reading the shared cluster key and the regions file;
// node 1 bootstraps, the others join through node 1 once it is healthy.
func checkNodes(t *testing.T, c compose) {
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("vmappd-%d", i)
		s := c.Services[name]
		cmd := s.Command
		for f, want := range map[string]string{"--node-id": fmt.Sprintf("n%d", i), "--advertise": name + ":7443",
			"--raft-advertise": name + ":7450", "--listen": "0.0.0.0:7443", "--raft-listen": "0.0.0.0:7450",
			"--cluster-key": "/run/vmapp/cluster.key", "--regions": "/etc/vmapp/regions.yaml"} {
			if got := flag(cmd, f); got != want {
				t.Errorf("%s: %s %q, want %q", name, f, got, want)
			}
		}
		join := flag(cmd, "--join")
		switch {
		case i == 1 && join != "":
			t.Errorf("%s: --join %s: node 1 bootstraps the cluster", name, join)
		case i > 1 && (join != "vmappd-1:7443" || s.DependsOn["vmappd-1"].Condition != "service_healthy"):
			t.Errorf("%s: joins through %q (depends on vmappd-1: %+v), want vmappd-1:7443 once it is healthy", name, join, s.DependsOn["vmappd-1"])
		}
		if !slices.Contains(s.Volumes, "cluster-key:/run/vmapp:ro") || !slices.Contains(s.Volumes, "./docker/regions.yaml:/etc/vmapp/regions.yaml:ro") {
			t.Errorf("%s: volumes %v: the cluster key and the regions file must be mounted read-only", name, s.Volumes)
		}
		if s.Healthcheck == nil || !slices.Contains(s.Healthcheck.Test, "health") {
			t.Errorf("%s: its health check must be vmapp health (no token needed)", name)
		}
	}
}

// checkRegions: the regions file's endpoints are the MinIO services, one
// per region, each on the control network and its region's network; the
// networks are control and the regions.
func checkRegions(t *testing.T, c compose, minios []string) {
	topo, err := topology.Load("docker/regions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	nets := []string{"control"}
	var hosts []string
	for _, r := range topo.Regions {
		nets = append(nets, r.Name)
		for _, e := range r.Endpoints {
			host := strings.Split(strings.TrimPrefix(e.URL, "http://"), ":")[0]
			hosts = append(hosts, host)
			if !slices.Contains(minios, host) {
				t.Errorf("region %s endpoint %s is not a MinIO service of the compose file", r.Name, e.URL)
				continue
			}
			if got := c.Services[host].Networks; fmt.Sprint(got) != fmt.Sprint([]string{"control", r.Name}) {
				t.Errorf("%s: networks %v, want [control %s]", host, got, r.Name)
			}
		}
	}
	slices.Sort(hosts)
	slices.Sort(minios)
	if fmt.Sprint(hosts) != fmt.Sprint(minios) {
		t.Errorf("endpoints %v in docker/regions.yaml, MinIO services %v", hosts, minios)
	}
	var declared []string
	for n := range c.Networks {
		declared = append(declared, n)
	}
	slices.Sort(declared)
	slices.Sort(nets)
	if fmt.Sprint(declared) != fmt.Sprint(nets) {
		t.Errorf("networks %v, want control and one per region: %v", declared, nets)
	}
}

// checkMachines: each agent runs as a machine setup.sh registers, on the
// control network and its region's network.
func checkMachines(t *testing.T, c compose) {
	setup, err := os.ReadFile("docker/setup.sh")
	if err != nil {
		t.Fatal(err)
	}
	region := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^machine (\S+) --region (\S+)`).FindAllStringSubmatch(string(setup), -1) {
		region[m[1]] = m[2]
	}
	for _, m := range regexp.MustCompile(`(?m)^exists vmss (\S+) \|\| vmapp vmss create --name \S+ --region (\S+)`).FindAllStringSubmatch(string(setup), -1) {
		for _, in := range regexp.MustCompile(`(?m)^machine (\S+) --vmss `+m[1]+`$`).FindAllStringSubmatch(string(setup), -1) {
			region[in[1]] = m[2]
		}
	}
	agents := 0
	for name, s := range c.Services {
		if !strings.HasPrefix(name, "agent-") {
			continue
		}
		agents++
		vm := flag(s.Command, "--vm")
		r, ok := region[vm]
		if !ok || name != "agent-"+vm {
			t.Errorf("%s runs as machine %q, which setup.sh does not register (it does %v)", name, vm, region)
			continue
		}
		if fmt.Sprint(s.Networks) != fmt.Sprint([]string{"control", r}) {
			t.Errorf("%s: networks %v, want [control %s]", name, s.Networks, r)
		}
		if flag(s.Command, "--token-file") != "/tokens/"+vm+".token" {
			t.Errorf("%s: --token-file %q, want the one setup.sh writes, /tokens/%s.token", name, flag(s.Command, "--token-file"), vm)
		}
	}
	if agents != len(region) {
		t.Errorf("%d agents, %d machines in setup.sh", agents, len(region))
	}
}

// TestImageBases: images.sh passes a stand-in for every base image the
// Dockerfile takes as a build argument, and only those.
func TestImageBases(t *testing.T) {
	df, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("docker/images.sh")
	if err != nil {
		t.Fatal(err)
	}
	var args, passed []string
	for _, m := range regexp.MustCompile(`(?m)^ARG (\w+)`).FindAllStringSubmatch(string(df), -1) {
		args = append(args, m[1])
	}
	for _, m := range regexp.MustCompile(`--build-arg (\w+)=`).FindAllStringSubmatch(string(script), -1) {
		passed = append(passed, m[1])
	}
	slices.Sort(args)
	slices.Sort(passed)
	if fmt.Sprint(args) != fmt.Sprint(passed) {
		t.Errorf("the Dockerfile's build arguments %v, images.sh passes %v", args, passed)
	}
	for _, base := range []string{"GO_IMAGE", "RUNTIME_STATIC", "RUNTIME_DEBIAN", "MINIO_IMAGE"} {
		if !regexp.MustCompile(`(?m)^FROM \$\{` + base + `\} AS `).Match(df) {
			t.Errorf("no stage is FROM ${%s}", base)
		}
	}
}
