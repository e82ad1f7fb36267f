package sign

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/sign/minisign"
)

const header = "vmapp-statement v1\n"

// Statement is what a signature covers: a Version, Rotation or Revocation.
type Statement interface {
	// Encode is the canonical bytes that are signed; it refuses a
	// statement that is not valid (errs.InvalidArgument naming the field).
	Encode() ([]byte, error)
	// Subject names the statement in one line, for trusted comments and
	// messages.
	Subject() string
}

// Version is the statement of an application version: everything an agent
// acts on when it installs, updates or removes it.
type Version struct {
	Tenant, Gallery, Application, Version string
	// Sequence increases with every statement signed for the application.
	Sequence uint64
	// Expires, when not zero, is when the statement stops being accepted.
	Expires time.Time
	// Rollback: the statement may have a lower sequence than one a machine
	// installed. Needs Expires.
	Rollback bool

	Package Artifact
	// DefaultConfiguration is the zero Artifact when the version has none.
	DefaultConfiguration Artifact

	Install, Update, Remove string
	Settings                Settings
	// CustomActions are the custom actions the statement covers, in any
	// order (they are encoded by name).
	CustomActions []CustomAction
}

// Artifact is a file a version installs.
type Artifact struct {
	SHA256 string // hex
	Size   int64
	// PieceRoot is an optional hex digest of the piece manifest.
	PieceRoot string
}

// Settings are the version's publishingProfile.settings.
type Settings struct {
	PackageFileName, ConfigFileName, ScriptBehaviorAfterReboot string
}

// CustomAction is a custom action a version offers (its own or its
// application's): what the agent runs and how it gives it parameters.
type CustomAction struct {
	Name, Script, Description string
	// Parameters, in any order (they are encoded by name).
	Parameters []Parameter
}

// Parameter is a custom action's parameter.
type Parameter struct {
	Name     string
	Required bool
	// Type is String (also for empty), ConfigurationDataBlob or
	// LogOutputBlob.
	Type                      string
	DefaultValue, Description string
}

// Subject is "version TENANT/GALLERY/APPLICATION/VERSION sequence N".
func (v *Version) Subject() string {
	return fmt.Sprintf("version %s/%s/%s/%s sequence %d", v.Tenant, v.Gallery, v.Application, v.Version, v.Sequence)
}

// encoder writes fields; the first invalid value stops it.
type encoder struct {
	b   []byte
	err error
}

func newEncoder(kind string) *encoder {
	e := &encoder{b: []byte(header)}
	e.field("kind", kind)
	return e
}

func (e *encoder) field(key, value string) {
	if e.err == nil && !utf8.ValidString(value) {
		e.err = errs.New(errs.InvalidArgument, key, "%s: not UTF-8", key)
	}
	e.b = fmt.Appendf(e.b, "%s %d:%s\n", key, len(value), value)
}

// required refuses an empty value.
func (e *encoder) required(key, value string) {
	if e.err == nil && value == "" {
		e.err = errs.New(errs.InvalidArgument, key, "%s is required", key)
	}
	e.field(key, value)
}

func (e *encoder) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

func (e *encoder) bytes() ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	return e.b, nil
}

// Encode is the canonical bytes of the statement (see the package doc).
func (v *Version) Encode() ([]byte, error) {
	e := newEncoder("version")
	e.required("tenant", v.Tenant)
	e.required("gallery", v.Gallery)
	e.required("application", v.Application)
	e.required("version", v.Version)
	if v.Sequence == 0 {
		e.fail(errs.New(errs.InvalidArgument, "sequence", "sequence must be at least 1"))
	}
	e.field("sequence", strconv.FormatUint(v.Sequence, 10))
	e.field("expires", v.expires(e))
	e.field("rollback", strconv.FormatBool(v.Rollback))
	v.Package.encode(e, "package", true)
	v.DefaultConfiguration.encode(e, "defaultConfiguration", false)
	e.required("install", v.Install)
	e.field("update", v.Update)
	e.required("remove", v.Remove)
	e.field("settings.packageFileName", v.Settings.PackageFileName)
	e.field("settings.configFileName", v.Settings.ConfigFileName)
	switch v.Settings.ScriptBehaviorAfterReboot {
	case "", "None":
		e.field("settings.scriptBehaviorAfterReboot", "None")
	case "Rerun":
		e.field("settings.scriptBehaviorAfterReboot", "Rerun")
	default:
		e.fail(errs.New(errs.InvalidArgument, "settings.scriptBehaviorAfterReboot",
			"settings.scriptBehaviorAfterReboot %q: must be None or Rerun", v.Settings.ScriptBehaviorAfterReboot))
	}
	e.field("customActions", strconv.Itoa(len(v.CustomActions)))
	actions := slices.SortedFunc(slices.Values(v.CustomActions), func(a, b CustomAction) int { return strings.Compare(a.Name, b.Name) })
	for i, a := range actions {
		prefix := fmt.Sprintf("customActions.%d", i)
		if i > 0 && actions[i-1].Name == a.Name {
			e.fail(errs.New(errs.InvalidArgument, prefix+".name", "%s.name %q: two custom actions have that name", prefix, a.Name))
		}
		a.encode(e, prefix)
	}
	return e.bytes()
}

