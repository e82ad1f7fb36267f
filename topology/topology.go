// Package topology reads the regions file: the regions vmapp serves and, for
// each, the storage endpoints (S3-compatible servers and buckets) holding its
// replicas.
//
//	regions:
//	  - name: eastus
//	    endpoints:
//	      - url: http://127.0.0.1:9000
//	        bucket: vmapp-eastus
//	        credentialsEnv: VMAPP_S3     # optional, the default
//	        bandwidthMBps: 100           # optional: replication streams into it at most this fast
//	        egressMBps: 100              # optional: every byte read from it, at most this fast (agents read through vmappd)
//	replication:                         # optional, every field too
//	  concurrency: 8                     # replicas copying at once
//	  endpointConcurrency: 4             # ... into one endpoint
//	  partConcurrency: 4                 # parts of one replica in flight
//	  bandwidthMBps: 0                   # bytes vmappd streams between stores, overall (0: unlimited)
//	  scrubInterval: 24h                 # how often completed replicas are checked (0: never)
//	  deepScrubPeriod: 168h              # every completed replica read back and verified this often (0: never)
//	  deepScrubMBps: 10                  # ... reading at most this fast
//
// Credentials never live in the file: an endpoint reads its access key and
// secret key from the environment variables <credentialsEnv>_ACCESS_KEY and
// <credentialsEnv>_SECRET_KEY. Unknown keys (a misspelt field, or a secret put
// in the file by mistake) are an error.
package topology

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultCredentialsEnv is the environment variable prefix used when an
// endpoint names none.
const DefaultCredentialsEnv = "VMAPP_S3"

// Topology is the parsed regions file.
type Topology struct {
	Regions     []Region    `yaml:"regions"`
	Replication Replication `yaml:"replication"`
}

// Replication tunes the replicator; zero values mean its defaults.
type Replication struct {
	Concurrency         int           `yaml:"concurrency"`
	EndpointConcurrency int           `yaml:"endpointConcurrency"`
	PartConcurrency     int           `yaml:"partConcurrency"`
	BandwidthMBps       float64       `yaml:"bandwidthMBps"`
	ScrubInterval       time.Duration `yaml:"scrubInterval"`
	// DeepScrubPeriod is how often the deep scrub reads every completed
	// replica back and checks its pieces' sha256: unset means
	// DefaultDeepScrubPeriod, 0 never.
	DeepScrubPeriod *time.Duration `yaml:"deepScrubPeriod"`
	// DeepScrubMBps bounds how fast the deep scrub reads (10^6 bytes/s);
	// 0 means DefaultDeepScrubMBps.
	DeepScrubMBps float64 `yaml:"deepScrubMBps"`
}

// Defaults of the deep scrub.
const (
	DefaultDeepScrubPeriod = 7 * 24 * time.Hour
	DefaultDeepScrubMBps   = 10
	// MinDeepScrubPeriod keeps a mistaken period (seconds meant as hours)
	// from reading every replica without a pause.
	MinDeepScrubPeriod = time.Minute
)

// DeepScrub returns the deep scrub's period (0: no deep scrub) and its read
// rate in bytes per second, defaults applied.
func (r Replication) DeepScrub() (period time.Duration, bytesPerSec float64) {
	period = DefaultDeepScrubPeriod
	if r.DeepScrubPeriod != nil {
		period = *r.DeepScrubPeriod
	}
	mbps := r.DeepScrubMBps
	if mbps == 0 {
		mbps = DefaultDeepScrubMBps
	}
	return period, mbps * 1e6
}

// Region is one region and its storage endpoints.
type Region struct {
	Name      string     `yaml:"name"`
	Endpoints []Endpoint `yaml:"endpoints"`
}

// Endpoint is one S3-compatible server and the bucket vmapp uses on it.
type Endpoint struct {
	URL            string `yaml:"url"`
	Bucket         string `yaml:"bucket"`
	CredentialsEnv string `yaml:"credentialsEnv"`
	// BandwidthMBps bounds how fast replication streams into the endpoint
	// (10^6 bytes/s); 0 is unlimited.
	BandwidthMBps float64 `yaml:"bandwidthMBps"`
	// EgressMBps caps the bytes read from the endpoint (10^6 bytes/s),
	// all readers together: downloads (which then get no presigned URL
	// of it and read through vmappd's ReadRange), replication's reads,
	// the scrub's. 0 is unlimited.
	EgressMBps float64 `yaml:"egressMBps"`
}

// Egress returns the endpoint's egress cap in bytes per second; 0 is
// none.
func (e Endpoint) Egress() int64 { return int64(e.EgressMBps * 1e6) }

