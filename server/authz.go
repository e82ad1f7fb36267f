package server

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/server/fleet"
)

// AuthorizationKey is the metadata key of the caller's credential,
// "Bearer <token>".
const AuthorizationKey = "authorization"

// rule is what one RPC needs. Every RPC of every vmapp service has one
// (TestAccessMatrix fails otherwise); a call without a rule is refused.
type rule struct {
	perm auth.Perm
	// gallery returns the one gallery the call is about; nil for calls on
	// the whole tenant (listing galleries, machines, tokens).
	gallery func(a *authorizer, ctx context.Context, tenant string, req any) (string, error)
	// machine is how a machine token may make the call; nil: it may not.
	machine func(a *authorizer, ctx context.Context, t *pb.Token, tenant string, req any) error
	// anyone: any valid credential, in any tenant.
	anyone bool
	// tenantWide: an empty gallery means the whole tenant.
	tenantWide bool
	// operator: the operator's only (Owner of every tenant): the cluster.
	operator bool
}

func inGallery(_ *authorizer, _ context.Context, _ string, req any) (string, error) {
	switch r := req.(type) {
	case *pb.UpdateGalleryRequest:
		return r.GetGallery().GetName(), nil
	case *pb.CreateApplicationRequest:
		return r.GetApplication().GetGallery(), nil
	case *pb.UpdateApplicationRequest:
		return r.GetApplication().GetGallery(), nil
	case *pb.CreateVersionRequest:
		return r.GetVersion().GetGallery(), nil
	case *pb.UpdateVersionRequest:
		return r.GetVersion().GetGallery(), nil
	case interface{ GetGallery() string }:
		return r.GetGallery(), nil
	}
	return "", errs.New(errs.Internal, "", "no gallery in %T", req)
}

// inSession is the gallery of an upload session, which must be the
// tenant's; or of the artifact an AbortUpload without a session id names.
func inSession(a *authorizer, ctx context.Context, tenant string, req any) (string, error) {
	id := req.(interface{ GetSessionId() string }).GetSessionId()
	if r, ok := req.(*pb.AbortUploadRequest); ok && id == "" {
		return r.Gallery, nil
	}
	sess, err := a.store.GetUpload(ctx, id)
	if err != nil {
		return "", err
	}
	if sess.Tenant != tenant {
		return "", errs.New(errs.NotFound, "sessionId", "Upload session '%s' doesn't exist.", id)
	}
	return sess.Gallery, nil
}

// ownMachine lets a machine token act for its own machine only.
func ownMachine(a *authorizer, _ context.Context, t *pb.Token, tenant string, req any) error {
	if t.Tenant != tenant {
		return a.auth.Check(t, auth.Agent, "act as an agent", tenant, "")
	}
	if m := req.(interface{ GetMachine() string }).GetMachine(); m != t.Machine {
		return errs.New(errs.PermissionDenied, "machine", "%s may act for machine '%s' only, not '%s'", auth.Describe(t), t.Machine, m)
	}
	return nil
}

// holds tells whether machine token t's goal state holds version r of
// tenant's gallery.
func (a *authorizer) holds(ctx context.Context, t *pb.Token, tenant string, r versionRef) (bool, error) {
	gs, err := a.fleet.GoalState(ctx, t.Tenant, t.Machine)
	if err != nil {
		return false, err
	}
	for _, app := range gs.Applications {
		from := app.Tenant
		if from == "" {
			from = t.Tenant
		}
		if from == tenant && app.Gallery == r.GetGallery() && app.Application == r.GetApplication() && app.Version == r.GetVersion() {
			return true, nil
		}
	}
	for _, p := range gs.Preheat { // of the machine's tenant
		if t.Tenant == tenant && p.Gallery == r.GetGallery() && p.Application == r.GetApplication() && p.Version == r.GetVersion() {
			return true, nil
		}
	}
	return false, nil
}

// versionRef is a request naming a version.
type versionRef interface {
	GetGallery() string
	GetApplication() string
	GetVersion() string
}