func (v *Version) expires(e *encoder) string {
	switch {
	case v.Expires.IsZero() && v.Rollback:
		e.fail(errs.New(errs.InvalidArgument, "expires", "expires is required with rollback: a rollback statement that never expires could be replayed forever"))
	case v.Expires.IsZero():
		return ""
	case v.Expires.Nanosecond() != 0:
		e.fail(errs.New(errs.InvalidArgument, "expires", "expires %s: whole seconds only", v.Expires.Format(time.RFC3339Nano)))
	}
	return v.Expires.UTC().Format(time.RFC3339)
}

// encode writes the artifact's fields under prefix; an optional artifact
// is absent when all its fields are empty.
func (a Artifact) encode(e *encoder, prefix string, required bool) {
	if !required && a == (Artifact{}) {
		e.field(prefix+".sha256", "")
		e.field(prefix+".size", "0")
		e.field(prefix+".pieceRoot", "")
		return
	}
	e.field(prefix+".sha256", digest(e, prefix+".sha256", a.SHA256, true))
	if a.Size < 0 {
		e.fail(errs.New(errs.InvalidArgument, prefix+".size", "%s.size %d: must not be negative", prefix, a.Size))
	}
	e.field(prefix+".size", strconv.FormatInt(a.Size, 10))
	e.field(prefix+".pieceRoot", digest(e, prefix+".pieceRoot", a.PieceRoot, false))
}

// digest is s in lower case when it is 64 hex digits (or empty and not
// required).
func digest(e *encoder, key, s string, required bool) string {
	if s == "" && !required {
		return ""
	}
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		e.fail(errs.New(errs.InvalidArgument, key, "%s %q: want 64 hex digits (a sha256)", key, s))
	}
	return strings.ToLower(s)
}

// encode writes the action's fields under prefix, its parameters by name.
func (a CustomAction) encode(e *encoder, prefix string) {
	e.required(prefix+".name", a.Name)
	e.required(prefix+".script", a.Script)
	e.field(prefix+".description", a.Description)
	e.field(prefix+".parameters", strconv.Itoa(len(a.Parameters)))
	params := slices.SortedFunc(slices.Values(a.Parameters), func(a, b Parameter) int { return strings.Compare(a.Name, b.Name) })
	for j, p := range params {
		pre := fmt.Sprintf("%s.parameters.%d", prefix, j)
		if j > 0 && params[j-1].Name == p.Name {
			e.fail(errs.New(errs.InvalidArgument, pre+".name", "%s.name %q: two parameters of the action have that name", pre, p.Name))
		}
		e.required(pre+".name", p.Name)
		e.field(pre+".required", strconv.FormatBool(p.Required))
		switch p.Type {
		case "", "String":
			e.field(pre+".type", "String")
		case "ConfigurationDataBlob", "LogOutputBlob":
			e.field(pre+".type", p.Type)
		default:
			e.fail(errs.New(errs.InvalidArgument, pre+".type", "%s.type %q: must be String, ConfigurationDataBlob or LogOutputBlob", pre, p.Type))
		}
		e.field(pre+".defaultValue", p.DefaultValue)
		e.field(pre+".description", p.Description)
	}
}

// Rotation says key New replaces key Old; Old signs it.
type Rotation struct {
	Old, New minisign.PublicKey
}

// Subject is "rotation of key OLD to key NEW".
func (r *Rotation) Subject() string {
	return fmt.Sprintf("rotation of key %s to key %s", r.Old.ID, r.New.ID)
}

// Encode is the canonical bytes of the statement.
func (r *Rotation) Encode() ([]byte, error) {
	e := newEncoder("rotation")
	e.field("old", publicKey(e, "old", r.Old))
	e.field("new", publicKey(e, "new", r.New))
	if r.Old.ID == r.New.ID {
		e.fail(errs.New(errs.InvalidArgument, "new", "the new key has the old key's id %s", r.Old.ID))
	}
	return e.bytes()
}

// Revocation says Key is never to be trusted again.
type Revocation struct {
	Key    minisign.PublicKey
	Reason string
}

// Subject is "revocation of key ID".
func (r *Revocation) Subject() string {
	return fmt.Sprintf("revocation of key %s", r.Key.ID)
}

// Encode is the canonical bytes of the statement.
func (r *Revocation) Encode() ([]byte, error) {
	e := newEncoder("revocation")
	e.field("key", publicKey(e, "key", r.Key))
	e.field("reason", r.Reason)
	return e.bytes()
}

// publicKey is k's one-line form, refusing a key of the wrong size.
func publicKey(e *encoder, key string, k minisign.PublicKey) string {
	if _, err := minisign.ParsePublicKey(k.String()); err != nil {
		e.fail(errs.New(errs.InvalidArgument, key, "%s: %v", key, err))
	}
	return k.String()
}
