package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func (c *cli) downloadCmd(ref *versionRef) *cobra.Command {
	var region, out, machine string
	var parallel int
	var config, durable bool
	cmd := &cobra.Command{
		Use:   "download --gallery G --app A VERSION --region R --out FILE",
		Short: "Download a version's package (or default configuration) from a region's replicas",
		Long: `Download a version's package from the completed replicas of a region, as
an agent does: ranged requests in parallel, each piece checked against the
version's manifest, a bad or failed piece fetched from another replica (or,
when the region has none left, from another region), and the whole file's
sha256 checked before it appears at --out. An interrupted download resumes
where it stopped when run again (its state is kept beside the file). The
file is written through the page cache and not synced unless --durable:
run again after a crash, the download hashes what it finds (a finished
file whole, a partial one piece by piece) and fetches what was lost. Each
failed attempt at a piece (a corrupted or unreachable replica) is logged to
stderr, even when another source serves it.

VERSION is a version name or "latest". With -o json the download plan is
printed (without its URLs).`,
		Example: `  vmapp version download --gallery g1 --app myapp 1.0.0 --region westus --out ./myapp.tgz`,
		Args:    args("VERSION"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			if parallel < 0 {
				return usagef("--parallel %d: want 0 (adaptive) or more", parallel)
			}
			kind := pb.ArtifactKind_ARTIFACT_KIND_PACKAGE
			if config {
				kind = pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION
			}
			bar := c.newProgress("download")
			if c.structured() {
				bar = nil
			}
			plan, err := cl.Download(c.ctx, ref.gallery, ref.app, args[0], out, client.DownloadOptions{
				Region: region, MachineID: machine, Kind: kind, Parallelism: parallel, Progress: bar.update, Durable: durable,
				Logger: slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			bar.finish(err)
			if err != nil {
				return err
			}
			if c.structured() {
				plan.Sources = nil // presigned URLs are secrets
				return c.printJSON(plan)
			}
			_, err = fmt.Fprintf(c.stdout, "%s: %s of %s/%s/%s from %s, %s, sha256 %s\n", out, kind.Label(), plan.Gallery, plan.Application, plan.Version, plan.Region, formatBytes(plan.SizeBytes), plan.Sha256)
			return err
		}),
	}
	ref.add(cmd)
	host, _ := os.Hostname()
	cmd.Flags().StringVar(&region, "region", "", "the region to download from (required)")
	cmd.Flags().StringVar(&out, "out", "", "the file to write (required)")
	cmd.Flags().StringVar(&machine, "machine-id", host, "identity that picks the replica (a fleet spreads over them)")
	cmd.Flags().IntVar(&parallel, "parallel", 0, "connections; 0 adapts to the link")
	cmd.Flags().BoolVar(&config, "config", false, "download the default configuration instead of the package")
	cmd.Flags().BoolVar(&durable, "durable", false, "have the file on disk (fsync'ed) before returning; without it, a file a crash damaged is found and fetched again by the next download")
	_ = cmd.MarkFlagRequired("region")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
