package server_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// who is one caller of the matrix.
type who string

const (
	nobody      who = "no credential"
	reader      who = "Reader of the tenant"
	contributor who = "Contributor of the tenant"
	owner       who = "Owner of the tenant"
	readerG     who = "Reader of gallery g"
	contribH    who = "Contributor of gallery h"
	stranger    who = "Owner of another tenant"
	vm1         who = "agent of vm1"
	vm2         who = "agent of vm2"
)

var everyone = []who{nobody, reader, contributor, owner, readerG, contribH, stranger, vm1, vm2}

// Who may make each kind of call: the roles of the issue, written out
// here rather than taken from the server's table.
var (
	anyID        = []who{reader, contributor, owner, readerG, contribH, stranger, vm1, vm2}
	readG        = []who{reader, contributor, owner, readerG}
	readTenant   = []who{reader, contributor, owner}
	publishG     = []who{contributor, owner}
	manageTenant = []who{contributor, owner}
	deployTenant = []who{reader, contributor, owner}
	agentOfVM1   = []who{vm1, contributor, owner}
	downloadG    = []who{reader, contributor, owner, readerG, vm1}
	ownerOnly    = []who{owner}
)

// call makes one RPC on conn and returns its error; ctx names the tenant
// "default".
type call func(ctx context.Context, conn *grpc.ClientConn) error

type row struct {
	allowed []who
	call    call
}

func firstRecv[T any](s interface{ Recv() (T, error) }, err error) error {
	if err != nil {
		return err
	}
	_, err = s.Recv()
	if err == io.EOF {
		err = nil
	}
	return err
}

// denied reports whether err is a refusal of authentication or
// authorization.
func denied(err error) bool {
	c := errs.ClassOf(err).Code()
	return err != nil && (c == codes.PermissionDenied || c == codes.Unauthenticated)
}

var seq atomic.Int64

func uniq(p string) string { return fmt.Sprintf("%s-%d", p, seq.Add(1)) }

