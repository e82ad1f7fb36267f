// Command presign uploads a file to a MinIO endpoint (bucket "incoming") and
// prints a presigned GET URL for it, valid for an hour: the demo's stand-in
// for a package an operator already keeps in object storage. Credentials
// come from VMAPP_S3_ACCESS_KEY / VMAPP_S3_SECRET_KEY.
//
//	go run ./deploy/local/presign http://127.0.0.1:9103 ./hello.tar.gz
package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: presign ENDPOINT_URL FILE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "presign:", err)
		os.Exit(1)
	}
}

func run(endpoint, file string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(os.Getenv("VMAPP_S3_ACCESS_KEY"), os.Getenv("VMAPP_S3_SECRET_KEY"), ""),
		Secure: u.Scheme == "https",
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const bucket = "incoming"
	if ok, err := c.BucketExists(ctx, bucket); err != nil {
		return err
	} else if !ok {
		if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
			return err
		}
	}
	name := filepath.Base(file)
	if _, err := c.FPutObject(ctx, bucket, name, file, minio.PutObjectOptions{}); err != nil {
		return err
	}
	signed, err := c.PresignedGetObject(ctx, bucket, name, time.Hour, nil)
	if err != nil {
		return err
	}
	fmt.Println(signed.String())
	return nil
}