// inGoalState lets a machine token download what its goal state holds:
// from its own tenant's galleries, or from a gallery another tenant (the
// call's) shares with its tenant.
func inGoalState(a *authorizer, ctx context.Context, t *pb.Token, tenant string, req any) error {
	r := req.(versionRef)
	if t.Tenant != tenant {
		if ok, err := a.auth.Shared(tenant, r.GetGallery(), t.Tenant); err != nil || !ok {
			if err == nil {
				err = errs.New(errs.PermissionDenied, "gallery", "%s may not download from gallery '%s' of tenant '%s': it is not shared with tenant '%s'", auth.Describe(t), r.GetGallery(), tenant, t.Tenant)
			}
			return err
		}
	}
	if a.fleet != nil {
		ok, err := a.holds(ctx, t, tenant, r)
		if err == nil && !ok {
			// The machine may have its goal state from a node ahead of this
			// one (a cluster): wait for every change committed so far, and
			// look again.
			if err = a.fleet.Sync(ctx); err == nil {
				ok, err = a.holds(ctx, t, tenant, r)
			}
		}
		if err != nil || ok {
			return err
		}
	}
	return errs.New(errs.PermissionDenied, "version", "%s may download what machine '%s' is to install only; %s/%s/%s is not in its goal state", auth.Describe(t), t.Machine, r.GetGallery(), r.GetApplication(), r.GetVersion())
}

var (
	read     = rule{perm: auth.Read, gallery: inGallery}
	readAll  = rule{perm: auth.Read}
	publish  = rule{perm: auth.Publish, gallery: inGallery}
	manage   = rule{perm: auth.Publish}
	deploy   = rule{perm: auth.Deploy}
	agent    = rule{perm: auth.Agent, machine: ownMachine}
	download = rule{perm: auth.Read, gallery: inGallery, machine: inGoalState}
	session  = rule{perm: auth.Publish, gallery: inSession}
	owner    = rule{perm: auth.Manage}
	ownerOf  = rule{perm: auth.Manage, gallery: inGallery}
	ownerAny = rule{perm: auth.Manage, gallery: inGallery, tenantWide: true}
	anyone   = rule{anyone: true}
	operator = rule{operator: true}
)

