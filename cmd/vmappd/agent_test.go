package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestAgentSurvivesVmappdKill9 runs the real vmappd and vmapp-agent
// binaries: vmappd is killed with SIGKILL while the agent runs an install
// command, and restarted; the agent finishes the install, reconnects, and
// the restarted vmappd shows the application Installed.
func TestAgentSurvivesVmappdKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs MinIO")
	}
	m := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	agentBin := filepath.Join(t.TempDir(), "vmapp-agent")
	if out, err := exec.Command("go", "build", "-o", agentBin, "../vmapp-agent").CombinedOutput(); err != nil {
		t.Fatalf("go build vmapp-agent: %v\n%s", err, out)
	}
	d := startFixed(t, fmt.Sprintf("regions:\n  - name: eastus\n    endpoints: [{url: %q, bucket: vmapp-eastus}]\n", m.Endpoint()))
	c, addr, dir := d.c, d.addr, t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	must := must(t)
	marks := filepath.Join(dir, "marks")
	// The install takes 3 s: long enough to kill vmappd in the middle.
	installed := filepath.Join(dir, "installed")
	install := fmt.Sprintf(`echo start >> %[1]s; sleep 3; cp app %[2]s; echo end >> %[1]s`, marks, installed)
	must(c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: "eastus"}}))
	must(c.Catalog.CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: "app", Location: "eastus", SupportedOsType: "Linux"}}))
	must(c.Catalog.CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
		Gallery: "g", Application: "app", Name: "1.0.0", Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: install, Remove: "true"}, ReplicaCount: proto.Int32(1)},
	}}))
	pkgPath := filepath.Join(dir, "pkg")
	os.WriteFile(pkgPath, []byte("the package"), 0o600)
	must(c.Upload(ctx, "g", "app", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, pkgPath, client.UploadOptions{}))
	fl := pb.NewFleetServiceClient(c.Conn())
	for {
		r, err := c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: "g", Application: "app", Version: "1.0.0"})
		if err != nil {
			t.Fatal(err)
		}
		if r.Version.ReplicationStatus.GetAggregatedState() == "Completed" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	created, err := fl.CreateMachine(ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "vm1", Region: "eastus", OsType: "Linux"}})
	if err != nil || created.AgentToken == "" {
		t.Fatalf("CreateMachine: %v, agent token %q", err, created.GetAgentToken())
	}
	tokenFile := filepath.Join(dir, "agent.token")
	os.WriteFile(tokenFile, []byte(created.AgentToken+"\n"), 0o600)
	must(fl.SetApplication(ctx, &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "vm1"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "g/app/1.0.0"}}))

	root := filepath.Join(dir, "root")
	agentCmd := exec.Command(agentBin, "--server", addr, "--vm", "vm1", "--root", root, "--token-file", tokenFile)
	agentLog := &strings.Builder{}
	agentCmd.Stderr = agentLog
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { agentCmd.Process.Kill(); agentCmd.Wait() }()

	// Kill vmappd once the install command runs.
	for {
		if b, _ := os.ReadFile(marks); strings.Contains(string(b), "start") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the install never started; agent log:\n%s", agentLog)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.kill9(t)
	time.Sleep(500 * time.Millisecond)
	d.restart(t)
	for {
		r, err := fl.GetMachine(ctx, &pb.GetMachineRequest{Name: "vm1"})
		if err == nil {
			apps := r.Machine.InstanceView.GetApplications()
			if len(apps) == 1 && apps[0].State == "Installed" && r.Machine.InstanceView.Connected {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("vm1 never showed Installed after vmappd's restart: %v\nagent log:\n%s", r.GetMachine().GetInstanceView(), agentLog)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b, err := os.ReadFile(installed); err != nil || string(b) != "the package" {
		t.Fatalf("installed file: %q, %v", b, err)
	}
	if b, _ := os.ReadFile(marks); strings.Count(string(b), "start") != 1 {
		t.Fatalf("the install ran %d times:\n%s", strings.Count(string(b), "start"), b)
	}

	// The agent's credential serves its agent only; the refusal is logged
	// with the RPC and the token's id, and no secret is ever logged.
	agentCl, err := client.New(addr, client.Options{Token: created.AgentToken})
	if err != nil {
		t.Fatal(err)
	}
	defer agentCl.Close()
	_, err = agentCl.Catalog.DeleteVersion(ctx, &pb.DeleteVersionRequest{Gallery: "g", Application: "app", Version: "1.0.0"})
	if errs.ClassOf(err) != errs.PermissionDenied {
		t.Fatalf("DeleteVersion with the agent's credential: %v", err)
	}
	agentID, agentSecret, _ := strings.Cut(created.AgentToken, ".")
	_, adminSecret, _ := strings.Cut(d.token, ".")
	deadline := time.Now().Add(5 * time.Second)
	for !regexp.MustCompile(`method=/vmapp.v1.CatalogService/DeleteVersion .*code=PermissionDenied .*token=` + agentID).MatchString(d.output()) {
		if time.Now().After(deadline) {
			t.Fatalf("the refusal is not logged with the method, the code and the token:\n%s", d.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	agentCmd.Process.Kill() // its log is read below: no writer left
	agentCmd.Wait()
	for name, secret := range map[string]string{"agent": agentSecret, "admin": adminSecret} {
		if strings.Contains(d.output(), secret) || strings.Contains(agentLog.String(), secret) {
			t.Fatalf("the %s token's secret is in a log", name)
		}
	}
}