// matrix returns a row per RPC. Calls that change something when allowed
// aim at what doesn't exist, or fail a precondition, where they can: the
// answer (NotFound...) then shows the call got past authorization.
func matrix(session string) map[string]row {
	cat := func(c *grpc.ClientConn) pb.CatalogServiceClient { return pb.NewCatalogServiceClient(c) }
	tr := func(c *grpc.ClientConn) pb.TransferServiceClient { return pb.NewTransferServiceClient(c) }
	rp := func(c *grpc.ClientConn) pb.ReplicationServiceClient { return pb.NewReplicationServiceClient(c) }
	dl := func(c *grpc.ClientConn) pb.DownloadServiceClient { return pb.NewDownloadServiceClient(c) }
	fl := func(c *grpc.ClientConn) pb.FleetServiceClient { return pb.NewFleetServiceClient(c) }
	ac := func(c *grpc.ClientConn) pb.AccessServiceClient { return pb.NewAccessServiceClient(c) }
	sg := func(c *grpc.ClientConn) pb.SigningServiceClient { return pb.NewSigningServiceClient(c) }
	ro := func(c *grpc.ClientConn) pb.RolloutServiceClient { return pb.NewRolloutServiceClient(c) }
	vm := func(n string) *pb.ProfileTarget {
		return &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: n}}
	}
	desc := &fieldmaskpb.FieldMask{Paths: []string{"description"}}
	pkg := pb.ArtifactKind_ARTIFACT_KIND_PACKAGE
	return map[string]row{
		pb.CatalogService_CreateGallery_FullMethodName: {manageTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: uniq("new"), Location: "eastus"}})
			return err
		}},
		pb.CatalogService_GetGallery_FullMethodName: {readG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).GetGallery(ctx, &pb.GetGalleryRequest{Gallery: "g"})
			return err
		}},
		pb.CatalogService_ListGalleries_FullMethodName: {readTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).ListGalleries(ctx, &pb.ListGalleriesRequest{})
			return err
		}},
		pb.CatalogService_UpdateGallery_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).UpdateGallery(ctx, &pb.UpdateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Description: "x"}, UpdateMask: desc, IfMatch: `"0"`})
			return err
		}},
		pb.CatalogService_DeleteGallery_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).DeleteGallery(ctx, &pb.DeleteGalleryRequest{Gallery: "g", IfMatch: `"0"`})
			return err
		}},
		pb.CatalogService_CreateApplication_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: uniq("app"), Location: "eastus", SupportedOsType: "Linux"}})
			return err
		}},
		pb.CatalogService_GetApplication_FullMethodName: {readG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).GetApplication(ctx, &pb.GetApplicationRequest{Gallery: "g", Application: "a"})
			return err
		}},
		pb.CatalogService_ListApplications_FullMethodName: {readG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).ListApplications(ctx, &pb.ListApplicationsRequest{Gallery: "g"})
			return err
		}},
		pb.CatalogService_UpdateApplication_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).UpdateApplication(ctx, &pb.UpdateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: "nope"}, UpdateMask: desc})
			return err
		}},
		pb.CatalogService_DeleteApplication_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).DeleteApplication(ctx, &pb.DeleteApplicationRequest{Gallery: "g", Application: "nope"})
			return err
		}},
		pb.CatalogService_CreateVersion_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{Gallery: "g", Application: "nope", Name: "1.0.0", Location: "eastus",
				PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}}}})
			return err
		}},
		pb.CatalogService_GetVersion_FullMethodName: {readG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).GetVersion(ctx, &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
			return err
		}},
		pb.CatalogService_ListVersions_FullMethodName: {readG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).ListVersions(ctx, &pb.ListVersionsRequest{Gallery: "g", Application: "a"})
			return err
		}},
		pb.CatalogService_UpdateVersion_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).UpdateVersion(ctx, &pb.UpdateVersionRequest{Version: &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: "9.9.9"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"publishingProfile.excludeFromLatest"}}})
			return err
		}},
		pb.CatalogService_DeleteVersion_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).DeleteVersion(ctx, &pb.DeleteVersionRequest{Gallery: "g", Application: "a", Version: "9.9.9"})
			return err
		}},
		pb.CatalogService_ListRegions_FullMethodName: {anyID, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := cat(c).ListRegions(ctx, &pb.ListRegionsRequest{})
			return err
		}},

		pb.TransferService_BeginUpload_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := tr(c).BeginUpload(ctx, &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "9.9.9", Kind: pkg, SizeBytes: 10, Sha256: strings.Repeat("0", 64)})
			return err
		}},
		pb.TransferService_Upload_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			s, err := tr(c).Upload(ctx)
			if err != nil {
				return err
			}
			// An offset past the end: refused after authorization, and
			// nothing is written.
			if err := s.Send(&pb.UploadRequest{SessionId: session, Offset: 1 << 40, Data: []byte("x")}); err != nil && err != io.EOF {
				return err
			}
			_, err = s.CloseAndRecv()
			return err
		}},
		pb.TransferService_AbortUpload_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			// By the artifact (g/a/2.0.0 has no configuration upload:
			// NotFound past authorization) and by the session id: both
			// authorized alike.
			_, byArtifact := tr(c).AbortUpload(ctx, &pb.AbortUploadRequest{Gallery: "g", Application: "a", Version: "2.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION})
			_, byID := tr(c).AbortUpload(ctx, &pb.AbortUploadRequest{SessionId: session})
			if denied(byArtifact) != denied(byID) {
				return fmt.Errorf("authorized unlike: by the artifact %v, by the session id %v", byArtifact, byID)
			}
			return byID
		}},
		pb.TransferService_Import_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := tr(c).Import(ctx, &pb.ImportRequest{Gallery: "g", Application: "a", Version: "9.9.9", Kind: pkg, Url: "http://127.0.0.1:9/x"})
			return err
		}},

		pb.ReplicationService_WatchReplication_FullMethodName: {readG, func(ctx context.Context, c *grpc.ClientConn) error {
			return firstRecv(rp(c).WatchReplication(ctx, &pb.WatchReplicationRequest{Gallery: "g", Application: "a", Version: "1.0.0"}))
		}},
		pb.ReplicationService_RepairVersion_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := rp(c).RepairVersion(ctx, &pb.RepairVersionRequest{Gallery: "g", Application: "a", Version: "9.9.9"})
			return err
		}},

		pb.DownloadService_GetDownloadPlan_FullMethodName: {downloadG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := dl(c).GetDownloadPlan(ctx, &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: "eastus"})
			return err
		}},
		pb.DownloadService_ReadRange_FullMethodName: {downloadG, func(ctx context.Context, c *grpc.ClientConn) error {
			return firstRecv(dl(c).ReadRange(ctx, &pb.ReadRangeRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: "eastus", Offset: 0, Length: 10}))
		}},
		pb.DownloadService_ReportReplicaDamage_FullMethodName: {downloadG, func(ctx context.Context, c *grpc.ClientConn) error {
			// A piece past the end: refused after authorization, and
			// nothing is read.
			_, err := dl(c).ReportReplicaDamage(ctx, &pb.ReportReplicaDamageRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: "eastus", Piece: 1 << 40})
			return err
		}},
		pb.DownloadService_Announce_FullMethodName: {agentOfVM1, func(ctx context.Context, c *grpc.ClientConn) error {
			// A bad address: refused after authorization.
			_, err := dl(c).Announce(ctx, &pb.AnnounceRequest{Machine: "vm1", Address: "nowhere"})
			return err
		}},
		pb.DownloadService_ReportPeer_FullMethodName: {downloadG, func(ctx context.Context, c *grpc.ClientConn) error {
			// No peer named: refused after authorization.
			_, err := dl(c).ReportPeer(ctx, &pb.ReportPeerRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg})
			return err
		}},
		pb.DownloadService_Preheat_FullMethodName: {deployTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			// No region: refused after authorization.
			_, err := dl(c).Preheat(ctx, &pb.PreheatRequest{Gallery: "g", Application: "a", Version: "1.0.0", Machines: 1})
			return err
		}},

		pb.FleetService_CreateMachine_FullMethodName: {manageTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).CreateMachine(ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: uniq("vm"), Region: "eastus", OsType: "Linux"}})
			return err
		}},
		pb.FleetService_GetMachine_FullMethodName: {readTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).GetMachine(ctx, &pb.GetMachineRequest{Name: "vm1"})
			return err
		}},
		pb.FleetService_ListMachines_FullMethodName: {readTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).ListMachines(ctx, &pb.ListMachinesRequest{})
			return err
		}},
		pb.FleetService_DeleteMachine_FullMethodName: {manageTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).DeleteMachine(ctx, &pb.DeleteMachineRequest{Name: "nope"})
			return err
		}},
		pb.FleetService_CreateScaleSet_FullMethodName: {manageTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).CreateScaleSet(ctx, &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: uniq("ss"), Region: "eastus", OsType: "Linux"}})
			return err
		}},
		pb.FleetService_GetScaleSet_FullMethodName: {readTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).GetScaleSet(ctx, &pb.GetScaleSetRequest{Name: "nope"})
			return err
		}},
		pb.FleetService_ListScaleSets_FullMethodName: {readTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).ListScaleSets(ctx, &pb.ListScaleSetsRequest{})
			return err
		}},
		pb.FleetService_DeleteScaleSet_FullMethodName: {manageTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).DeleteScaleSet(ctx, &pb.DeleteScaleSetRequest{Name: "nope"})
			return err
		}},
		pb.FleetService_SetApplication_FullMethodName: {deployTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).SetApplication(ctx, &pb.SetApplicationRequest{Target: vm("vm2"), Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/9.9.9"}})
			return err
		}},
		pb.FleetService_RemoveApplication_FullMethodName: {deployTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).RemoveApplication(ctx, &pb.RemoveApplicationRequest{Target: vm("vm2"), Application: "g/nope"})
			return err
		}},
		pb.RolloutService_CreateRollout_FullMethodName: {deployTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ro(c).CreateRollout(ctx, &pb.CreateRolloutRequest{Rollout: &pb.Rollout{Name: "r", Application: "g/a", Version: "9.9.9",
				Target: &pb.RolloutTarget{ScaleSet: "nope"}, Waves: []string{"100%"}}})
			return err
		}},
		pb.RolloutService_GetRollout_FullMethodName: {readTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ro(c).GetRollout(ctx, &pb.GetRolloutRequest{Name: "nope"})
			return err
		}},
		pb.RolloutService_ListRollouts_FullMethodName: {readTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ro(c).ListRollouts(ctx, &pb.ListRolloutsRequest{})
			return err
		}},
		pb.RolloutService_WatchRollout_FullMethodName: {readTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			return firstRecv(ro(c).WatchRollout(ctx, &pb.WatchRolloutRequest{Name: "nope"}))
		}},
		pb.RolloutService_PauseRollout_FullMethodName: {deployTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ro(c).PauseRollout(ctx, &pb.PauseRolloutRequest{Name: "nope"})
			return err
		}},
		pb.RolloutService_ResumeRollout_FullMethodName: {deployTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ro(c).ResumeRollout(ctx, &pb.ResumeRolloutRequest{Name: "nope"})
			return err
		}},
		pb.RolloutService_AbortRollout_FullMethodName: {deployTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ro(c).AbortRollout(ctx, &pb.AbortRolloutRequest{Name: "nope"})
			return err
		}},
		pb.FleetService_RetryApplication_FullMethodName: {deployTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).RetryApplication(ctx, &pb.RetryApplicationRequest{Target: vm("vm2"), Application: "g/nope"})
			return err
		}},
		pb.FleetService_ListInventory_FullMethodName: {readTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).ListInventory(ctx, &pb.ListInventoryRequest{})
			return err
		}},
		pb.FleetService_WatchGoalState_FullMethodName: {agentOfVM1, func(ctx context.Context, c *grpc.ClientConn) error {
			return firstRecv(fl(c).WatchGoalState(ctx, &pb.WatchGoalStateRequest{Machine: "vm1"}))
		}},
		pb.FleetService_ReportStatus_FullMethodName: {agentOfVM1, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).ReportStatus(ctx, &pb.ReportStatusRequest{Machine: "vm1", InstanceView: &pb.InstanceView{BootId: "b"}})
			return err
		}},
		pb.FleetService_RunAction_FullMethodName: {deployTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).RunAction(ctx, &pb.RunActionRequest{Target: vm("vm2"), Application: "g/nope", Action: "x"})
			return err
		}},
		pb.FleetService_ListActionRuns_FullMethodName: {readTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).ListActionRuns(ctx, &pb.ListActionRunsRequest{Target: vm("vm2")})
			return err
		}},
		pb.FleetService_ReportActionResult_FullMethodName: {agentOfVM1, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := fl(c).ReportActionResult(ctx, &pb.ReportActionResultRequest{Machine: "vm1", Run: &pb.ActionRun{Id: "nope", State: pb.ActionSucceeded}})
			return err
		}},

		pb.AccessService_WhoAmI_FullMethodName: {anyID, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ac(c).WhoAmI(ctx, &pb.WhoAmIRequest{})
			return err
		}},
		pb.AccessService_CreateToken_FullMethodName: {ownerOnly, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ac(c).CreateToken(ctx, &pb.CreateTokenRequest{Name: "from the matrix", Role: pb.Role_ROLE_READER, Gallery: "g"})
			return err
		}},
		pb.AccessService_ListTokens_FullMethodName: {ownerOnly, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ac(c).ListTokens(ctx, &pb.ListTokensRequest{})
			return err
		}},
		pb.AccessService_RevokeToken_FullMethodName: {ownerOnly, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ac(c).RevokeToken(ctx, &pb.RevokeTokenRequest{Id: "tok_aaaaaaaaaaaaaaaaaaaa"})
			return err
		}},
		pb.AccessService_ShareGallery_FullMethodName: {ownerOnly, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ac(c).ShareGallery(ctx, &pb.ShareGalleryRequest{Gallery: "g", Grantee: "third"})
			return err
		}},
		pb.AccessService_UnshareGallery_FullMethodName: {ownerOnly, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ac(c).UnshareGallery(ctx, &pb.UnshareGalleryRequest{Gallery: "g", Grantee: "nobody"})
			return err
		}},
		pb.AccessService_ListShares_FullMethodName: {ownerOnly, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ac(c).ListShares(ctx, &pb.ListSharesRequest{})
			return err
		}},
		pb.AccessService_IssueAgentToken_FullMethodName: {manageTenant, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := ac(c).IssueAgentToken(ctx, &pb.IssueAgentTokenRequest{Machine: "nope"})
			return err
		}},

		// Past authorization, each is refused for its bad input: nothing
		// is signed or trusted.
		pb.SigningService_SignVersion_FullMethodName: {publishG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := sg(c).SignVersion(ctx, &pb.SignVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0", Sequence: 1, Signature: "not a signature"})
			return err
		}},
		pb.SigningService_GetVersionSignatures_FullMethodName: {readG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := sg(c).GetVersionSignatures(ctx, &pb.GetVersionSignaturesRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
			return err
		}},
		pb.SigningService_GetTrustPolicy_FullMethodName: {readG, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := sg(c).GetTrustPolicy(ctx, &pb.GetTrustPolicyRequest{Gallery: "g"})
			return err
		}},
		pb.SigningService_AddTrustedKey_FullMethodName: {ownerOnly, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := sg(c).AddTrustedKey(ctx, &pb.AddTrustedKeyRequest{Gallery: "g", PublicKey: "not a key"})
			return err
		}},
		pb.SigningService_RemoveTrustedKey_FullMethodName: {ownerOnly, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := sg(c).RemoveTrustedKey(ctx, &pb.RemoveTrustedKeyRequest{Gallery: "g", Key: "nope"})
			return err
		}},
		pb.SigningService_SetRequiredSignatures_FullMethodName: {ownerOnly, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := sg(c).SetRequiredSignatures(ctx, &pb.SetRequiredSignaturesRequest{Gallery: "g", RequiredSignatures: -1})
			return err
		}},
		pb.SigningService_RotateTrustedKey_FullMethodName: {ownerOnly, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := sg(c).RotateTrustedKey(ctx, &pb.RotateTrustedKeyRequest{Gallery: "g"})
			return err
		}},
		pb.SigningService_RevokeTrustedKey_FullMethodName: {ownerOnly, func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := sg(c).RevokeTrustedKey(ctx, &pb.RevokeTrustedKeyRequest{Gallery: "g"})
			return err
		}},
	}
}