var rules = map[string]rule{
	pb.CatalogService_CreateGallery_FullMethodName:     manage,
	pb.CatalogService_GetGallery_FullMethodName:        read,
	pb.CatalogService_ListGalleries_FullMethodName:     readAll,
	pb.CatalogService_UpdateGallery_FullMethodName:     publish,
	pb.CatalogService_DeleteGallery_FullMethodName:     publish,
	pb.CatalogService_CreateApplication_FullMethodName: publish,
	pb.CatalogService_GetApplication_FullMethodName:    read,
	pb.CatalogService_ListApplications_FullMethodName:  read,
	pb.CatalogService_UpdateApplication_FullMethodName: publish,
	pb.CatalogService_DeleteApplication_FullMethodName: publish,
	pb.CatalogService_CreateVersion_FullMethodName:     publish,
	pb.CatalogService_GetVersion_FullMethodName:        read,
	pb.CatalogService_ListVersions_FullMethodName:      read,
	pb.CatalogService_UpdateVersion_FullMethodName:     publish,
	pb.CatalogService_DeleteVersion_FullMethodName:     publish,
	pb.CatalogService_ListRegions_FullMethodName:       anyone,

	pb.TransferService_BeginUpload_FullMethodName: publish,
	pb.TransferService_Upload_FullMethodName:      session,
	pb.TransferService_AbortUpload_FullMethodName: session,
	pb.TransferService_Import_FullMethodName:      publish,

	pb.ReplicationService_WatchReplication_FullMethodName: read,
	pb.ReplicationService_RepairVersion_FullMethodName:    publish,

	pb.DownloadService_GetDownloadPlan_FullMethodName:     download,
	pb.DownloadService_ReadRange_FullMethodName:           download,
	pb.DownloadService_ReportReplicaDamage_FullMethodName: download,
	pb.DownloadService_Announce_FullMethodName:            agent,
	pb.DownloadService_ReportPeer_FullMethodName:          download,
	pb.DownloadService_Preheat_FullMethodName:             deploy,

	pb.FleetService_CreateMachine_FullMethodName:     manage,
	pb.FleetService_GetMachine_FullMethodName:        readAll,
	pb.FleetService_ListMachines_FullMethodName:      readAll,
	pb.FleetService_DeleteMachine_FullMethodName:     manage,
	pb.FleetService_CreateScaleSet_FullMethodName:    manage,
	pb.FleetService_GetScaleSet_FullMethodName:       readAll,
	pb.FleetService_ListScaleSets_FullMethodName:     readAll,
	pb.FleetService_DeleteScaleSet_FullMethodName:    manage,
	pb.FleetService_SetApplication_FullMethodName:    deploy,
	pb.FleetService_RemoveApplication_FullMethodName: deploy,
	pb.FleetService_RetryApplication_FullMethodName:  deploy,
	pb.FleetService_ListInventory_FullMethodName:     readAll,
	pb.FleetService_WatchGoalState_FullMethodName:    agent,
	pb.FleetService_ReportStatus_FullMethodName:      agent,

	// Custom actions.
	pb.FleetService_RunAction_FullMethodName:          deploy,
	pb.FleetService_ListActionRuns_FullMethodName:     readAll,
	pb.FleetService_ReportActionResult_FullMethodName: agent,
	pb.RolloutService_CreateRollout_FullMethodName:    deploy,
	pb.RolloutService_GetRollout_FullMethodName:       readAll,
	pb.RolloutService_ListRollouts_FullMethodName:     readAll,
	pb.RolloutService_WatchRollout_FullMethodName:     readAll,
	pb.RolloutService_PauseRollout_FullMethodName:     deploy,
	pb.RolloutService_ResumeRollout_FullMethodName:    deploy,
	pb.RolloutService_AbortRollout_FullMethodName:     deploy,

	pb.AccessService_WhoAmI_FullMethodName:          anyone,
	pb.AccessService_CreateToken_FullMethodName:     ownerAny,
	pb.AccessService_ListTokens_FullMethodName:      owner,
	pb.AccessService_RevokeToken_FullMethodName:     owner,
	pb.AccessService_ShareGallery_FullMethodName:    ownerOf,
	pb.AccessService_UnshareGallery_FullMethodName:  ownerOf,
	pb.AccessService_ListShares_FullMethodName:      ownerAny,
	pb.AccessService_IssueAgentToken_FullMethodName: manage,

	pb.SigningService_SignVersion_FullMethodName:           publish,
	pb.SigningService_GetVersionSignatures_FullMethodName:  read,
	pb.SigningService_GetTrustPolicy_FullMethodName:        read,
	pb.SigningService_AddTrustedKey_FullMethodName:         ownerOf,
	pb.SigningService_RemoveTrustedKey_FullMethodName:      ownerOf,
	pb.SigningService_SetRequiredSignatures_FullMethodName: ownerOf,
	pb.SigningService_RotateTrustedKey_FullMethodName:      ownerOf,
	pb.SigningService_RevokeTrustedKey_FullMethodName:      ownerOf,

	pb.ClusterService_GetClusterStatus_FullMethodName: operator,
	pb.ClusterService_AddNode_FullMethodName:          operator,
	pb.ClusterService_RemoveNode_FullMethodName:       operator,
	pb.ClusterService_SaveSnapshot_FullMethodName:     operator,
}

// open are the services any caller may use without a token: health checks,
// for probes, and the calls between the nodes of a cluster (PeerService,
// TrackerService), which prove the cluster's key instead
// (cluster.Node.CheckPeer).
func open(method string) bool {
	for _, s := range []string{"grpc.health.v1.Health", pb.PeerService_ServiceDesc.ServiceName, pb.TrackerService_ServiceDesc.ServiceName} {
		if strings.HasPrefix(method, "/"+s+"/") {
			return true
		}
	}
	return false
}

