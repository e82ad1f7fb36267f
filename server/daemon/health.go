package daemon

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// RegionService is the gRPC health service name of a region's stores:
// SERVING while at least one of its endpoints answers. Probes of one
// region leave the others', and vmappd's own, alone.
func RegionService(region string) string { return "vmapp.region." + region }

// DefaultHealthInterval is how often vmappd checks its data directory and
// its stores for the health service.
const DefaultHealthInterval = 10 * time.Second

// healthProbeKey is the object a store probe asks for; it need not exist:
// any answer, "not found" included, says the store is there.
const healthProbeKey = ".vmapp-health-probe"

// healthState keeps the health service in step with what vmappd knows:
// vmappd's services (and "") are SERVING while no condition is down (no
// leader, the data directory not writable); each region's service
// follows its stores. Draining (Shutdown) makes everything NOT_SERVING.
type healthState struct {
	hs       *health.Server
	services []string
	mu       sync.Mutex
	down     map[string]string // condition -> what is wrong

	stateOK *prometheus.GaugeVec
	storeUp *prometheus.GaugeVec
}

func newHealthState(hs *health.Server, reg prometheus.Registerer) *healthState {
	h := &healthState{hs: hs, down: map[string]string{},
		stateOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vmapp_state_writable", Help: "1 while vmappd's data directory takes writes (checked every health interval), 0 when it doesn't (full, read-only).",
		}, nil),
		storeUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vmapp_store_up", Help: "1 while a regional store endpoint answers vmappd's probe (every health interval), 0 when it doesn't; by region and endpoint index.",
		}, []string{"region", "endpoint"}),
	}
	h.stateOK.WithLabelValues().Set(1)
	reg.MustRegister(h.stateOK, h.storeUp)
	return h
}

// serve sets the services vmappd's status applies to: "" and every
// vmapp.v1 service but the calls between nodes (which answer while a node
// has no leader, to elect one).
func (h *healthState) serve(services []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.services = []string{""}
	for _, s := range services {
		if strings.HasPrefix(s, "vmapp.v1.") && s != pb.PeerService_ServiceDesc.ServiceName {
			h.services = append(h.services, s)
		}
	}
	h.apply()
}

// set marks condition down with what is wrong, or up when problem is "".
func (h *healthState) set(condition, problem string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if problem == "" {
		delete(h.down, condition)
	} else {
		h.down[condition] = problem
	}
	h.apply()
}

// apply sets the services' status; h.mu is held.
func (h *healthState) apply() {
	status := healthpb.HealthCheckResponse_SERVING
	if len(h.down) > 0 {
		status = healthpb.HealthCheckResponse_NOT_SERVING
	}
	for _, s := range h.services {
		h.hs.SetServingStatus(s, status)
	}
}

// problems lists the conditions down, sorted.
func (h *healthState) problems() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for c, p := range h.down {
		out = append(out, c+": "+p)
	}
	slices.Sort(out)
	return out
}

// watchHealth checks the data directory and the stores every interval
// until ctx ends.
func (d *Daemon) watchHealth(ctx context.Context) {
	every := d.Config.HealthInterval
	if every <= 0 {
		every = DefaultHealthInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		d.checkDataDir()
		d.checkStores(ctx, max(every, 5*time.Second))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkDataDir writes, syncs and removes a small file next to the state
// file: a full or read-only file system fails it as it would fail the
// state's next commit.
func (d *Daemon) checkDataDir() {
	err := writeProbe(filepath.Join(d.Config.DataDir, ".health-probe"))
	problem := ""
	if err != nil {
		problem = "the data directory takes no writes: " + err.Error()
		d.log.Error("health: state not writable", "err", err)
	}
	d.health.set("state", problem)
	d.health.stateOK.WithLabelValues().Set(b2f(err == nil))
}

func writeProbe(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	_, err = f.Write(make([]byte, 4096))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// checkStores probes every endpoint at once (each within timeout: a
// store that takes longer is down for the probe) and
// sets each region's service: SERVING while one of its endpoints answers.
func (d *Daemon) checkStores(ctx context.Context, timeout time.Duration) {
	var mu sync.Mutex
	up := map[string]int{}
	var g errgroup.Group
	for _, region := range d.Topology.Names() {
		for i, st := range d.Stores[region] {
			g.Go(func() error {
				pctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				_, err := st.Stat(pctx, healthProbeKey)
				ok := err == nil || errs.Is(err, errs.NotFound)
				if !ok && ctx.Err() == nil {
					d.log.Warn("health: storage endpoint not answering", "region", region, "endpoint", st.Endpoint(), "err", err)
				}
				d.health.storeUp.WithLabelValues(region, strconv.Itoa(i)).Set(b2f(ok))
				if ok {
					mu.Lock()
					up[region]++
					mu.Unlock()
				}
				return nil
			})
		}
	}
	g.Wait()
	if ctx.Err() != nil {
		return
	}
	for _, region := range d.Topology.Names() {
		status := healthpb.HealthCheckResponse_NOT_SERVING
		if up[region] > 0 {
			status = healthpb.HealthCheckResponse_SERVING
		}
		d.Health.SetServingStatus(RegionService(region), status)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// healthHandlers adds /healthz (live: vmappd answers) and /readyz (ready:
// vmappd's health is SERVING; ?service=NAME for one service, e.g. a
// region's) to mux, for load balancers that speak HTTP only.
func (d *Daemon) healthHandlers(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		service := r.URL.Query().Get("service")
		res, err := d.Health.Check(r.Context(), &healthpb.HealthCheckRequest{Service: service})
		switch {
		case err != nil:
			http.Error(w, err.Error(), http.StatusNotFound)
		case res.Status != healthpb.HealthCheckResponse_SERVING:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, res.Status)
			for _, p := range d.health.problems() {
				fmt.Fprintln(w, p)
			}
		default:
			fmt.Fprintln(w, res.Status)
		}
	})
}
