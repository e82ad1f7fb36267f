package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// chromium finds Debian's browser (make test-tools installs it), or skips
// the test saying how to get it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on this machine: the console's browser tests need it (as root, `make test-tools` installs Debian's chromium with apt)")
	return ""
}

// consoleRig is a real vmappd (the binary, with --http-listen) on a real
// MinIO holding two regions, a browser, and the tokens of three roles.
type consoleRig struct {
	t                         *testing.T
	root                      *testing.T // the test, whose end stops the agents
	vmappd                    *proc
	c                         *client.Client
	ui                        string // http://addr/ui/
	agentBin, dir             string
	reader, contributor       string // credentials
	shots                     string // where screenshots go
	ctx                       context.Context
	browserAlloc, browserRoot context.Context
}

func newConsoleRig(t *testing.T) *consoleRig {
	browser := chromium(t)
	if testing.Short() {
		t.Skip("builds binaries, runs MinIO and a browser")
	}
	r := &consoleRig{t: t, root: t, dir: t.TempDir(), shots: os.Getenv("VMAPP_SCREENSHOTS")}
	if r.shots == "" {
		r.shots = t.TempDir()
	}
	m := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	r.agentBin = filepath.Join(r.dir, "vmapp-agent")
	if out, err := exec.Command("go", "build", "-o", r.agentBin, "../vmapp-agent").CombinedOutput(); err != nil {
		t.Fatalf("go build vmapp-agent: %v\n%s", err, out)
	}
	regions := filepath.Join(r.dir, "regions.yaml")
	os.WriteFile(regions, fmt.Appendf(nil, "regions:\n  - name: eastus\n    endpoints: [{url: %q, bucket: vmapp-eastus}]\n  - name: westus\n    endpoints: [{url: %q, bucket: vmapp-westus}]\n", m.Endpoint(), m.Endpoint()), 0o600)
	httpAddr := freeAddr(t, "127.0.0.1")
	r.vmappd = start(t, build(t), filepath.Join(r.dir, "data"), regions, "--http-listen", httpAddr)
	r.ui = "http://" + httpAddr + "/ui/"
	var err error
	if r.c, err = client.New(r.vmappd.addr, client.Options{Token: r.vmappd.token}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.c.Close() })
	// Generous: a loaded machine is slow; nothing below waits on time but
	// on what the page shows.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	r.ctx = ctx
	r.reader = r.token("auditor", pb.Role_ROLE_READER)
	r.contributor = r.token("release", pb.Role_ROLE_CONTRIBUTOR)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.WindowSize(1280, 800))
	var stop context.CancelFunc
	r.browserAlloc, stop = chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(stop)
	return r
}

// token creates a token of role and returns its credential.
func (r *consoleRig) token(name string, role pb.Role) string {
	r.t.Helper()
	res, err := pb.NewAccessServiceClient(r.c.Conn()).CreateToken(r.ctx, &pb.CreateTokenRequest{Name: name, Role: role})
	if err != nil {
		r.t.Fatal(err)
	}
	return res.Secret
}

// browser opens a browser tab of its own (cookies included) until the
// test ends.
func (r *consoleRig) browser() context.Context {
	ctx, cancel := chromedp.NewContext(r.browserAlloc)
	r.t.Cleanup(cancel)
	return ctx
}

// do runs browser actions, failing the test with what it was doing.
func (r *consoleRig) do(ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	r.t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		r.t.Fatalf("%s: %v\nvmappd's log:\n%s", what, err, r.vmappd.output())
	}
}

// value runs one browser action that returns a value.
func value[T any](r *consoleRig, ctx context.Context, what string, a chromedp.Action[T]) T {
	r.t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		r.t.Fatalf("%s: %v\nvmappd's log:\n%s", what, err, r.vmappd.output())
	}
	return v
}