// access is a cluster with gallery g (application a, version 1.0.0
// replicated to eastus), machines vm1 (g/a/1.0.0 in its profile) and vm2,
// and a connection per caller.
type access struct {
	c       *testcluster.Cluster
	admin   pb.AccessServiceClient
	conns   map[who]*grpc.ClientConn
	secrets map[who]string
	session string
}

func newAccess(t *testing.T) *access {
	c := testcluster.Start(t, testcluster.Options{})
	c.Publish(t, "1.0.0", []byte("the package"), testcluster.Target("eastus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	a := &access{c: c, admin: pb.NewAccessServiceClient(c.Client.Conn()), conns: map[who]*grpc.ClientConn{}, secrets: map[who]string{}}
	cat, fl := c.Client.Catalog, pb.NewFleetServiceClient(c.Client.Conn())
	_, err := cat.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "h", Location: "eastus"}})
	mustOK(t, err)
	_, err = cat.CreateVersion(ctx(t), &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: "2.0.0", Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}}}})
	mustOK(t, err)
	sess, err := c.Client.Transfer.BeginUpload(ctx(t), &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "2.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, SizeBytes: 10, Sha256: strings.Repeat("a", 64)})
	mustOK(t, err)
	a.session = sess.SessionId
	for _, m := range []string{"vm1", "vm2"} {
		r, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: m, Region: "eastus", OsType: "Linux"}})
		mustOK(t, err)
		a.secrets[who("agent of "+m)] = r.AgentToken
	}
	_, err = fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "vm1"}}, Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}})
	mustOK(t, err)
	for w, r := range map[who]*pb.CreateTokenRequest{
		reader:      {Name: "r", Role: pb.Role_ROLE_READER},
		contributor: {Name: "c", Role: pb.Role_ROLE_CONTRIBUTOR},
		owner:       {Name: "o", Role: pb.Role_ROLE_OWNER},
		readerG:     {Name: "rg", Role: pb.Role_ROLE_READER, Gallery: "g"},
		contribH:    {Name: "ch", Role: pb.Role_ROLE_CONTRIBUTOR, Gallery: "h"},
	} {
		resp, err := a.admin.CreateToken(ctx(t), r)
		mustOK(t, err)
		a.secrets[w] = resp.Secret
	}
	resp, err := a.admin.CreateToken(metadata.AppendToOutgoingContext(ctx(t), pb.TenantMetadataKey, "other"), &pb.CreateTokenRequest{Name: "s", Role: pb.Role_ROLE_OWNER})
	mustOK(t, err)
	a.secrets[stranger] = resp.Secret
	for _, w := range everyone {
		a.conns[w] = a.conn(t, a.secrets[w])
	}
	return a
}

