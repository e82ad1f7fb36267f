package sign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/sign/minisign"
)

var update = flag.Bool("update", false, "rewrite the test vectors in testdata/")

// testKey is a fixed key made from name: Ed25519 is deterministic, so its
// signatures are too.
func testKey(name string) minisign.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	id := sha256.Sum256([]byte("id " + name))
	return minisign.PrivateKey{ID: minisign.KeyID(id[:8]), Key: ed25519.NewKeyFromSeed(seed[:])}
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// fullVersion uses every field, with values that look like other fields.
func fullVersion() *Version {
	return &Version{
		Tenant: "default", Gallery: "mygallery", Application: "myapp", Version: "1.2.3",
		Sequence:             42,
		Expires:              time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC),
		Package:              Artifact{SHA256: sum("package"), Size: 10 << 20, PieceRoot: sum("pieces")},
		DefaultConfiguration: Artifact{SHA256: sum("config"), Size: 512},
		Install:              "tar -xzf myapp && ./install.sh\nupdate 0:\n",
		Update:               "./update.sh",
		Remove:               "./remove.sh",
		Settings:             Settings{PackageFileName: "myapp.tar.gz", ConfigFileName: "myapp.json", ScriptBehaviorAfterReboot: "Rerun"},
		CustomActions: []CustomAction{
			{Name: "restart", Script: "systemctl restart myapp"},
			{Name: "lint", Script: "./lint.sh --level $LEVEL", Description: "Checks the configuration.\nparameters 1:0", Parameters: []Parameter{
				{Name: "REPORT", Type: "LogOutputBlob", Description: "where the findings go"},
				{Name: "LEVEL", Required: true, DefaultValue: "2"},
				{Name: "RULES", Type: "ConfigurationDataBlob"},
			}},
		},
	}
}

// minimalVersion has only the required fields.
func minimalVersion() *Version {
	return &Version{
		Tenant: "default", Gallery: "g1", Application: "app", Version: "1.0.0", Sequence: 1,
		Package: Artifact{SHA256: sum("package"), Size: 3},
		Install: "sh install.sh", Remove: "sh remove.sh",
	}
}

var vectorTime = time.Unix(1_800_000_000, 0)

// vectors are the statements whose bytes and signatures are in testdata.
func vectors() map[string]struct {
	st     Statement
	signer minisign.PrivateKey
} {
	k1, k2 := testKey("vmapp test key"), testKey("vmapp test key 2")
	return map[string]struct {
		st     Statement
		signer minisign.PrivateKey
	}{
		"version":         {fullVersion(), k1},
		"minimal-version": {minimalVersion(), k1},
		"rotation":        {&Rotation{Old: k1.Public(), New: k2.Public()}, k1},
		"revocation":      {&Revocation{Key: k2.Public(), Reason: "laptop stolen"}, k1},
	}
}

// golden compares data with testdata/name, or writes it with -update.
func golden(t *testing.T, name string, data []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, want) {
		t.Errorf("%s: got\n%s\nwant\n%s", name, data, want)
	}
}

// TestVectors: each statement encodes to the bytes in testdata, and its
// signature by the fixed key at a fixed time is the signature file there,
// byte for byte.
func TestVectors(t *testing.T) {
	k := testKey("vmapp test key")
	golden(t, "test.pub", k.Public().Encode())
	skFile, err := k.Encode(nil, minisign.KDF{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "test.key", skFile)
	for name, v := range vectors() {
		b, err := v.st.Encode()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		golden(t, name+".statement", b)
		s, err := Sign(v.signer, v.st, vectorTime)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, name+".statement.minisig", s.Encode())
	}
}

// TestVectorsWithMinisign: minisign -V verifies each vector's signature.
func TestVectorsWithMinisign(t *testing.T) {
	if _, err := exec.LookPath("minisign"); err != nil {
		t.Skip("minisign is not on PATH (apt-get install minisign): the vectors are not checked with it")
	}
	for name := range vectors() {
		out, err := exec.Command("minisign", "-V", "-p", "testdata/test.pub", "-m", "testdata/"+name+".statement").CombinedOutput()
		if err != nil {
			t.Errorf("minisign -V %s: %v\n%s", name, err, out)
		}
	}
}