// text is the text of the element sel (CSS) shows, once it is there. It
// is read in one script, the element found and read at once: a live
// update may replace the element between a query and a read, and
// chromedp.Text reads a replaced element as "" (it has no layout).
func (r *consoleRig) text(ctx context.Context, sel string) string {
	r.t.Helper()
	r.do(ctx, "wait for "+sel, chromedp.WaitReady(chromedp.CSS(sel)))
	return value(r, ctx, "read "+sel, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ''`, sel)))
}

// waitFor waits, without a time limit of its own, until the JavaScript
// expression is true in the page (the test's deadline guards hangs).
func waitFor(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(0))
}

// signIn types credential into the sign-in form the console sends an
// anonymous browser to, and waits for the galleries.
func (r *consoleRig) signIn(ctx context.Context, credential string) {
	r.t.Helper()
	r.do(ctx, "sign in",
		chromedp.Navigate(r.ui),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), credential),
		chromedp.Submit(chromedp.ID("token")),
	)
	r.afterNavigation(ctx, `document.readyState === 'complete' && document.querySelector('h1') !== null && document.querySelector('h1').textContent === 'Galleries'`)
}

// screenshot saves the page as name.png in the screenshots' directory.
func (r *consoleRig) screenshot(ctx context.Context, name string) {
	r.t.Helper()
	png := value(r, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(r.shots, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.t.Logf("screenshot: %s", path)
}

// publish creates g/app/version with targets; with pkg set, uploads it.
func (r *consoleRig) publish(app, version, install string, pkg []byte, targets ...*pb.TargetRegion) {
	r.t.Helper()
	cat := r.c.Catalog
	if _, err := cat.GetGallery(r.ctx, &pb.GetGalleryRequest{Gallery: "g"}); err != nil {
		if _, err := cat.CreateGallery(r.ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: "eastus", Description: "the console's test"}}); err != nil {
			r.t.Fatal(err)
		}
	}
	if _, err := cat.CreateApplication(r.ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: app, Location: "eastus", SupportedOsType: "Linux"}}); err != nil {
		r.t.Fatal(err)
	}
	if _, err := cat.CreateVersion(r.ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
		Gallery: "g", Application: app, Name: version, Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: install, Remove: "true"}, TargetRegions: targets},
	}}); err != nil {
		r.t.Fatal(err)
	}
	if pkg != nil {
		r.upload(app, version, pkg)
	}
}

func (r *consoleRig) upload(app, version string, pkg []byte) {
	r.t.Helper()
	path := filepath.Join(r.dir, app+"-"+version)
	os.WriteFile(path, pkg, 0o600)
	if _, err := r.c.Upload(r.ctx, "g", app, version, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{}); err != nil {
		r.t.Fatal(err)
	}
}

// machine registers name in region with the applications and starts a
// real agent for it.
func (r *consoleRig) machine(name, region string, refs ...string) {
	r.t.Helper()
	fl := pb.NewFleetServiceClient(r.c.Conn())
	m, err := fl.CreateMachine(r.ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: name, Region: region, OsType: "Linux"}})
	if err != nil {
		r.t.Fatal(err)
	}
	for i, ref := range refs {
		if _, err := fl.SetApplication(r.ctx, &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: name}},
			Application: &pb.VMGalleryApplication{PackageReferenceId: ref, Order: proto.Int32(int32(i + 1))}}); err != nil {
			r.t.Fatal(err)
		}
	}
	tokenFile := filepath.Join(r.dir, name+".token")
	os.WriteFile(tokenFile, []byte(m.AgentToken+"\n"), 0o600)
	cmd := exec.Command(r.agentBin, "--server", r.vmappd.addr, "--vm", name, "--root", filepath.Join(r.dir, name), "--token-file", tokenFile,
		"--retry-base", "1h", "--retry-max", "1h", // a failure stays Failed while the test reads it
		"--peer-listen", freeAddr(r.t, "127.0.0.1")) // announces what it holds: the peers page
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.root.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) // not the step's: later steps use the agents
}

// step runs f as a subtest with the rig failing that subtest; a step that
// fails ends the test (the next steps build on it).
func (r *consoleRig) step(name string, f func(t *testing.T)) {
	parent := r.t
	ok := parent.Run(name, func(t *testing.T) {
		r.t = t
		defer func() { r.t = parent }()
		f(t)
	})
	if !ok {
		parent.FailNow()
	}
}

// afterNavigation waits until expr is true in the page a click or a
// submit is loading: a wait that the navigation cuts short is started
// again on the new page.
func (r *consoleRig) afterNavigation(ctx context.Context, expr string) {
	r.t.Helper()
	for {
		err := chromedp.Do(ctx, waitFor(expr))
		if err == nil {
			return
		}
		// The protocol's errors of a page going away: -32000 (target
		// navigated, execution context destroyed or not found).
		if ctx.Err() != nil || !strings.Contains(err.Error(), "(-32000)") {
			r.t.Fatalf("waiting for %s: %v", expr, err)
		}
	}
}

// TestConsoleInBrowser drives the web console with Debian's chromium
// against the vmappd binary, a real MinIO and real agents: signing in, a
// replication matrix that reaches Completed without a reload, the
// inventory filtered to a failed machine with its reason, a Reader who
// is shown no repair and is refused one all the same, a rollout followed
// live, paused and resumed, and the peers page's preheat and peers.
func TestConsoleInBrowser(t *testing.T) {
	r := newConsoleRig(t)
	two := int32(2)
	r.publish("hello", "1.0.0", "true", nil,
		&pb.TargetRegion{Name: "eastus"}, &pb.TargetRegion{Name: "westus", RegionalReplicaCount: &two})

	contributor := r.browser()
	r.step("SignIn", func(t *testing.T) {
		r.do(contributor, "a refused token",
			chromedp.Navigate(r.ui+"machines"),
			chromedp.WaitVisible(chromedp.ID("token")),
			chromedp.SendKeys(chromedp.ID("token"), "tok_aaaaaaaaaaaaaaaaaaaa.not-the-secret"),
			chromedp.Submit(chromedp.ID("token")),
		)
		r.afterNavigation(contributor, `document.readyState === 'complete' && document.getElementById('signin-error') !== null`)
		if msg := r.text(contributor, "#signin-error"); !strings.Contains(msg, "refused this token") {
			t.Fatalf("a wrong token's message: %q", msg)
		}
		r.signIn(contributor, r.contributor)
		if who := r.text(contributor, "#who"); !strings.Contains(who, "release") || !strings.Contains(who, "Contributor") {
			t.Fatalf("the header names %q, want the token release, Contributor", who)
		}
	})

	r.step("ReplicationMatrixLive", func(t *testing.T) {
		version := r.ui + "galleries/g/applications/hello/versions/1.0.0"
		r.do(contributor, "open the version before its package is uploaded",
			chromedp.Navigate(version),
			chromedp.WaitVisible(chromedp.CSS("#matrix table")),
			// A mark a reload would wipe out.
			chromedp.Evaluate[chromedp.Void](`window.stillTheSamePage = 42`),
		)
		if before := r.text(contributor, "#matrix"); !strings.Contains(before, "waiting for the package") {
			t.Fatalf("before the upload the matrix says %q", before)
		}
		r.upload("hello", "1.0.0", []byte("#!/bin/sh\necho hello\n"))
		r.do(contributor, "wait until the matrix shows every region Completed",
			waitFor(`document.querySelector('#matrix').dataset.done === '1' &&
				document.querySelectorAll('#matrix tbody tr').length === 2 &&
				[...document.querySelectorAll('#matrix .region-state')].every(e => e.textContent.trim() === 'Completed')`))
		if mark := value(r, contributor, "the mark", chromedp.Evaluate[int](`window.stillTheSamePage`)); mark != 42 {
			t.Fatal("the page was reloaded")
		}
		if facts := r.text(contributor, "#facts"); !strings.Contains(facts, "21 B, sha256") {
			t.Fatalf("the version's facts were not updated with its package: %q", facts)
		}
		if westus := r.text(contributor, "#matrix tr[data-region=westus]"); !strings.Contains(westus, "2/2") || !strings.Contains(westus, "100%") {
			t.Fatalf("westus's row: %q", westus)
		}
		r.do(contributor, "a Contributor is offered the repair", chromedp.WaitVisible(chromedp.ID("repair")))
		r.screenshot(contributor, "console-replication")
	})

	r.step("InventoryFailedMachine", func(t *testing.T) {
		r.publish("broken", "1.0.0", `echo "cannot write /opt/broken: disk full" >&2; exit 3`, []byte("broken"), &pb.TargetRegion{Name: "eastus"})
		r.waitCompleted("broken", "1.0.0")
		r.machine("vm1", "eastus", "g/hello/1.0.0", "g/broken/1.0.0")
		r.machine("vm2", "westus", "g/hello/1.0.0")
		r.waitInventory(3, "Failed")
		r.do(contributor, "filter the inventory to Failed",
			chromedp.Navigate(r.ui+"inventory"),
			chromedp.WaitVisible(chromedp.ID("filter")),
			chromedp.SetValue(chromedp.CSS("select[name=state]"), "Failed"),
			chromedp.Click(chromedp.ID("filter")),
		)
		r.afterNavigation(contributor, `location.search.includes('state=Failed') && document.readyState === 'complete' && document.querySelector('table.inventory') !== null`)
		r.do(contributor, "open vm1's output tail",
			chromedp.Click(chromedp.CSS("table.inventory tr[data-machine=vm1] summary")),
			chromedp.WaitVisible(chromedp.CSS("table.inventory tr[data-machine=vm1] pre")),
		)
		rows := value(r, contributor, "count the rows", chromedp.Evaluate[int](`document.querySelectorAll('table.inventory tbody tr').length`))
		text, tail := r.text(contributor, "table.inventory tr[data-machine=vm1]"), r.text(contributor, "table.inventory tr[data-machine=vm1] pre")
		if rows != 1 || !strings.Contains(text, "g/broken") || !strings.Contains(text, "Failed") {
			t.Fatalf("the inventory filtered to Failed has %d rows; vm1's: %q", rows, text)
		}
		if !strings.Contains(tail, "disk full") {
			t.Fatalf("vm1's output tail: %q", tail)
		}
		if why := r.text(contributor, "table.inventory tr[data-machine=vm1] .why"); why == "" {
			t.Fatal("no reason shown for the failure")
		}
		r.screenshot(contributor, "console-inventory")
		r.do(contributor, "phone width", chromedp.EmulateViewport(390, 844))
		r.screenshot(contributor, "console-inventory-phone")
		r.do(contributor, "back to 1280x800", chromedp.EmulateViewport(1280, 800))
	})

	r.step("ReaderSeesNoRepair", func(t *testing.T) {
		reader := r.browser()
		r.signIn(reader, r.reader)
		r.do(reader, "the version as a Reader",
			chromedp.Navigate(r.ui+"galleries/g/applications/hello/versions/1.0.0"),
			chromedp.WaitVisible(chromedp.CSS("#matrix table")),
			waitFor(`document.querySelector('#matrix').dataset.done === '1'`),
		)
		if buttons := value(r, reader, "count the buttons", chromedp.Evaluate[int](`document.querySelectorAll('#repair, form[action$="/repair"]').length`)); buttons != 0 {
			t.Fatalf("a Reader is shown %d repair buttons", buttons)
		}
		// The API refuses a Reader's repair all the same: a POST the page
		// doesn't offer, sent from the console's own origin.
		res := r.post(r.reader, "galleries/g/applications/hello/versions/1.0.0/repair", r.ui)
		if res.code != http.StatusForbidden || !strings.Contains(res.body, "needs the Contributor role") {
			t.Fatalf("a Reader's repair: %d\n%s", res.code, res.body)
		}
	})

	r.step("CrossOriginPostRefused", func(t *testing.T) {
		res := r.post(r.contributor, "galleries/g/applications/hello/versions/1.0.0/repair", "http://elsewhere.example/")
		if res.code != http.StatusForbidden {
			t.Fatalf("a cross-origin repair: %d\n%s", res.code, res.body)
		}
		if res := r.post(r.contributor, "galleries/g/applications/hello/versions/1.0.0/repair", r.ui); res.code != http.StatusOK || !strings.Contains(res.body, "replicas found sound") {
			t.Fatalf("a Contributor's repair: %d\n%s", res.code, res.body)
		}
	})

	r.step("RolloutPauseResume", func(t *testing.T) { r.rolloutPage(contributor) })
	r.step("PeersPage", func(t *testing.T) { r.peersPage(contributor) })
}

// rolloutPage rolls hello 2.0.0 out to vm1 and vm2 in two waves with a
// long soak between them, and follows it on its page: the first wave's
// machine succeeds and the soak counts down without a reload; the
// Contributor pauses and resumes it.
func (r *consoleRig) rolloutPage(contributor context.Context) {
	t := r.t
	if _, err := r.c.Catalog.CreateVersion(r.ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
		Gallery: "g", Application: "hello", Name: "2.0.0", Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "true", Remove: "true"},
			TargetRegions: []*pb.TargetRegion{{Name: "eastus"}, {Name: "westus"}}},
	}}); err != nil {
		t.Fatal(err)
	}
	r.upload("hello", "2.0.0", []byte("#!/bin/sh\necho hello 2\n"))
	r.waitCompleted("hello", "2.0.0")
	if _, err := pb.NewRolloutServiceClient(r.c.Conn()).CreateRollout(r.ctx, &pb.CreateRolloutRequest{Rollout: &pb.Rollout{
		Name: "hello-2", Application: "g/hello", Version: "2.0.0", Waves: []string{"1", "100%"}, Soak: durationpb.New(time.Hour),
		Target: &pb.RolloutTarget{Machines: &pb.MachineSelector{}}}}); err != nil {
		t.Fatal(err)
	}
	r.do(contributor, "open the rollouts and the rollout",
		chromedp.Navigate(r.ui+"rollouts"),
		chromedp.WaitVisible(chromedp.CSS("table.rollouts tr[data-rollout=hello-2] a")),
		chromedp.Click(chromedp.CSS("table.rollouts tr[data-rollout=hello-2] a")),
	)
	r.afterNavigation(contributor, `document.readyState === 'complete' && document.getElementById('rollout') !== null`)
	r.do(contributor, "mark the page, and wait until the first wave's machine succeeded and the soak counts down",
		chromedp.Evaluate[chromedp.Void](`window.stillTheSamePage = 7`),
		waitFor(`document.querySelector('#rollout tr[data-wave="0"] .succeeded').textContent === '1' &&
			document.querySelector('#soak .countdown') !== null`))
	if mark := value(r, contributor, "the mark", chromedp.Evaluate[int](`window.stillTheSamePage`)); mark != 7 {
		t.Fatal("the rollout's page was reloaded")
	}
	if soak := r.text(contributor, "#soak"); !strings.Contains(soak, "wave 1 soaks until") || !strings.Contains(soak, "left") {
		t.Fatalf("the soak reads %q", soak)
	}
	if w := r.text(contributor, `#rollout tr[data-wave="1"]`); !strings.Contains(w, "100%") {
		t.Fatalf("the second wave's row: %q", w)
	}
	r.screenshot(contributor, "console-rollout")
	r.do(contributor, "pause", chromedp.Click(chromedp.ID("pause")))
	r.afterNavigation(contributor, `document.readyState === 'complete' && location.search.includes('did=pause') && document.getElementById('resume') !== null`)
	if st := r.text(contributor, "#rollout-state"); !strings.Contains(st, "Paused") {
		t.Fatalf("after Pause the state reads %q", st)
	}
	if n := value(r, contributor, "count the pause buttons", chromedp.Evaluate[int](`document.querySelectorAll('#pause').length`)); n != 0 {
		t.Fatal("a paused rollout offers Pause")
	}
	r.do(contributor, "resume", chromedp.Click(chromedp.ID("resume")))
	r.afterNavigation(contributor, `document.readyState === 'complete' && location.search.includes('did=resume') && document.getElementById('pause') !== null`)
	if st := r.text(contributor, "#rollout-state"); !strings.Contains(st, "Running") {
		t.Fatalf("after Resume the state reads %q", st)
	}
	ro, err := pb.NewRolloutServiceClient(r.c.Conn()).GetRollout(r.ctx, &pb.GetRolloutRequest{Name: "hello-2"})
	if err != nil || ro.Rollout.State != pb.RolloutRunning {
		t.Fatalf("the API says the rollout is %v (%v)", ro.GetRollout().GetState(), err)
	}

	// Deploying needs read access only (as in the API): a Reader is offered
	// the actions; a token of one gallery may not act on rollouts, which
	// span the tenant's machines, nor read them.
	reader := r.browser()
	r.signIn(reader, r.reader)
	r.do(reader, "the rollout as a Reader",
		chromedp.Navigate(r.ui+"rollouts/hello-2"),
		chromedp.WaitVisible(chromedp.ID("pause")),
		chromedp.WaitVisible(chromedp.ID("abort")),
	)
	res, err := pb.NewAccessServiceClient(r.c.Conn()).CreateToken(r.ctx, &pb.CreateTokenRequest{Name: "g-only", Role: pb.Role_ROLE_CONTRIBUTOR, Gallery: "g"})
	if err != nil {
		t.Fatal(err)
	}
	scoped := r.browser() // signs in on the way to the rollout: the galleries' list isn't its
	r.do(scoped, "sign in on the way to the rollout as a token of gallery g",
		chromedp.Navigate(r.ui+"rollouts/hello-2"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), res.Secret),
		chromedp.Submit(chromedp.ID("token")),
	)
	r.afterNavigation(scoped, `document.readyState === 'complete' && location.pathname.endsWith('/rollouts/hello-2') && document.querySelector('h1') !== null`)
	if h, n := r.text(scoped, "h1"), value(r, scoped, "count the forms", chromedp.Evaluate[int](`document.querySelectorAll('main form').length`)); h != "Your token doesn't allow this" || n != 0 {
		t.Fatalf("a token of gallery g reads %q and is offered %d forms", h, n)
	}
	if res := r.post(res.Secret, "rollouts/hello-2/pause", r.ui); res.code != http.StatusForbidden {
		t.Fatalf("a pause by a token of gallery g: %d\n%s", res.code, res.body)
	}
}