func (a *access) conn(t *testing.T, secret string) *grpc.ClientConn {
	cl, err := client.New(a.c.Addr, client.Options{Token: secret})
	mustOK(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl.Conn()
}

// snapshot is everything stored that an API caller can change, as JSON.
func (a *access) snapshot(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	add := func(m proto.Message, err error) {
		t.Helper()
		mustOK(t, err)
		js, _ := protojson.Marshal(m)
		b.Write(js)
		b.WriteByte('\n')
	}
	cat, fl := a.c.Client.Catalog, pb.NewFleetServiceClient(a.c.Client.Conn())
	for _, tenant := range []string{"default", "other", "third"} {
		ctx := metadata.AppendToOutgoingContext(ctx(t), pb.TenantMetadataKey, tenant)
		add(cat.ListGalleries(ctx, &pb.ListGalleriesRequest{}))
		add(fl.ListMachines(ctx, &pb.ListMachinesRequest{}))
		add(fl.ListScaleSets(ctx, &pb.ListScaleSetsRequest{}))
		add(a.admin.ListTokens(ctx, &pb.ListTokensRequest{All: true}))
		add(a.admin.ListShares(ctx, &pb.ListSharesRequest{}))
	}
	for _, g := range []string{"g", "h"} {
		add(cat.ListApplications(ctx(t), &pb.ListApplicationsRequest{Gallery: g}))
		add(pb.NewSigningServiceClient(a.c.Client.Conn()).GetTrustPolicy(ctx(t), &pb.GetTrustPolicyRequest{Gallery: g}))
	}
	add(pb.NewSigningServiceClient(a.c.Client.Conn()).GetVersionSignatures(ctx(t), &pb.GetVersionSignaturesRequest{Gallery: "g", Application: "a", Version: "1.0.0"}))
	add(cat.ListVersions(ctx(t), &pb.ListVersionsRequest{Gallery: "g", Application: "a"}))
	return b.String()
}

// inDefault names the tenant "default", as a caller from another tenant
// must to reach it.
func inDefault(t *testing.T) context.Context {
	return metadata.AppendToOutgoingContext(ctx(t), pb.TenantMetadataKey, "default")
}

func rpcs() []string {
	var out []string
	for _, f := range []protoreflect.FileDescriptor{pb.File_vmapp_v1_catalog_proto, pb.File_vmapp_v1_transfer_proto, pb.File_vmapp_v1_replication_proto,
		pb.File_vmapp_v1_download_proto, pb.File_vmapp_v1_fleet_proto, pb.File_vmapp_v1_access_proto, pb.File_vmapp_v1_signing_proto, pb.File_vmapp_v1_rollout_proto} {
		for i := range f.Services().Len() {
			s := f.Services().Get(i)
			for j := range s.Methods().Len() {
				out = append(out, fmt.Sprintf("/%s/%s", s.FullName(), s.Methods().Get(j).Name()))
			}
		}
	}
	return out
}

// TestAccessMatrix calls every RPC as every kind of caller. Those the
// issue's roles don't allow get Unauthenticated (no credential) or
// PermissionDenied and change nothing; the others get past authorization.
func TestAccessMatrix(t *testing.T) {
	a := newAccess(t)
	m := matrix(a.session)
	for _, method := range rpcs() {
		if _, ok := m[method]; !ok {
			t.Errorf("%s has no row in the matrix", method)
		}
	}
	before := a.snapshot(t)
	denied := 0
	for _, method := range rpcs() {
		r := m[method]
		for _, w := range everyone {
			if slices.Contains(r.allowed, w) {
				continue
			}
			err := r.call(inDefault(t), a.conns[w])
			want := codes.PermissionDenied
			if w == nobody {
				want = codes.Unauthenticated
			}
			if got := errs.ClassOf(err).Code(); err == nil || got != want {
				t.Errorf("%s as %s: %v (code %v), want %v", method, w, err, got, want)
			}
			denied++
		}
	}
	if after := a.snapshot(t); after != before {
		t.Fatalf("denied calls changed what is stored:\nbefore %s\nafter %s", before, after)
	}
	allowed := 0
	for _, method := range rpcs() {
		r := m[method]
		for _, w := range r.allowed {
			err := r.call(inDefault(t), a.conns[w])
			if c := errs.ClassOf(err).Code(); err != nil && (c == codes.PermissionDenied || c == codes.Unauthenticated) {
				t.Errorf("%s as %s: %v, want it past authorization", method, w, err)
			}
			allowed++
		}
	}
	t.Logf("%d RPCs: %d denied calls, %d allowed", len(rpcs()), denied, allowed)
}

// TestBadCredentials: forged, malformed, expired and revoked tokens are
// Unauthenticated with a message saying which.
func TestBadCredentials(t *testing.T) {
	a := newAccess(t)
	get := func(secret string) error {
		_, err := pb.NewCatalogServiceClient(a.conn(t, secret)).GetGallery(ctx(t), &pb.GetGalleryRequest{Gallery: "g"})
		return err
	}
	mustOK(t, get(a.secrets[reader]))
	id, _, _ := strings.Cut(a.secrets[reader], ".")
	wantErr(t, get(id+".forged-secret"), codes.Unauthenticated, "token "+id+" is not known, or its secret is wrong")
	wantErr(t, get("tok_bbbbbbbbbbbbbbbbbbbb.x"), codes.Unauthenticated, "is not known")
	wantErr(t, get("not a token"), codes.Unauthenticated, "malformed")
	wantErr(t, get(a.secrets[reader]+"x"), codes.Unauthenticated, "secret is wrong")
	// Not a bearer credential.
	raw := a.conn(t, "")
	_, err := pb.NewCatalogServiceClient(raw).GetGallery(metadata.AppendToOutgoingContext(ctx(t), "authorization", "Basic dXNlcjpwdw=="), &pb.GetGalleryRequest{Gallery: "g"})
	wantErr(t, err, codes.Unauthenticated, "Bearer")

	// Expired.
	short, err := a.admin.CreateToken(ctx(t), &pb.CreateTokenRequest{Name: "short", Role: pb.Role_ROLE_READER, TtlSeconds: 1})
	mustOK(t, err)
	mustOK(t, get(short.Secret))
	time.Sleep(1100 * time.Millisecond)
	wantErr(t, get(short.Secret), codes.Unauthenticated, "expired at")

	// Revoked, by an Owner of the tenant; then not listed unless --all.
	ownerAC := pb.NewAccessServiceClient(a.conns[owner])
	rev, err := ownerAC.RevokeToken(ctx(t), &pb.RevokeTokenRequest{Id: id})
	mustOK(t, err)
	if rev.Token.RevokeTime == nil {
		t.Fatal("revoked token has no revokeTime")
	}
	wantErr(t, get(a.secrets[reader]), codes.Unauthenticated, "was revoked at")
	list, err := ownerAC.ListTokens(ctx(t), &pb.ListTokensRequest{})
	mustOK(t, err)
	for _, tk := range list.Tokens {
		if tk.Id == id || tk.Id == short.Token.Id {
			t.Fatalf("revoked or expired token %s listed", tk.Id)
		}
	}
	// No list or reply ever holds a secret.
	all, err := ownerAC.ListTokens(ctx(t), &pb.ListTokensRequest{All: true})
	mustOK(t, err)
	js, _ := protojson.Marshal(all)
	for w, s := range a.secrets {
		if _, secret, _ := strings.Cut(s, "."); secret != "" && strings.Contains(string(js), secret) {
			t.Fatalf("ListTokens shows the secret of %s", w)
		}
	}

	// Deleting a machine revokes its agent credential.
	_, err = pb.NewFleetServiceClient(a.c.Client.Conn()).DeleteMachine(ctx(t), &pb.DeleteMachineRequest{Name: "vm2"})
	mustOK(t, err)
	err = firstRecv(pb.NewFleetServiceClient(a.conns[vm2]).WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: "vm2"}))
	wantErr(t, err, codes.Unauthenticated, "revoked")
	// So does deleting its scale set with its instances.
	_, err = pb.NewFleetServiceClient(a.c.Client.Conn()).CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "ss", Region: "eastus", OsType: "Linux"}})
	mustOK(t, err)
	inst, err := pb.NewFleetServiceClient(a.c.Client.Conn()).CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "ss-0", ScaleSet: "ss"}})
	mustOK(t, err)
	instFleet := pb.NewFleetServiceClient(a.conn(t, inst.AgentToken))
	mustOK(t, firstRecv(instFleet.WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: "ss-0"})))
	_, err = pb.NewFleetServiceClient(a.c.Client.Conn()).DeleteScaleSet(ctx(t), &pb.DeleteScaleSetRequest{Name: "ss", Cascade: true})
	mustOK(t, err)
	wantErr(t, firstRecv(instFleet.WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: "ss-0"})), codes.Unauthenticated, "revoked")
	// A new credential for vm1 revokes the old one.
	iss, err := a.admin.IssueAgentToken(ctx(t), &pb.IssueAgentTokenRequest{Machine: "vm1"})
	mustOK(t, err)
	err = firstRecv(pb.NewFleetServiceClient(a.conns[vm1]).WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: "vm1"}))
	wantErr(t, err, codes.Unauthenticated, "revoked")
	mustOK(t, firstRecv(pb.NewFleetServiceClient(a.conn(t, iss.AgentToken)).WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: "vm1"})))
}