// TestVersionVectorText pins the canonical encoding in the test itself,
// so that a change to it can't pass by rewriting testdata alone.
func TestVersionVectorText(t *testing.T) {
	b, err := minimalVersion().Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "vmapp-statement v1\n" +
		"kind 7:version\n" +
		"tenant 7:default\ngallery 2:g1\napplication 3:app\nversion 5:1.0.0\n" +
		"sequence 1:1\nexpires 0:\nrollback 5:false\n" +
		"package.sha256 64:" + sum("package") + "\npackage.size 1:3\npackage.pieceRoot 0:\n" +
		"defaultConfiguration.sha256 0:\ndefaultConfiguration.size 1:0\ndefaultConfiguration.pieceRoot 0:\n" +
		"install 13:sh install.sh\nupdate 0:\nremove 12:sh remove.sh\n" +
		"settings.packageFileName 0:\nsettings.configFileName 0:\nsettings.scriptBehaviorAfterReboot 4:None\n" +
		"customActions 1:0\n"
	if string(b) != want {
		t.Errorf("got\n%s\nwant\n%s", b, want)
	}
}

// TestActionVectorText pins the encoding of custom actions: by name,
// every field present, parameters by name.
func TestActionVectorText(t *testing.T) {
	v := minimalVersion()
	v.CustomActions = []CustomAction{
		{Name: "b", Script: "run b", Parameters: []Parameter{{Name: "Y", Type: "LogOutputBlob"}, {Name: "X", Required: true, DefaultValue: "1", Description: "x"}}},
		{Name: "a", Script: "run a", Description: "first"},
	}
	b, err := v.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "customActions 1:2\n" +
		"customActions.0.name 1:a\ncustomActions.0.script 5:run a\ncustomActions.0.description 5:first\ncustomActions.0.parameters 1:0\n" +
		"customActions.1.name 1:b\ncustomActions.1.script 5:run b\ncustomActions.1.description 0:\ncustomActions.1.parameters 1:2\n" +
		"customActions.1.parameters.0.name 1:X\ncustomActions.1.parameters.0.required 4:true\ncustomActions.1.parameters.0.type 6:String\n" +
		"customActions.1.parameters.0.defaultValue 1:1\ncustomActions.1.parameters.0.description 1:x\n" +
		"customActions.1.parameters.1.name 1:Y\ncustomActions.1.parameters.1.required 5:false\ncustomActions.1.parameters.1.type 13:LogOutputBlob\n" +
		"customActions.1.parameters.1.defaultValue 0:\ncustomActions.1.parameters.1.description 0:\n"
	if _, tail, _ := strings.Cut(string(b), "settings.scriptBehaviorAfterReboot 4:None\n"); tail != want {
		t.Errorf("got\n%s\nwant\n%s", tail, want)
	}
}

// TestEncodeNormalizes: the same meaning gives the same bytes: hex case,
// the time zone, the default reboot behaviour and parameter type, the
// order of custom actions and of their parameters.
func TestEncodeNormalizes(t *testing.T) {
	a := fullVersion()
	b := fullVersion()
	b.Package.SHA256 = strings.ToUpper(b.Package.SHA256)
	b.Expires = b.Expires.In(time.FixedZone("UTC+5", 5*3600))
	b.CustomActions[0], b.CustomActions[1] = b.CustomActions[1], b.CustomActions[0]
	ps := b.CustomActions[0].Parameters
	ps[0], ps[1], ps[2] = ps[2], ps[0], ps[1]
	ps[2].Type = "String"
	encA, errA := a.Encode()
	encB, errB := b.Encode()
	if errA != nil || errB != nil || !bytes.Equal(encA, encB) {
		t.Errorf("the same version encodes differently (%v, %v):\n%s\n%s", errA, errB, encA, encB)
	}
	c, d := minimalVersion(), minimalVersion()
	d.Settings.ScriptBehaviorAfterReboot = "None"
	encC, _ := c.Encode()
	encD, _ := d.Encode()
	if !bytes.Equal(encC, encD) {
		t.Error(`scriptBehaviorAfterReboot "" and "None" encode differently`)
	}
}