// peersPage preheats hello 2.0.0 on one machine of westus, vm2 (the
// rollout's soak holds back its second wave), and reads the peers page
// until it shows vm2 holding it: 2.0.0's peers are then vm1 in eastus
// (the first wave) and vm2 in westus; 1.0.0's vm2 (vm1 has moved on).
func (r *consoleRig) peersPage(contributor context.Context) {
	t := r.t
	if _, err := pb.NewDownloadServiceClient(r.c.Conn()).Preheat(r.ctx, &pb.PreheatRequest{Gallery: "g", Application: "hello", Version: "2.0.0", Region: "westus", Machines: 1}); err != nil {
		t.Fatal(err)
	}
	const pre = `section[data-version="g/hello/2.0.0"] table.preheat tr[data-region=westus]`
	for {
		r.do(contributor, "open the peers page", chromedp.Navigate(r.ui+"peers"), chromedp.WaitVisible(chromedp.ID("cache-h")))
		done := value(r, contributor, "read the page", chromedp.Evaluate[bool](`(() => {
			const p = document.querySelector('`+pre+` .holding');
			const peers = document.querySelector('section[data-version="g/hello/2.0.0"] table.peers');
			return p !== null && p.textContent === '1/1' && peers !== null && peers.querySelectorAll('tbody tr').length === 2;
		})()`))
		if done {
			break
		}
		select {
		case <-r.ctx.Done():
			t.Fatalf("the peers page never showed the preheat held and two regions of peers: %s", r.text(contributor, "main"))
		case <-time.After(250 * time.Millisecond):
		}
	}
	if row := r.text(contributor, pre); !strings.Contains(row, "vm2: holds it") {
		t.Fatalf("westus's preheat row: %q", row)
	}
	const peers = `section[data-version="g/hello/%s"] table.peers tr[data-region=%s] td`
	if e, w := r.text(contributor, fmt.Sprintf(peers, "2.0.0", "eastus")), r.text(contributor, fmt.Sprintf(peers, "2.0.0", "westus")); e != "vm1" || w != "vm2" {
		t.Fatalf("hello 2.0.0's peers: eastus %q, westus %q", e, w)
	}
	if w := r.text(contributor, fmt.Sprintf(peers, "1.0.0", "westus")); w != "vm2" {
		t.Fatalf("hello 1.0.0's peers in westus: %q", w)
	}
	if cache := r.text(contributor, "#cache-h + p"); !strings.Contains(cache, "vmapp_agent_cache_bytes") {
		t.Fatalf("the cache section: %q", cache)
	}
	r.screenshot(contributor, "console-peers")
}

