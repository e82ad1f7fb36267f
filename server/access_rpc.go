package server

import (
	"context"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/server/fleet"
)

type accessServer struct {
	pb.UnimplementedAccessServiceServer
	auth  *auth.Service
	store *catalog.Store
	fleet *fleet.Fleet // may be nil
}

func (s *accessServer) WhoAmI(ctx context.Context, _ *pb.WhoAmIRequest) (*pb.WhoAmIResponse, error) {
	return &pb.WhoAmIResponse{Token: auth.TokenOf(ctx)}, nil
}

func (s *accessServer) CreateToken(ctx context.Context, r *pb.CreateTokenRequest) (*pb.CreateTokenResponse, error) {
	if r.Gallery != "" {
		if _, err := s.store.GetGallery(ctx, tenantOf(ctx), r.Gallery); err != nil {
			return nil, err
		}
	}
	t, secret, err := s.auth.CreateToken(ctx, auth.TokenOf(ctx), tenantOf(ctx), r)
	return &pb.CreateTokenResponse{Token: t, Secret: secret}, err
}

func (s *accessServer) ListTokens(ctx context.Context, r *pb.ListTokensRequest) (*pb.ListTokensResponse, error) {
	ts, next, err := s.auth.ListTokens(ctx, auth.TokenOf(ctx), tenantOf(ctx), r.All, r.PageSize, r.PageToken)
	return &pb.ListTokensResponse{Tokens: ts, NextPageToken: next}, err
}

func (s *accessServer) RevokeToken(ctx context.Context, r *pb.RevokeTokenRequest) (*pb.RevokeTokenResponse, error) {
	t, err := s.auth.RevokeToken(ctx, auth.TokenOf(ctx), tenantOf(ctx), r.Id)
	return &pb.RevokeTokenResponse{Token: t}, err
}

func (s *accessServer) ShareGallery(ctx context.Context, r *pb.ShareGalleryRequest) (*pb.ShareGalleryResponse, error) {
	if r.Grantee != auth.AllTenants {
		if err := catalog.ValidateTenant(r.Grantee); err != nil {
			return nil, errs.New(errs.InvalidArgument, "grantee", "grantee '%s' is not a tenant name nor '*' (public)", r.Grantee)
		}
	}
	if _, err := s.store.GetGallery(ctx, tenantOf(ctx), r.Gallery); err != nil {
		return nil, err
	}
	sh, err := s.auth.Share(ctx, auth.TokenOf(ctx), tenantOf(ctx), r.Gallery, r.Grantee)
	return &pb.ShareGalleryResponse{Share: sh}, err
}

func (s *accessServer) UnshareGallery(ctx context.Context, r *pb.UnshareGalleryRequest) (*pb.UnshareGalleryResponse, error) {
	return &pb.UnshareGalleryResponse{}, s.auth.Unshare(ctx, auth.TokenOf(ctx), tenantOf(ctx), r.Gallery, r.Grantee)
}

func (s *accessServer) ListShares(ctx context.Context, r *pb.ListSharesRequest) (*pb.ListSharesResponse, error) {
	sh, err := s.auth.Shares(ctx, tenantOf(ctx), r.Gallery)
	return &pb.ListSharesResponse{Shares: sh}, err
}

func (s *accessServer) IssueAgentToken(ctx context.Context, r *pb.IssueAgentTokenRequest) (*pb.IssueAgentTokenResponse, error) {
	if s.fleet == nil {
		return nil, errs.New(errs.FailedPrecondition, "", "this vmappd has no fleet")
	}
	if _, err := s.fleet.GetMachine(ctx, tenantOf(ctx), r.Machine); err != nil {
		return nil, err
	}
	tok, err := s.auth.IssueMachineToken(ctx, auth.TokenOf(ctx), tenantOf(ctx), r.Machine)
	return &pb.IssueAgentTokenResponse{AgentToken: tok}, err
}