// TestEveryFieldIsSigned changes each field of a version in turn: the
// bytes change, and the signature over the original is refused as one
// over another statement, naming it when the subject changed.
func TestEveryFieldIsSigned(t *testing.T) {
	k := testKey("vmapp test key")
	p, err := NewPolicy(1, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	orig := fullVersion()
	sig, err := Sign(k, orig, vectorTime)
	if err != nil {
		t.Fatal(err)
	}
	encOrig, _ := orig.Encode()
	for name, change := range map[string]func(v *Version){
		"tenant":                    func(v *Version) { v.Tenant = "other" },
		"gallery":                   func(v *Version) { v.Gallery = "g2" },
		"application":               func(v *Version) { v.Application = "app2" },
		"version":                   func(v *Version) { v.Version = "1.2.4" },
		"sequence":                  func(v *Version) { v.Sequence++ },
		"expires":                   func(v *Version) { v.Expires = v.Expires.Add(time.Second) },
		"no expiry":                 func(v *Version) { v.Expires = time.Time{} },
		"rollback":                  func(v *Version) { v.Rollback = true },
		"package.sha256":            func(v *Version) { v.Package.SHA256 = sum("other") },
		"package.size":              func(v *Version) { v.Package.Size++ },
		"package.pieceRoot":         func(v *Version) { v.Package.PieceRoot = "" },
		"defaultConfiguration":      func(v *Version) { v.DefaultConfiguration = Artifact{} },
		"defaultConfiguration.size": func(v *Version) { v.DefaultConfiguration.Size = 0 },
		"install":                   func(v *Version) { v.Install += " " },
		"update":                    func(v *Version) { v.Update = "" },
		"remove":                    func(v *Version) { v.Remove = "rm -rf /" },
		"install into update":       func(v *Version) { v.Install, v.Update = v.Install+v.Update, "" },
		"settings.packageFileName":  func(v *Version) { v.Settings.PackageFileName = "x" },
		"settings.configFileName":   func(v *Version) { v.Settings.ConfigFileName = "" },
		"scriptBehaviorAfterReboot": func(v *Version) { v.Settings.ScriptBehaviorAfterReboot = "None" },
		"no custom action":          func(v *Version) { v.CustomActions = nil },
		"a custom action less":      func(v *Version) { v.CustomActions = v.CustomActions[1:] },
		"a custom action more":      func(v *Version) { v.CustomActions = append(v.CustomActions, CustomAction{Name: "x", Script: "x"}) },
		"a custom action's name":    func(v *Version) { v.CustomActions[0].Name = "Restart" },
		"a custom action's script":  func(v *Version) { v.CustomActions[0].Script = "reboot" },
		"a custom action's text":    func(v *Version) { v.CustomActions[1].Description = "" },
		"a parameter less":          func(v *Version) { v.CustomActions[1].Parameters = v.CustomActions[1].Parameters[1:] },
		"a parameter's name":        func(v *Version) { v.CustomActions[1].Parameters[1].Name = "LEVEL2" },
		"a parameter's required":    func(v *Version) { v.CustomActions[1].Parameters[1].Required = false },
		"a parameter's type":        func(v *Version) { v.CustomActions[1].Parameters[0].Type = "ConfigurationDataBlob" },
		"a parameter's default":     func(v *Version) { v.CustomActions[1].Parameters[1].DefaultValue = "" },
		"a parameter's text":        func(v *Version) { v.CustomActions[1].Parameters[0].Description = "x" },
		"a parameter moved": func(v *Version) {
			v.CustomActions[0].Parameters = v.CustomActions[1].Parameters[:1]
			v.CustomActions[1].Parameters = v.CustomActions[1].Parameters[1:]
		},
	} {
		v := fullVersion()
		change(v)
		enc, err := v.Encode()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if bytes.Equal(enc, encOrig) {
			t.Errorf("%s: the encoding did not change", name)
			continue
		}
		err = p.Check(v, []minisign.Signature{sig}, 0, vectorTime)
		want := "with other contents"
		if v.Subject() != orig.Subject() {
			want = "signed another statement: " + orig.Subject()
		}
		if ReasonOf(err) != SignatureInvalid || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want SignatureInvalid saying %q", name, err, want)
		}
	}
}

