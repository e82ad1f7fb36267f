package server

import (
	"context"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/signing"
)

type signingServer struct {
	pb.UnimplementedSigningServiceServer
	signing *signing.Service
}

func (s *signingServer) SignVersion(ctx context.Context, r *pb.SignVersionRequest) (*pb.SignVersionResponse, error) {
	sigs, err := s.signing.SignVersion(ctx, tenantOf(ctx), r)
	return &pb.SignVersionResponse{Signatures: sigs}, err
}

func (s *signingServer) GetVersionSignatures(ctx context.Context, r *pb.GetVersionSignaturesRequest) (*pb.GetVersionSignaturesResponse, error) {
	return s.signing.GetVersionSignatures(ctx, tenantOf(ctx), r.Gallery, r.Application, r.Version)
}

func (s *signingServer) GetTrustPolicy(ctx context.Context, r *pb.GetTrustPolicyRequest) (*pb.GetTrustPolicyResponse, error) {
	p, err := s.signing.GetTrustPolicy(ctx, tenantOf(ctx), r.Gallery)
	return &pb.GetTrustPolicyResponse{Policy: p}, err
}

func (s *signingServer) AddTrustedKey(ctx context.Context, r *pb.AddTrustedKeyRequest) (*pb.AddTrustedKeyResponse, error) {
	p, err := s.signing.AddTrustedKey(ctx, tenantOf(ctx), r)
	return &pb.AddTrustedKeyResponse{Policy: p}, err
}

func (s *signingServer) RemoveTrustedKey(ctx context.Context, r *pb.RemoveTrustedKeyRequest) (*pb.RemoveTrustedKeyResponse, error) {
	p, err := s.signing.RemoveTrustedKey(ctx, tenantOf(ctx), r.Gallery, r.Key)
	return &pb.RemoveTrustedKeyResponse{Policy: p}, err
}

func (s *signingServer) SetRequiredSignatures(ctx context.Context, r *pb.SetRequiredSignaturesRequest) (*pb.SetRequiredSignaturesResponse, error) {
	p, err := s.signing.SetRequiredSignatures(ctx, tenantOf(ctx), r.Gallery, r.RequiredSignatures)
	return &pb.SetRequiredSignaturesResponse{Policy: p}, err
}

func (s *signingServer) RotateTrustedKey(ctx context.Context, r *pb.RotateTrustedKeyRequest) (*pb.RotateTrustedKeyResponse, error) {
	p, err := s.signing.RotateTrustedKey(ctx, tenantOf(ctx), r)
	return &pb.RotateTrustedKeyResponse{Policy: p}, err
}

func (s *signingServer) RevokeTrustedKey(ctx context.Context, r *pb.RevokeTrustedKeyRequest) (*pb.RevokeTrustedKeyResponse, error) {
	p, err := s.signing.RevokeTrustedKey(ctx, tenantOf(ctx), r)
	return &pb.RevokeTrustedKeyResponse{Policy: p}, err
}
