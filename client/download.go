package client

import (
	"context"

	"github.com/vmapp/vmapp/client/download"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// DownloadOptions tune Download.
type DownloadOptions = download.Options

// Download fetches a version's artifact (version may be "latest") into
// dest, as the machine of o.Region, and returns the plan it followed: see
// download.Run, which it calls on the client's connection.
func (c *Client) Download(ctx context.Context, gallery, app, version, dest string, o DownloadOptions) (*pb.DownloadPlan, error) {
	return download.Run(ctx, pb.NewDownloadServiceClient(c.conn), gallery, app, version, dest, o)
}