type answer struct {
	code int
	body string
}

// post sends a form POST with credential's cookie and an Origin header.
func (r *consoleRig) post(credential, path, origin string) answer {
	r.t.Helper()
	u, _ := url.Parse(origin)
	req, _ := http.NewRequestWithContext(r.ctx, http.MethodPost, r.ui+path, strings.NewReader(""))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", u.Scheme+"://"+u.Host)
	req.AddCookie(&http.Cookie{Name: "vmapp_token", Value: credential})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return answer{res.StatusCode, string(b)}
}

// waitCompleted waits until g/app/version is replicated.
func (r *consoleRig) waitCompleted(app, version string) {
	r.t.Helper()
	st, err := pb.NewReplicationServiceClient(r.c.Conn()).WatchReplication(r.ctx, &pb.WatchReplicationRequest{Gallery: "g", Application: app, Version: version})
	if err != nil {
		r.t.Fatal(err)
	}
	for {
		res, err := st.Recv()
		if err != nil {
			r.t.Fatalf("watching %s %s: %v", app, version, err)
		}
		if res.Status.AggregatedState == pb.ReplicationCompleted {
			return
		}
	}
}

// waitInventory waits until the inventory has n entries, one of them in
// state.
func (r *consoleRig) waitInventory(n int, state string) {
	r.t.Helper()
	fl := pb.NewFleetServiceClient(r.c.Conn())
	for {
		res, err := fl.ListInventory(r.ctx, &pb.ListInventoryRequest{})
		if err != nil {
			r.t.Fatal(err)
		}
		found := false
		for _, e := range res.Entries {
			found = found || e.Status.State == state
		}
		if len(res.Entries) == n && found {
			return
		}
		select {
		case <-r.ctx.Done():
			r.t.Fatalf("the inventory never had %d entries with one %s: %v", n, state, res.Entries)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
