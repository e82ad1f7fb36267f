// Package deploy holds the deployment files; its test checks the
// docker-compose file, which can't be run where there is no Docker engine.
package deploy

import (
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
	Name string `yaml:"name"`
	// Anchors for the services to merge.
	XMinio   any                `yaml:"x-minio"`
	XAgent   any                `yaml:"x-agent"`
	Services map[string]service `yaml:"services"`
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
	Profiles []string `yaml:"profiles"`
	Restart  string   `yaml:"restart"`
}

type build struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
	Target     string `yaml:"target"`
}

// TestCompose checks that everything deploy/docker-compose.yml refers to
// resolves: build contexts, Dockerfiles and their targets, mounted files,
// named volumes, dependencies and their conditions, published ports, the
// environment, and that the regions file's endpoints are the MinIO
// services.
func TestCompose(t *testing.T) {
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

	var minios []string
	ports := map[string]string{}
	for name, s := range c.Services {
		if (s.Image == "") == (s.Build == nil) {
			t.Errorf("%s: needs exactly one of image and build", name)
		}
		if s.Build != nil {
			dockerfile := filepath.Join(s.Build.Context, s.Build.Dockerfile)
			df, err := os.ReadFile(dockerfile)
			if err != nil {
				t.Errorf("%s: build: %v", name, err)
				continue
			}
			if s.Build.Target != "" && !regexp.MustCompile(`(?m)^FROM .* AS `+regexp.QuoteMeta(s.Build.Target)+`$`).Match(df) {
				t.Errorf("%s: %s has no stage %q", name, dockerfile, s.Build.Target)
			}
		}
		if strings.HasPrefix(s.Image, "minio/minio") {
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
			parts := strings.Split(p, ":")
			if len(parts) != 3 || parts[0] != "127.0.0.1" {
				t.Errorf("%s: port %q: publish on 127.0.0.1 only (host ip:host port:container port)", name, p)
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
		if addr := s.Environment["VMAPP_SERVER"]; addr != "" {
			if _, ok := c.Services[strings.Split(addr, ":")[0]]; !ok {
				t.Errorf("%s: VMAPP_SERVER %s is not a service", name, addr)
			}
		}
	}
	for _, name := range []string{"vmappd", "setup", "agent-vm1", "agent-vm2", "agent-web-0", "agent-web-1"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	if c.Services["vmappd"].Healthcheck == nil {
		t.Error("vmappd has no health check")
	}
	for _, name := range minios {
		if c.Services[name].Healthcheck == nil {
			t.Errorf("%s has no health check", name)
		}
	}

	// The regions file mounted into vmappd names the MinIO services.
	var regionsFile string
	for _, v := range c.Services["vmappd"].Volumes {
		if p := strings.Split(v, ":"); len(p) >= 2 && p[1] == "/etc/vmapp/regions.yaml" {
			regionsFile = p[0]
		}
	}
	if !slices.Contains(c.Services["vmappd"].Command, "/etc/vmapp/regions.yaml") || regionsFile == "" {
		t.Fatal("vmappd does not read a mounted regions file")
	}
	topo, err := topology.Load(regionsFile)
	if err != nil {
		t.Fatal(err)
	}
	endpoints := 0
	for _, r := range topo.Regions {
		for _, e := range r.Endpoints {
			endpoints++
			host := strings.Split(strings.TrimPrefix(e.URL, "http://"), ":")[0]
			if !slices.Contains(minios, host) {
				t.Errorf("region %s endpoint %s is not a MinIO service of the compose file", r.Name, e.URL)
			}
		}
	}
	if endpoints != len(minios) {
		t.Errorf("%d endpoints in %s, %d MinIO services", endpoints, regionsFile, len(minios))
	}
}