// TestTenantFromCredential: a call that names no tenant runs in its
// credential's; the operator's, in the default tenant.
func TestTenantFromCredential(t *testing.T) {
	a := newAccess(t)
	neighbour := pb.NewAccessServiceClient(a.conns[stranger])
	who, err := neighbour.ListTokens(ctx(t), &pb.ListTokensRequest{})
	mustOK(t, err)
	if len(who.Tokens) != 1 || who.Tokens[0].Tenant != "other" {
		t.Fatalf("tokens of the stranger's tenant: %v", who.Tokens)
	}
	_, err = pb.NewCatalogServiceClient(a.conns[stranger]).CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "mine", Location: "eastus"}})
	mustOK(t, err)
	r, err := a.c.Client.Catalog.GetGallery(metadata.AppendToOutgoingContext(ctx(t), pb.TenantMetadataKey, "other"), &pb.GetGalleryRequest{Gallery: "mine"})
	mustOK(t, err)
	if r.Gallery.Tenant != "other" {
		t.Fatalf("gallery made without a tenant went to %q", r.Gallery.Tenant)
	}
	_, err = a.c.Client.Catalog.GetGallery(ctx(t), &pb.GetGalleryRequest{Gallery: "mine"})
	wantErr(t, err, codes.NotFound) // the operator's calls default to "default"
}

