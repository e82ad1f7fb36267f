package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/internal/atomicfile"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// StateDir is the directory under the root where the agent keeps its own
// files; StateFile is its local state in it.
const (
	StateDir  = ".vmapp-agent"
	StateFile = "state.json"
)

const stateSchema = 1

// state is what the agent knows of the machine, kept in
// <root>/.vmapp-agent/state.json and rewritten atomically after every
// change.
type state struct {
	Schema int `json:"schema"`
	// BootID is the boot the agent last started in.
	BootID string `json:"bootId,omitempty"`
	// Generation is the goal state generation last applied in full.
	Generation string `json:"generation,omitempty"`
	// Apps by gallery/application.
	Apps map[string]*appState `json:"apps"`
	// Sequences are the highest statement sequence installed per
	// application (by key), kept when it is removed: a version signed
	// with a lower one is refused as a rollback. Recorded only by an agent
	// that verifies signatures.
	Sequences map[string]uint64 `json:"sequences,omitempty"`
	// KeyChanges are the signed key changes applied to the trust file's
	// policy, in order (vmapp.v1.KeyChange, deterministic protobuf).
	KeyChanges [][]byte `json:"keyChanges,omitempty"`
	// Actions are the custom actions' runs of the goal state the agent
	// started, by id: kept until vmappd has the result and the goal state
	// no longer lists them.
	Actions map[string]*actionRecord `json:"actions,omitempty"`
}

// appState is one application's local state.
type appState struct {
	Gallery     string `json:"gallery"`
	Application string `json:"application"`
	// Installed is the version on the machine; nil when none is.
	Installed *installed `json:"installed,omitempty"`
	// Op is the operation in progress: set before a command starts and
	// cleared when its outcome is recorded. Found at start, it was cut
	// short by a crash or a reboot.
	Op *operation `json:"op,omitempty"`
	// Failure is the last failed attempt at the current target.
	Failure *failure `json:"failure,omitempty"`
	// Attempts at the current target (version and configuration).
	Attempts int32 `json:"attempts,omitempty"`
	// Status is what the agent reports for the application.
	Status status `json:"status"`
}

// installed is an installed version: enough to update or remove it when the
// catalog no longer describes it.
type installed struct {
	Version   string    `json:"version"`
	Dir       string    `json:"dir"`
	ConfigKey string    `json:"configKey,omitempty"`
	Remove    string    `json:"remove"`
	Behavior  string    `json:"scriptBehaviorAfterReboot,omitempty"`
	Time      time.Time `json:"time"`
	Treat     bool      `json:"treatFailureAsDeploymentFailure,omitempty"`
}

// operation is a command in progress.
type operation struct {
	// Op is install, update or remove; Step the command run for it
	// (install, update, remove, or remove-old during an update without an
	// update command).
	Op        string    `json:"op"`
	Step      string    `json:"step"`
	Version   string    `json:"version"`
	ConfigKey string    `json:"configKey,omitempty"`
	Signing   string    `json:"signing,omitempty"`
	Retry     int64     `json:"retry,omitempty"`
	Dir       string    `json:"dir"`
	BootID    string    `json:"bootId"`
	Behavior  string    `json:"scriptBehaviorAfterReboot,omitempty"`
	Start     time.Time `json:"start"`
	// Group is the command's process group, recorded before the command
	// runs (Linux): what of it still runs when a restarted agent finds the
	// operation is killed before anything runs again.
	Group *procGroup `json:"group,omitempty"`
}

// procGroup is a command's process group, and what tells it from a later
// group of the same id.
type procGroup struct {
	// ID is the group's id: its leader's pid.
	ID int `json:"id"`
	// Session is the session the group is in (the agent's).
	Session int `json:"session"`
	// LeaderStart is when the leader started, in clock ticks since boot
	// (/proc/<pid>/stat): the group's processes started no earlier.
	LeaderStart uint64 `json:"leaderStart"`
}

// failure is a failed attempt.
type failure struct {
	Op        string `json:"op"`
	Version   string `json:"version"`
	ConfigKey string `json:"configKey,omitempty"`
	// Signing identifies the signatures the goal carried (signingKey).
	Signing string `json:"signing,omitempty"`
	// Retry is the goal's retry counter at the attempt: a higher one asks
	// for another attempt at once.
	Retry     int64     `json:"retry,omitempty"`
	NextRetry time.Time `json:"nextRetry,omitempty"`
	// Manual failures aren't retried automatically: only a retry (or a
	// new target) runs them again.
	Manual bool `json:"manual,omitempty"`
}