// Credentials returns the endpoint's access and secret key from the
// environment, or an error naming the missing variable.
func (e Endpoint) Credentials() (accessKey, secretKey string, err error) {
	prefix := e.CredentialsEnv
	if prefix == "" {
		prefix = DefaultCredentialsEnv
	}
	accessKey, secretKey = os.Getenv(prefix+"_ACCESS_KEY"), os.Getenv(prefix+"_SECRET_KEY")
	if accessKey == "" || secretKey == "" {
		return "", "", fmt.Errorf("endpoint %s: set %s_ACCESS_KEY and %s_SECRET_KEY in the environment", e.URL, prefix, prefix)
	}
	return accessKey, secretKey, nil
}

var (
	regionName = regexp.MustCompile(`^[a-z][a-z0-9]{0,63}$`)
	bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	envName    = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
)

// Load reads and validates the regions file at path.
func Load(path string) (*Topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("regions file: %w", err)
	}
	t, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("regions file %s: %w", path, err)
	}
	return t, nil
}

// Parse decodes and validates a regions document.
func Parse(b []byte) (*Topology, error) {
	var t Topology
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return nil, err
	}
	return &t, t.Validate()
}

// Validate checks names, URLs and buckets, and that nothing is listed twice.
func (t *Topology) Validate() error {
	if len(t.Regions) == 0 {
		return fmt.Errorf("regions: at least one region is required")
	}
	rp := t.Replication
	for _, f := range []struct {
		name string
		v    float64
	}{{"concurrency", float64(rp.Concurrency)}, {"endpointConcurrency", float64(rp.EndpointConcurrency)}, {"partConcurrency", float64(rp.PartConcurrency)}, {"bandwidthMBps", rp.BandwidthMBps}, {"scrubInterval", float64(rp.ScrubInterval)}} {
		if f.v < 0 {
			return fmt.Errorf("replication.%s %v: must not be negative", f.name, f.v)
		}
	}
	if p := rp.DeepScrubPeriod; p != nil && *p != 0 && *p < MinDeepScrubPeriod {
		return fmt.Errorf("replication.deepScrubPeriod %v: want at least %v, or 0 to turn the deep scrub off", *p, MinDeepScrubPeriod)
	}
	if rp.DeepScrubMBps < 0 {
		return fmt.Errorf("replication.deepScrubMBps %v: must not be negative", rp.DeepScrubMBps)
	}
	seenRegion := map[string]bool{}
	seenStore := map[string]string{}
	for i, r := range t.Regions {
		if !regionName.MatchString(r.Name) {
			return fmt.Errorf("regions[%d].name %q: want lowercase letters and digits, starting with a letter, at most 64", i, r.Name)
		}
		if seenRegion[r.Name] {
			return fmt.Errorf("regions[%d].name %q: listed twice", i, r.Name)
		}
		seenRegion[r.Name] = true
		if len(r.Endpoints) == 0 {
			return fmt.Errorf("region %s: at least one endpoint is required", r.Name)
		}
		for j, e := range r.Endpoints {
			u, err := url.Parse(e.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
				return fmt.Errorf("region %s: endpoints[%d].url %q: want http(s)://host:port", r.Name, j, e.URL)
			}
			if !bucketName.MatchString(e.Bucket) {
				return fmt.Errorf("region %s: endpoints[%d].bucket %q: not a valid S3 bucket name", r.Name, j, e.Bucket)
			}
			if e.BandwidthMBps < 0 {
				return fmt.Errorf("region %s: endpoints[%d].bandwidthMBps %v: must not be negative", r.Name, j, e.BandwidthMBps)
			}
			if e.EgressMBps < 0 {
				return fmt.Errorf("regions[%d].endpoints[%d].egressMBps %v (region %s): must not be negative", i, j, e.EgressMBps, r.Name)
			}
			if e.CredentialsEnv != "" && !envName.MatchString(e.CredentialsEnv) {
				return fmt.Errorf("region %s: endpoints[%d].credentialsEnv %q: want an environment variable prefix such as VMAPP_S3", r.Name, j, e.CredentialsEnv)
			}
			key := u.Host + "/" + e.Bucket
			if prev, ok := seenStore[key]; ok {
				return fmt.Errorf("region %s: endpoints[%d]: bucket %s on %s is already used by region %s", r.Name, j, e.Bucket, u.Host, prev)
			}
			seenStore[key] = r.Name
		}
	}
	return nil
}

// Names returns the region names in file order.
func (t *Topology) Names() []string {
	names := make([]string, len(t.Regions))
	for i, r := range t.Regions {
		names[i] = r.Name
	}
	return names
}

// Has reports whether region is in the topology.
func (t *Topology) Has(region string) bool { return slices.Contains(t.Names(), region) }

// Region returns the named region.
func (t *Topology) Region(name string) (Region, bool) {
	for _, r := range t.Regions {
		if r.Name == name {
			return r, true
		}
	}
	return Region{}, false
}