// TestAgentScope: a machine's credential reads its own goal state and the
// packages in it, and nothing else.
func TestAgentScope(t *testing.T) {
	a := newAccess(t)
	fl := pb.NewFleetServiceClient(a.conns[vm1])
	dl := pb.NewDownloadServiceClient(a.conns[vm1])
	pkg := pb.ArtifactKind_ARTIFACT_KIND_PACKAGE
	wantErr(t, firstRecv(fl.WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: "vm2"})), codes.PermissionDenied, "may act for machine 'vm1' only, not 'vm2'")
	_, err := fl.ReportStatus(ctx(t), &pb.ReportStatusRequest{Machine: "vm2", InstanceView: &pb.InstanceView{}})
	wantErr(t, err, codes.PermissionDenied, "machine 'vm1' only")
	plan, err := dl.GetDownloadPlan(ctx(t), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: "eastus"})
	mustOK(t, err)
	// Its URLs name one object and expire within minutes.
	for _, s := range plan.Plan.Sources {
		if !strings.Contains(s.Url, "/replicas/package-") || !strings.Contains(s.Url, "X-Amz-Expires=") {
			t.Fatalf("source URL %s", s.Url)
		}
	}
	if left := time.Until(plan.Plan.ExpireTime.AsTime()); left > 15*time.Minute {
		t.Fatalf("URLs work for %s", left)
	}
	_, err = dl.GetDownloadPlan(ctx(t), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "2.0.0", Kind: pkg, Region: "eastus"})
	wantErr(t, err, codes.PermissionDenied, "g/a/2.0.0 is not in its goal state")
	// It reports damage of what it downloads only.
	_, err = dl.ReportReplicaDamage(ctx(t), &pb.ReportReplicaDamageRequest{Gallery: "g", Application: "a", Version: "2.0.0", Kind: pkg, Region: "eastus"})
	wantErr(t, err, codes.PermissionDenied, "g/a/2.0.0 is not in its goal state")
	r, err := dl.ReportReplicaDamage(ctx(t), &pb.ReportReplicaDamageRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: "eastus"})
	mustOK(t, err)
	if r.Verdict != pb.ReplicaVerdict_REPLICA_VERDICT_SOUND {
		t.Fatalf("a report of a sound replica: %v", r)
	}
	// In another tenant's name: denied too.
	_, err = dl.GetDownloadPlan(metadata.AppendToOutgoingContext(ctx(t), pb.TenantMetadataKey, "other"), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: "eastus"})
	wantErr(t, err, codes.PermissionDenied)
	_, err = pb.NewCatalogServiceClient(a.conns[vm1]).GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	wantErr(t, err, codes.PermissionDenied, "a machine's credential serves its agent only")
}