// status is one application's entry in the instance view.
type status struct {
	Version    string    `json:"version,omitempty"`
	State      string    `json:"state,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Operation  string    `json:"operation,omitempty"`
	BytesDone  int64     `json:"bytesDone,omitempty"`
	BytesTotal int64     `json:"bytesTotal,omitempty"`
	ExitCode   int32     `json:"exitCode,omitempty"`
	OutputTail string    `json:"outputTail,omitempty"`
	Start      time.Time `json:"start,omitzero"`
	End        time.Time `json:"end,omitzero"`
	Attempts   int32     `json:"attempts,omitempty"`
	Treat      bool      `json:"treatFailureAsDeploymentFailure,omitempty"`
	// Refusal is why the version's signatures were refused (a
	// sign.Reason's name), when they were.
	Refusal string `json:"refusal,omitempty"`
	// Health (enableHealthCheck): Checking | Healthy | Unhealthy.
	Health       string    `json:"health,omitempty"`
	HealthReason string    `json:"healthReason,omitempty"`
	HealthTail   string    `json:"healthTail,omitempty"`
	HealthTime   time.Time `json:"healthTime,omitzero"`
}

// States of an application in the instance view: the agent's names for
// pb.AppPending ..., declared there.
const (
	StatePending     = pb.AppPending
	StateDownloading = pb.AppDownloading
	StateInstalling  = pb.AppInstalling
	StateUpdating    = pb.AppUpdating
	StateRemoving    = pb.AppRemoving
	StateInstalled   = pb.AppInstalled
	StateFailed      = pb.AppFailed
	StateSkipped     = pb.AppSkipped
)

// Operations.
const (
	OpInstall = "install"
	OpUpdate  = "update"
	OpRemove  = "remove"
)

func (s status) proto(app string) *pb.ApplicationStatus {
	ps := &pb.ApplicationStatus{
		Application: app, Version: s.Version, State: s.State, Reason: s.Reason, Operation: s.Operation,
		BytesDone: s.BytesDone, BytesTotal: s.BytesTotal, ExitCode: s.ExitCode, OutputTail: s.OutputTail,
		Attempts: s.Attempts, TreatFailureAsDeploymentFailure: s.Treat, Refusal: s.Refusal,
		Health: s.Health, HealthReason: s.HealthReason, HealthOutputTail: s.HealthTail,
	}
	if !s.HealthTime.IsZero() {
		ps.HealthTime = timestamppb.New(s.HealthTime)
	}
	if !s.Start.IsZero() {
		ps.StartTime = timestamppb.New(s.Start)
	}
	if !s.End.IsZero() {
		ps.EndTime = timestamppb.New(s.End)
	}
	return ps
}

func statePath(root string) string { return filepath.Join(root, StateDir, StateFile) }

// loadState reads the state file; a missing one is an empty state.
func loadState(root string) (*state, error) {
	b, err := os.ReadFile(statePath(root))
	if errors.Is(err, fs.ErrNotExist) {
		return &state{Schema: stateSchema, Apps: map[string]*appState{}, Sequences: map[string]uint64{}, Actions: map[string]*actionRecord{}}, nil
	}
	if err != nil {
		return nil, err
	}
	st := &state{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %w", statePath(root), err)
	}
	if st.Schema > stateSchema {
		return nil, fmt.Errorf("%s has schema %d; this agent knows %d at most", statePath(root), st.Schema, stateSchema)
	}
	st.Schema = stateSchema
	if st.Apps == nil {
		st.Apps = map[string]*appState{}
	}
	if st.Sequences == nil {
		st.Sequences = map[string]uint64{}
	}
	if st.Actions == nil {
		st.Actions = map[string]*actionRecord{}
	}
	return st, nil
}

// save writes the state file atomically: a temporary file, synced, renamed
// over the old one, and the directory synced.
func (st *state) save(root string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(statePath(root), b)
}

// writeFileAtomic writes the agent's files: its state, configurations.
func writeFileAtomic(path string, b []byte) error { return atomicfile.Write(path, b, 0o600) }