// TestEncodeRefuses: invalid statements are refused, naming the field.
func TestEncodeRefuses(t *testing.T) {
	for _, c := range []struct {
		field  string
		change func(v *Version)
	}{
		{"tenant", func(v *Version) { v.Tenant = "" }},
		{"gallery", func(v *Version) { v.Gallery = "" }},
		{"application", func(v *Version) { v.Application = "" }},
		{"version", func(v *Version) { v.Version = "" }},
		{"sequence", func(v *Version) { v.Sequence = 0 }},
		{"expires", func(v *Version) { v.Expires = v.Expires.Add(time.Millisecond) }},
		{"expires", func(v *Version) { v.Rollback, v.Expires = true, time.Time{} }},
		{"package.sha256", func(v *Version) { v.Package.SHA256 = "" }},
		{"package.sha256", func(v *Version) { v.Package.SHA256 = v.Package.SHA256[:62] }},
		{"package.sha256", func(v *Version) { v.Package.SHA256 = "x" + v.Package.SHA256[1:] }},
		{"package.size", func(v *Version) { v.Package.Size = -1 }},
		{"package.pieceRoot", func(v *Version) { v.Package.PieceRoot = "abc" }},
		{"defaultConfiguration.sha256", func(v *Version) { v.DefaultConfiguration.SHA256 = "" }},
		{"install", func(v *Version) { v.Install = "" }},
		{"remove", func(v *Version) { v.Remove = "" }},
		{"install", func(v *Version) { v.Install = "sh \xff" }},
		{"settings.scriptBehaviorAfterReboot", func(v *Version) { v.Settings.ScriptBehaviorAfterReboot = "rerun" }},
		{"customActions.0.name", func(v *Version) { v.CustomActions[1].Name = "" }},
		{"customActions.1.name", func(v *Version) { v.CustomActions[1].Name = "restart" }},
		{"customActions.1.script", func(v *Version) { v.CustomActions[0].Script = "" }},
		{"customActions.1.script", func(v *Version) { v.CustomActions[0].Script = "\xff" }},
		{"customActions.0.parameters.0.name", func(v *Version) { v.CustomActions[1].Parameters[1].Name = "" }},
		{"customActions.0.parameters.2.name", func(v *Version) { v.CustomActions[1].Parameters[2].Name = "REPORT" }},
		{"customActions.0.parameters.0.type", func(v *Version) { v.CustomActions[1].Parameters[1].Type = "string" }},
	} {
		v := fullVersion()
		c.change(v)
		_, err := v.Encode()
		if !errs.Is(err, errs.InvalidArgument) || errs.FieldOf(err) != c.field || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v (field %q)", c.field, err, errs.FieldOf(err))
		}
		if _, err := Sign(testKey("k"), v, vectorTime); !errs.Is(err, errs.InvalidArgument) {
			t.Errorf("%s: Sign: %v", c.field, err)
		}
	}
	k := testKey("k").Public()
	short := minisign.PublicKey{ID: k.ID, Key: k.Key[:31]}
	for _, c := range []struct {
		field string
		st    Statement
	}{
		{"new", &Rotation{Old: k, New: k}},
		{"old", &Rotation{Old: short, New: testKey("k2").Public()}},
		{"key", &Revocation{Key: short}},
		{"reason", &Revocation{Key: k, Reason: "\xff"}},
	} {
		if _, err := c.st.Encode(); !errs.Is(err, errs.InvalidArgument) || errs.FieldOf(err) != c.field {
			t.Errorf("%s: %v", c.field, err)
		}
	}
}