// authorizer authenticates calls and checks them against rules.
type authorizer struct {
	auth      *auth.Service
	store     *catalog.Store
	fleet     *fleet.Fleet
	bindCerts bool // machine tokens need their machine's client certificate
}

// authenticate returns ctx with the caller's token.
func (a *authorizer) authenticate(ctx context.Context, method string) (context.Context, error) {
	if a == nil || open(method) {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(AuthorizationKey)
	switch {
	case len(v) == 0:
		return ctx, errs.New(errs.Unauthenticated, "authorization", "no credential: send 'authorization: Bearer <token>' (the CLI reads VMAPP_TOKEN or --token-file)")
	case len(v) > 1:
		return ctx, errs.New(errs.Unauthenticated, "authorization", "metadata %s was sent %d times; send one credential", AuthorizationKey, len(v))
	}
	scheme, cred, ok := strings.Cut(v[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ctx, errs.New(errs.Unauthenticated, "authorization", "the credential must be sent as 'Bearer <token>'")
	}
	t, err := a.auth.Authenticate(strings.TrimSpace(cred))
	if err != nil {
		return ctx, err
	}
	if a.bindCerts && t.Role == pb.Role_ROLE_MACHINE {
		if cn := clientCN(ctx); cn != t.Machine {
			return ctx, errs.New(errs.PermissionDenied, "authorization", "%s came over a connection whose client certificate names '%s', not machine '%s'", auth.Describe(t), cn, t.Machine)
		}
	}
	if _, named := ctx.Value(tenantCtx{}).(string); !named && t.Tenant != auth.AllTenants {
		// The credential's tenant, unless the call names another (a
		// gallery shared with the credential's tenant).
		ctx = context.WithValue(ctx, tenantCtx{}, t.Tenant)
	}
	return auth.WithToken(ctx, t), nil
}

// clientCN is the common name of the connection's verified client
// certificate; "" without one.
func clientCN(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return ""
	}
	return ti.State.VerifiedChains[0][0].Subject.CommonName
}

// authorize checks the call's request against its rule.
func (a *authorizer) authorize(ctx context.Context, method string, req any) error {
	if a == nil || open(method) {
		return nil
	}
	t := auth.TokenOf(ctx)
	r, ok := rules[method]
	switch {
	case !ok && strings.HasPrefix(method, "/grpc.reflection."):
		return nil // the schema, to any valid credential
	case !ok:
		return errs.New(errs.PermissionDenied, "", "%s has no access rule: refused", method)
	case r.anyone:
		return nil
	case r.operator:
		if t.Tenant != auth.AllTenants || t.Role != pb.Role_ROLE_OWNER {
			return errs.New(errs.PermissionDenied, "", "%s may not %s: the cluster is the operator's (a token that is Owner of every tenant)", auth.Describe(t), method[strings.LastIndexByte(method, '/')+1:])
		}
		return nil
	}
	action := method[strings.LastIndexByte(method, '/')+1:]
	tenant := tenantOf(ctx)
	if t.Role == pb.Role_ROLE_MACHINE && r.machine != nil {
		return r.machine(a, ctx, t, tenant, req)
	}
	gallery := ""
	if r.gallery != nil {
		var err error
		if gallery, err = r.gallery(a, ctx, tenant, req); err != nil {
			return err
		}
		if gallery == "" && !r.tenantWide {
			return errs.New(errs.InvalidArgument, "gallery", "gallery is required")
		}
	}
	return a.auth.Check(t, r.perm, action, tenant, gallery)
}

// authStream authorizes a stream's first message when it arrives.
type authStream struct {
	grpc.ServerStream
	a      *authorizer
	method string
	seen   bool
}

func (s *authStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil || s.seen {
		return err
	}
	s.seen = true
	return s.a.authorize(s.Context(), s.method, m)
}
