package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/atomicfile"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func (c *cli) clusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show and change the vmappd cluster (the nodes replicating vmappd's state)",
		RunE:  group,
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Every node: its state, term, applied index and lag behind the leader",
		Args:  args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, _ []string) error {
			r, err := pb.NewClusterServiceClient(cl.Conn()).GetClusterStatus(c.ctx, &pb.GetClusterStatusRequest{})
			if err != nil {
				return err
			}
			return c.printCluster(r.Status)
		}),
	}
	var id, raftAddr, apiAddr string
	add := &cobra.Command{
		Use:   "add --id ID --raft HOST:PORT --api HOST:PORT",
		Short: "Add a node (started with --node-id, --raft-listen and an empty data directory) as a voter",
		Args:  args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, _ []string) error {
			if id == "" || raftAddr == "" || apiAddr == "" {
				return usagef("--id, --raft and --api are required")
			}
			r, err := pb.NewClusterServiceClient(cl.Conn()).AddNode(c.ctx, &pb.AddNodeRequest{Id: id, RaftAddress: raftAddr, ApiAddress: apiAddr})
			if err != nil {
				return err
			}
			return c.printCluster(r.Status)
		}),
	}
	add.Flags().StringVar(&id, "id", "", "the node's --node-id")
	add.Flags().StringVar(&raftAddr, "raft", "", "its raft address (what it gives as --raft-advertise, or --raft-listen)")
	add.Flags().StringVar(&apiAddr, "api", "", "its gRPC address as the other nodes reach it (--advertise)")
	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Take a node out of the cluster",
		Args:  args("ID"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, a []string) error {
			r, err := pb.NewClusterServiceClient(cl.Conn()).RemoveNode(c.ctx, &pb.RemoveNodeRequest{Id: a[0]})
			if err != nil {
				return err
			}
			return c.printCluster(r.Status)
		}),
	}
	snapshot := &cobra.Command{Use: "snapshot", Short: "Back up the state", RunE: group}
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Save a consistent copy of vmappd's state to a new file (mode 0600; restore it with vmappd restore)",
		Args:  args("FILE"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, a []string) error {
			if _, err := os.Lstat(a[0]); err == nil {
				return usagef("%s exists: save to a new file", a[0])
			}
			return c.saveSnapshot(cl, a[0])
		}),
	}
	snapshot.AddCommand(save)
	cmd.AddCommand(status, add, remove, snapshot)
	return cmd
}

// saveSnapshot streams the state into path, written atomically.
func (c *cli) saveSnapshot(cl *client.Client, path string) error {
	s, err := pb.NewClusterServiceClient(cl.Conn()).SaveSnapshot(c.ctx, &pb.SaveSnapshotRequest{})
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	var index uint64
	var n int64
	go func() {
		for {
			m, err := s.Recv()
			if errors.Is(err, io.EOF) {
				pw.Close()
				return
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if m.Index != 0 {
				index = m.Index
			}
			if _, err := pw.Write(m.Data); err != nil {
				return
			}
			n += int64(len(m.Data))
		}
	}()
	if err := atomicfile.WriteFrom(path, pr, 0o600); err != nil {
		return runError{fmt.Errorf("saving the snapshot to %s: %w", path, err)}
	}
	fmt.Fprintf(c.stdout, "saved %s (%d bytes, raft index %d)\n", path, n, index)
	return nil
}

func (c *cli) printCluster(st *pb.ClusterStatus) error {
	if c.structured() {
		return c.printJSON(st)
	}
	if !st.Clustered {
		fmt.Fprintln(c.stdout, "a single vmappd (no raft log): start it with --node-id, --raft-listen and --cluster-key to make it a cluster's first node")
	}
	t := newTable(c.stdout, "NODE", "STATE", "SUFFRAGE", "RAFT", "API", "TERM", "APPLIED", "LAG", "LAST-CONTACT", "ERROR")
	for _, n := range st.Nodes {
		contact := ""
		if n.LastContact != nil && n.State != "Leader" {
			contact = time.Since(n.LastContact.AsTime()).Round(time.Millisecond).String() + " ago"
		}
		t.row(n.Id, n.State, n.Suffrage, n.RaftAddress, n.ApiAddress, strconv.FormatUint(n.Term, 10),
			strconv.FormatUint(n.AppliedIndex, 10), strconv.FormatUint(n.Lag, 10), contact, n.Error)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if st.Clustered {
		fmt.Fprintf(c.stdout, "leader %s, term %d, commit index %d (answered by %s)\n", cmp.Or(st.LeaderId, "none"), st.Term, st.CommitIndex, st.AnsweredBy)
	}
	return nil
}
