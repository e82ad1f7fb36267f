package catalog

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Limits of the rest of Azure's version model: custom actions and
// advanced settings.
const (
	MaxCustomActions       = 50
	MaxActionParameters    = 50
	MaxAdvancedSettings    = 50
	MaxAdvancedKeyLen      = 256
	MaxAdvancedValueLen    = 4096
	maxActionNameLen       = 64
	maxParameterNameLen    = 128
	maxParameterDefaultLen = 4096
)

// Values of replicationMode and storageAccountStrategy, as Azure spells
// them.
const (
	ReplicationFull    = "Full"
	ReplicationShallow = "Shallow"

	PreferStandardZRS  = "PreferStandard_ZRS"
	DefaultStandardLRS = "DefaultStandard_LRS"
)

var (
	actionName    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,63})$`)
	parameterName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// reservedParameters are environment variables a parameter may not set:
// the shell's and the agent's own.
var reservedParameters = []string{"PATH", "HOME", "SHELL", "IFS", "ENV", "BASH_ENV", "PWD", "USER", "LOGNAME", "TMPDIR", "SHELLOPTS", "BASHOPTS", "CDPATH", "PS4"}

// checkCustomActions validates a list of custom actions (field is its JSON
// path, param its Azure property), normalising the parameters' types.
func checkCustomActions(field, param string, actions []*pb.GalleryApplicationCustomAction) error {
	if len(actions) > MaxCustomActions {
		return invalid(field, "The value of parameter '%s' has %d custom actions; the maximum is %d.", param, len(actions), MaxCustomActions)
	}
	seen := map[string]bool{}
	for i, a := range actions {
		f, p := fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("%s[%d]", param, i)
		if a == nil {
			return invalid(f, "%s is empty", f)
		}
		if err := checkActionName(f+".name", p+".name", a.GetName()); err != nil {
			return err
		}
		if seen[strings.ToLower(a.Name)] {
			return invalid(f+".name", "Custom action names must be unique within a version. The name '%s' of parameter '%s.name' is used more than once.", a.Name, p)
		}
		seen[strings.ToLower(a.Name)] = true
		if strings.TrimSpace(a.GetScript()) == "" {
			return invalid(f+".script", "The value of parameter '%s.script' is required: the command custom action '%s' runs.", p, a.Name)
		}
		if err := checkCommand(f+".script", a.GetScript(), true); err != nil {
			return err
		}
		if err := checkText(f+".description", a.GetDescription(), maxTextLen); err != nil {
			return err
		}
		if err := checkParameters(f+".parameters", p+".parameters", a.Parameters); err != nil {
			return err
		}
	}
	return nil
}

func checkActionName(field, param, name string) error {
	switch {
	case name == "":
		return invalid(field, "The value of parameter '%s' is required: the custom action's name.", param)
	case !actionName.MatchString(name):
		return invalid(field, "The value '%s' of parameter '%s' is invalid: use 1-%d letters, digits, '.', '_' and '-', starting with a letter or digit.", name, param, maxActionNameLen)
	}
	return nil
}

// checkParameters validates an action's parameters, normalising their
// types (default String).
func checkParameters(field, param string, params []*pb.GalleryApplicationCustomActionParameter) error {
	if len(params) > MaxActionParameters {
		return invalid(field, "The value of parameter '%s' has %d parameters; the maximum is %d.", param, len(params), MaxActionParameters)
	}
	seen := map[string]bool{}
	for i, pa := range params {
		f, p := fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("%s[%d]", param, i)
		if pa == nil {
			return invalid(f, "%s is empty", f)
		}
		if err := checkParameterName(f+".name", p+".name", pa.GetName()); err != nil {
			return err
		}
		if seen[pa.Name] {
			return invalid(f+".name", "Parameter names must be unique within a custom action. The name '%s' of parameter '%s.name' is used more than once.", pa.Name, p)
		}
		seen[pa.Name] = true
		t, ok := canonical(pa.GetType(), pb.ParamString, pb.ParamConfigurationDataBlob, pb.ParamLogOutputBlob)
		switch {
		case pa.GetType() == "":
			t = pb.ParamString
		case !ok:
			return invalid(f+".type", "The value '%s' of parameter '%s.type' is invalid; allowed values are String, ConfigurationDataBlob and LogOutputBlob.", pa.Type, p)
		}
		pa.Type = t
		if pa.DefaultValue != "" && t != pb.ParamString {
			return invalid(f+".defaultValue", "The parameter '%s.defaultValue' can only be set for parameters of type String; '%s' is a %s.", p, pa.Name, t)
		}
		if err := checkText(f+".defaultValue", pa.GetDefaultValue(), maxParameterDefaultLen); err != nil {
			return err
		}
		if err := checkText(f+".description", pa.GetDescription(), maxTextLen); err != nil {
			return err
		}
	}
	return nil
}

func checkParameterName(field, param, name string) error {
	switch {
	case name == "":
		return invalid(field, "The value of parameter '%s' is required: the parameter's name.", param)
	case len(name) > maxParameterNameLen || !parameterName.MatchString(name):
		return invalid(field, "The value '%s' of parameter '%s' is invalid: it names an environment variable, 1-%d letters, digits and '_', not starting with a digit.", name, param, maxParameterNameLen)
	case strings.HasPrefix(strings.ToUpper(name), "VMAPP_") || strings.HasPrefix(strings.ToUpper(name), "LD_") || slices.Contains(reservedParameters, strings.ToUpper(name)):
		return invalid(field, "The value '%s' of parameter '%s' is reserved: the agent or the shell sets that environment variable.", name, param)
	}
	return nil
}

// checkAdvancedSettings validates publishingProfile.advancedSettings.
func checkAdvancedSettings(m map[string]string) error {
	const field = "publishingProfile.advancedSettings"
	if len(m) > MaxAdvancedSettings {
		return invalid(field, "The value of parameter 'galleryApplicationVersion.properties.%s' has %d settings; the maximum is %d.", field, len(m), MaxAdvancedSettings)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch {
		case k == "" || len(k) > MaxAdvancedKeyLen:
			return invalid(field, "The key '%s' of parameter 'galleryApplicationVersion.properties.%s' is invalid: keys are 1-%d characters.", k, field, MaxAdvancedKeyLen)
		case strings.ContainsRune(k, 0) || strings.ContainsRune(m[k], 0):
			return invalid(field, "The setting '%s' of parameter 'galleryApplicationVersion.properties.%s' must not contain NUL.", k, field)
		}
		if err := checkText(field+"."+k, k, MaxAdvancedKeyLen); err != nil {
			return err
		}
		if err := checkText(field+"."+k, m[k], MaxAdvancedValueLen); err != nil {
			return err
		}
	}
	return nil
}

// normalizeStorage resolves storageAccountType and storageAccountStrategy
// (set one, not both) and replicationMode (Full; Shallow is refused).
func normalizeStorage(pp *pb.PublishingProfile) error {
	const pre = "galleryApplicationVersion.properties.publishingProfile."
	st, err := canonicalStorageType("publishingProfile.storageAccountType", pre+"storageAccountType", pp.GetStorageAccountType())
	if err != nil {
		return err
	}
	if s := pp.GetStorageAccountStrategy(); s != "" {
		c, ok := canonical(s, PreferStandardZRS, DefaultStandardLRS)
		switch {
		case !ok:
			return invalid("publishingProfile.storageAccountStrategy", "The value '%s' of parameter '%sstorageAccountStrategy' is invalid; allowed values are PreferStandard_ZRS and DefaultStandard_LRS.", s, pre)
		case st != "":
			return invalid("publishingProfile.storageAccountStrategy", "Parameters '%sstorageAccountType' and '%sstorageAccountStrategy' can't both be set: set one of them.", pre, pre)
		}
		pp.StorageAccountStrategy = c
		st = map[string]string{PreferStandardZRS: StandardZRS, DefaultStandardLRS: StandardLRS}[c]
	}
	pp.StorageAccountType = cmpOr(st, StandardLRS)
	switch m, ok := canonical(pp.GetReplicationMode(), ReplicationFull, ReplicationShallow); {
	case pp.GetReplicationMode() == "":
		pp.ReplicationMode = ReplicationFull
	case !ok:
		return invalid("publishingProfile.replicationMode", "The value '%s' of parameter '%sreplicationMode' is invalid; allowed values are Full and Shallow.", pp.ReplicationMode, pre)
	case m == ReplicationShallow:
		return invalid("publishingProfile.replicationMode", "The value 'Shallow' of parameter '%sreplicationMode' isn't supported: vmapp always copies the package to every target region's store (Full), so that machines download from their own region.", pre)
	default:
		pp.ReplicationMode = m
	}
	return nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// checkHealthAction refuses enableHealthCheck on a version without a
// custom action "health" (its own or its application's).
func checkHealthAction(pp *pb.PublishingProfile, app *pb.GalleryApplication) error {
	if !pp.GetEnableHealthCheck() {
		return nil
	}
	if pb.FindAction(pp.GetCustomActions(), app.GetCustomActions(), pb.HealthAction) != nil {
		return nil
	}
	return invalid("publishingProfile.enableHealthCheck", "The parameter 'galleryApplicationVersion.properties.publishingProfile.enableHealthCheck' is true, but neither the version nor its application defines the custom action '%s' the agent runs to check the application's health. Add it to publishingProfile.customActions.", pb.HealthAction)
}