// TestSharing: a gallery shared with another tenant (or made public) is
// readable and downloadable there, never writable; unsharing ends it.
func TestSharing(t *testing.T) {
	a := newAccess(t)
	cat := pb.NewCatalogServiceClient(a.conns[stranger])
	dl := pb.NewDownloadServiceClient(a.conns[stranger])
	// The owner's preheat names its machines: not shown to the other
	// tenant.
	_, err := pb.NewDownloadServiceClient(a.c.Client.Conn()).Preheat(ctx(t), &pb.PreheatRequest{Gallery: "g", Application: "a", Version: "1.0.0", Region: "eastus", Machines: 1})
	mustOK(t, err)
	read := func() error {
		v, err := cat.GetVersion(inDefault(t), &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
		if err == nil && len(v.Version.Preheat) != 0 {
			t.Errorf("another tenant reads the owner's preheat: %v", v.Version.Preheat)
		}
		if err == nil {
			_, err = dl.GetDownloadPlan(inDefault(t), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Region: "eastus"})
		}
		return err
	}
	write := func() error {
		_, err := cat.DeleteVersion(inDefault(t), &pb.DeleteVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
		return err
	}
	wantErr(t, read(), codes.PermissionDenied, "not shared with it")
	ownerAC := pb.NewAccessServiceClient(a.conns[owner])
	for _, grantee := range []string{"other", "*"} {
		_, err := ownerAC.ShareGallery(ctx(t), &pb.ShareGalleryRequest{Gallery: "g", Grantee: grantee})
		mustOK(t, err)
		mustOK(t, read())
		wantErr(t, write(), codes.PermissionDenied)
		_, err = cat.ListGalleries(inDefault(t), &pb.ListGalleriesRequest{})
		wantErr(t, err, codes.PermissionDenied)
		_, err = ownerAC.UnshareGallery(ctx(t), &pb.UnshareGalleryRequest{Gallery: "g", Grantee: grantee})
		mustOK(t, err)
		wantErr(t, read(), codes.PermissionDenied)
	}
	// Bad shares.
	_, err = ownerAC.ShareGallery(ctx(t), &pb.ShareGalleryRequest{Gallery: "g", Grantee: "../other"})
	wantErr(t, err, codes.InvalidArgument, "grantee")
	_, err = ownerAC.ShareGallery(ctx(t), &pb.ShareGalleryRequest{Gallery: "nope", Grantee: "other"})
	wantErr(t, err, codes.NotFound)
	_, err = ownerAC.ShareGallery(ctx(t), &pb.ShareGalleryRequest{Gallery: "g", Grantee: "default"})
	wantErr(t, err, codes.InvalidArgument, "belongs to tenant 'default' already")
	_, err = ownerAC.UnshareGallery(ctx(t), &pb.UnshareGalleryRequest{Gallery: "g", Grantee: "other"})
	wantErr(t, err, codes.NotFound, "not shared")

	// An Owner of gallery g lists g's shares only, and creates tokens for
	// g only.
	_, err = ownerAC.ShareGallery(ctx(t), &pb.ShareGalleryRequest{Gallery: "h", Grantee: "other"})
	mustOK(t, err)
	og, err := a.admin.CreateToken(ctx(t), &pb.CreateTokenRequest{Name: "owner of g", Role: pb.Role_ROLE_OWNER, Gallery: "g"})
	mustOK(t, err)
	ownerG := pb.NewAccessServiceClient(a.conn(t, og.Secret))
	_, err = ownerG.ListShares(ctx(t), &pb.ListSharesRequest{Gallery: "h"})
	wantErr(t, err, codes.PermissionDenied, "it is scoped to gallery 'g'")
	_, err = ownerG.ListShares(ctx(t), &pb.ListSharesRequest{})
	wantErr(t, err, codes.PermissionDenied, "it is scoped to gallery 'g'")
	if ls, err := ownerG.ListShares(ctx(t), &pb.ListSharesRequest{Gallery: "g"}); err != nil || len(ls.Shares) != 0 {
		t.Fatalf("shares of g seen by its Owner: %v %v", ls, err)
	}
	_, err = ownerG.CreateToken(ctx(t), &pb.CreateTokenRequest{Name: "x", Role: pb.Role_ROLE_READER})
	wantErr(t, err, codes.PermissionDenied)
	_, err = ownerG.CreateToken(ctx(t), &pb.CreateTokenRequest{Name: "x", Role: pb.Role_ROLE_READER, Gallery: "g"})
	mustOK(t, err)
	_, err = a.admin.IssueAgentToken(ctx(t), &pb.IssueAgentTokenRequest{})
	wantErr(t, err, codes.NotFound)

	// A gallery-scoped Reader can't share, nor create tokens beyond it.
	_, err = pb.NewAccessServiceClient(a.conns[readerG]).ShareGallery(ctx(t), &pb.ShareGalleryRequest{Gallery: "g", Grantee: "other"})
	wantErr(t, err, codes.PermissionDenied, "needs the Owner role")
	// Bad token requests.
	for _, r := range []*pb.CreateTokenRequest{
		{Role: pb.Role_ROLE_READER},
		{Name: "x", Role: pb.Role_ROLE_MACHINE},
		{Name: "x"},
		{Name: "x", Role: pb.Role_ROLE_READER, TtlSeconds: -1},
		{Name: "x", Role: pb.Role_ROLE_READER, TtlSeconds: 1 << 62},
		{Name: "line\nbreak", Role: pb.Role_ROLE_READER},
	} {
		_, err := ownerAC.CreateToken(ctx(t), r)
		wantErr(t, err, codes.InvalidArgument)
	}
	_, err = ownerAC.CreateToken(ctx(t), &pb.CreateTokenRequest{Name: "x", Role: pb.Role_ROLE_READER, Gallery: "nope"})
	wantErr(t, err, codes.NotFound)
	_, err = ownerAC.RevokeToken(ctx(t), &pb.RevokeTokenRequest{Id: "../../etc"})
	wantErr(t, err, codes.InvalidArgument, "not a token id")
}

// TestPathTraversal: names that would climb out of a directory or a bucket
// prefix are refused before anything is stored.
func TestPathTraversal(t *testing.T) {
	a := newAccess(t)
	before := a.snapshot(t)
	cat := pb.NewCatalogServiceClient(a.conns[owner])
	version := func(mod func(*pb.GalleryApplicationVersion)) error {
		v := &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: "3.0.0", Location: "eastus",
			PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}}}
		mod(v)
		_, err := cat.CreateVersion(ctx(t), &pb.CreateVersionRequest{Version: v})
		return err
	}
	for name, err := range map[string]error{
		"gallery ../g": func() error {
			_, err := cat.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "../g", Location: "eastus"}})
			return err
		}(),
		"application a/../../b": func() error {
			_, err := cat.CreateApplication(ctx(t), &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: "a/../../b", Location: "eastus", SupportedOsType: "Linux"}})
			return err
		}(),
		"version ../1.0.0": version(func(v *pb.GalleryApplicationVersion) { v.Name = "../1.0.0" }),
		"packageFileName ../../etc/passwd": version(func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.Settings = &pb.UserArtifactSettings{PackageFileName: "../../etc/passwd"}
		}),
		"packageFileName ..": version(func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.Settings = &pb.UserArtifactSettings{PackageFileName: ".."}
		}),
		"configFileName /etc/cron.d/x": version(func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.Settings = &pb.UserArtifactSettings{ConfigFileName: "/etc/cron.d/x"}
		}),
		"configFileName a\\..\\b": version(func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.Settings = &pb.UserArtifactSettings{ConfigFileName: `a\..\b`}
		}),
		"tenant ../other": func() error {
			_, err := cat.GetGallery(metadata.AppendToOutgoingContext(ctx(t), pb.TenantMetadataKey, "../other"), &pb.GetGalleryRequest{Gallery: "g"})
			return err
		}(),
		"machine ../vm1": func() error {
			_, err := pb.NewFleetServiceClient(a.conns[owner]).CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "../vm1", Region: "eastus", OsType: "Linux"}})
			return err
		}(),
	} {
		if errs.ClassOf(err).Code() != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if after := a.snapshot(t); after != before {
		t.Fatalf("refused names changed what is stored:\nbefore %s\nafter %s", before, after)
	}
}

// TestSharedDeploy: a machine of another tenant deploys a version from a
// gallery shared with its tenant ("TENANT:gallery/application/version"),
// and its agent downloads it; not before the share, nor after it ends.
func TestSharedDeploy(t *testing.T) {
	a := newAccess(t)
	other := pb.NewFleetServiceClient(a.conns[stranger]) // Owner of tenant "other"
	vm, err := other.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "vmx", Region: "eastus", OsType: "Linux"}})
	mustOK(t, err)
	set := func(ref string) error {
		_, err := other.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "vmx"}},
			Application: &pb.VMGalleryApplication{PackageReferenceId: ref}})
		return err
	}
	for _, bad := range []string{":g/a/1.0.0", "../x:g/a/1.0.0", "default:g/a", "default:"} {
		wantErr(t, set(bad), codes.InvalidArgument, "packageReferenceId")
	}
	wantErr(t, set("default:g/a/1.0.0"), codes.PermissionDenied, "gallery 'g' of tenant 'default' is not shared with tenant 'other'")
	_, err = pb.NewAccessServiceClient(a.conns[owner]).ShareGallery(ctx(t), &pb.ShareGalleryRequest{Gallery: "g", Grantee: "other"})
	mustOK(t, err)
	wantErr(t, set("default:g/a/9.9.9"), codes.NotFound)
	mustOK(t, set("default:g/a/1.0.0"))

	agent := a.conn(t, vm.AgentToken)
	ws, err := pb.NewFleetServiceClient(agent).WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: "vmx"})
	mustOK(t, err)
	gs, err := ws.Recv()
	mustOK(t, err)
	if apps := gs.GoalState.Applications; len(apps) != 1 || apps[0].Tenant != "default" || apps[0].Gallery != "g" || apps[0].Version != "1.0.0" || apps[0].Package == nil {
		t.Fatalf("goal state %v", gs.GoalState)
	}
	dl := pb.NewDownloadServiceClient(agent)
	plan := func(version string) error {
		_, err := dl.GetDownloadPlan(client.InTenant(ctx(t), "default"), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: version, Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Region: "eastus"})
		return err
	}
	mustOK(t, plan("1.0.0"))
	wantErr(t, plan("2.0.0"), codes.PermissionDenied, "not in its goal state")
	// Its credential still serves its own machine only, in its own tenant.
	_, err = pb.NewCatalogServiceClient(agent).GetVersion(client.InTenant(ctx(t), "default"), &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	wantErr(t, err, codes.PermissionDenied)

	_, err = pb.NewAccessServiceClient(a.conns[owner]).UnshareGallery(ctx(t), &pb.UnshareGalleryRequest{Gallery: "g", Grantee: "other"})
	mustOK(t, err)
	wantErr(t, plan("1.0.0"), codes.PermissionDenied, "not shared with tenant 'other'")
}
