package catalog

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// Limits from the seeds (the newer document stands where the two disagree).
const (
	MaxGalleryNameLen     = 80
	MaxApplicationNameLen = 117
	MaxFileNameLen        = 4096
	MinReplicaCount       = 1
	MaxReplicaCount       = 10
	// DefaultMaxVersionsPerRegion is the seeds' "up to 300 versions per region
	// across all applications".
	DefaultMaxVersionsPerRegion = 300

	maxTextLen    = 4096      // description, eula, URIs
	maxCommandLen = 64 * 1024 // one manage action
)

// Values of the string-typed enumerations, as Azure spells them.
const (
	OSLinux   = "Linux"
	OSWindows = "Windows"

	StandardLRS = "Standard_LRS"
	StandardZRS = "Standard_ZRS"
	PremiumLRS  = "Premium_LRS"

	RebootNone  = "None"
	RebootRerun = "Rerun"
)

var resourceName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func invalid(field, format string, args ...any) *errs.Error {
	return errs.New(errs.InvalidArgument, field, format, args...)
}

// ValidateTenant checks a tenant name: the gallery name rule.
func ValidateTenant(t string) error {
	if err := checkName("tenant", "tenant", t, MaxGalleryNameLen); err != nil {
		return err
	}
	return nil
}

func checkName(kind, field, name string, max int) error {
	switch {
	case name == "":
		return invalid(field, "%s name is required", kind)
	case len(name) > max:
		return invalid(field, "%s name '%s' is %d characters long; the maximum is %d", kind, name, len(name), max)
	case !resourceName.MatchString(name):
		return invalid(field, "%s name '%s' is invalid: allowed characters are letters, digits, hyphen (-), period (.) and underscore (_)", kind, name)
	case strings.HasSuffix(name, "."):
		return invalid(field, "%s name '%s' is invalid: names must not end with a period (.)", kind, name)
	}
	return nil
}

// ValidateGalleryName checks a gallery name: 1-80 letters, digits, '-', '.',
// '_', not ending in '.'.
func ValidateGalleryName(name string) error {
	return checkName("gallery", "gallery", name, MaxGalleryNameLen)
}

// ValidateApplicationName checks an application name: 1-117 letters, digits,
// '-', '.', '_', not ending in '.'.
func ValidateApplicationName(name string) error {
	return checkName("application", "application", name, MaxApplicationNameLen)
}

// VersionNumber is a parsed Major.Minor.Patch.
type VersionNumber = state.VersionNumber

// ParseVersion parses a version name as the seeds define it: three int32
// parts separated by periods, without signs or leading zeros.
func ParseVersion(name string) (VersionNumber, error) {
	v, ok := state.ParseVersionNumber(name)
	if !ok {
		return v, invalid("version", "The gallery application version name '%s' is invalid. The application version name should follow Major(int32).Minor(int32).Patch(int32) format, where int is between 0 and 2,147,483,647 (inclusive). For example, 1.0.0, 2018.12.1 etc.", name)
	}
	return v, nil
}

// canonical returns the allowed value matching s case-insensitively.
func canonical(s string, allowed ...string) (string, bool) {
	for _, a := range allowed {
		if strings.EqualFold(s, a) {
			return a, true
		}
	}
	return "", false
}

// CanonicalOS returns "Linux" or "Windows" for any casing of them.
func CanonicalOS(s string) (string, error) {
	if c, ok := canonical(s, OSLinux, OSWindows); ok {
		return c, nil
	}
	if s == "" {
		return "", invalid("supportedOSType", "supportedOSType is required: Linux or Windows")
	}
	return "", invalid("supportedOSType", "The value '%s' of parameter 'galleryApplication.properties.supportedOSType' is invalid; allowed values are Linux and Windows.", s)
}

func checkText(field, s string, max int) error {
	if !utf8.ValidString(s) {
		return invalid(field, "%s is not valid UTF-8", field)
	}
	if len(s) > max {
		return invalid(field, "%s is %d bytes long; the maximum is %d", field, len(s), max)
	}
	return nil
}

func checkURI(field, s string) error {
	if s == "" {
		return nil
	}
	if err := checkText(field, s, maxTextLen); err != nil {
		return err
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return invalid(field, "%s '%s' is not an absolute URI", field, s)
	}
	return nil
}

// checkLink validates a source link (mediaLink, defaultConfigurationLink):
// an http(s) URL.
func checkLink(field, s string) error {
	if s == "" {
		return nil
	}
	if err := checkText(field, s, maxTextLen); err != nil {
		return err
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(field, "The gallery application version url '%s' in %s isn't a valid http(s) URL.", s, field)
	}
	return nil
}

func checkFuture(field, param string, ts *timestamppb.Timestamp, now time.Time) error {
	if ts == nil {
		return nil
	}
	if err := ts.CheckValid(); err != nil {
		return invalid(field, "%s: %v", field, err)
	}
	if !ts.AsTime().After(now) {
		return invalid(field, "The value '%s' of parameter '%s' must be a future date.", ts.AsTime().UTC().Format(time.DateOnly), param)
	}
	return nil
}

// ValidateFileName checks packageFileName / configFileName: a plain file name
// inside the download directory.
func ValidateFileName(field, name string) error {
	switch {
	case name == "":
		return nil
	case len(name) > MaxFileNameLen:
		return invalid(field, "%s is %d characters long; the maximum is %d", field, len(name), MaxFileNameLen)
	case strings.ContainsAny(name, "/\\\x00"), name == ".", strings.Contains(name, ".."):
		return invalid(field, "%s '%s' must be a plain file name: no '/', '\\', '..' or NUL", field, name)
	case !utf8.ValidString(name):
		return invalid(field, "%s is not valid UTF-8", field)
	}
	return nil
}

func checkReplicaCount(field, param string, n int32) error {
	if n < MinReplicaCount || n > MaxReplicaCount {
		return invalid(field, "The value %d of parameter '%s' is out of range. The value must be between %d and %d, inclusive.", n, param, MinReplicaCount, MaxReplicaCount)
	}
	return nil
}

func canonicalStorageType(field, param, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if c, ok := canonical(s, StandardLRS, StandardZRS, PremiumLRS); ok {
		return c, nil
	}
	return "", invalid(field, "The value '%s' of parameter '%s' is invalid; allowed values are Standard_LRS, Standard_ZRS and Premium_LRS.", s, param)
}

func checkCommand(field, s string, required bool) error {
	if strings.TrimSpace(s) == "" {
		if required {
			return invalid(field, "%s is required: the command that %s the application", field, map[string]string{
				"publishingProfile.manageActions.install": "installs",
				"publishingProfile.manageActions.remove":  "removes",
			}[field])
		}
		if s != "" {
			return invalid(field, "%s must not be blank", field)
		}
		return nil
	}
	if strings.ContainsRune(s, 0) {
		return invalid(field, "%s must not contain NUL", field)
	}
	return checkText(field, s, maxCommandLen)
}

// validateGallery checks a gallery for create and normalises it.
func (s *Store) validateGallery(g *pb.Gallery) error {
	if err := ValidateGalleryName(g.GetName()); err != nil {
		return err
	}
	if err := s.checkRegion("location", g.GetLocation()); err != nil {
		return err
	}
	return checkText("description", g.GetDescription(), maxTextLen)
}

// checkApplicationMutable checks the updatable properties of an application.
func (s *Store) checkApplicationMutable(a *pb.GalleryApplication) error {
	for _, c := range []struct{ field, val string }{
		{"description", a.GetDescription()},
		{"eula", a.GetEula()},
	} {
		if err := checkText(c.field, c.val, maxTextLen); err != nil {
			return err
		}
	}
	if err := checkCustomActions("customActions", "galleryApplication.properties.customActions", a.CustomActions); err != nil {
		return err
	}
	if err := checkURI("privacyStatementUri", a.GetPrivacyStatementUri()); err != nil {
		return err
	}
	if err := checkURI("releaseNoteUri", a.GetReleaseNoteUri()); err != nil {
		return err
	}
	return checkFuture("endOfLifeDate", "galleryApplication.properties.endOfLifeDate", a.GetEndOfLifeDate(), s.now())
}

// validateApplication checks an application for create and normalises it.
func (s *Store) validateApplication(a *pb.GalleryApplication) error {
	if err := ValidateGalleryName(a.GetGallery()); err != nil {
		return err
	}
	if err := ValidateApplicationName(a.GetName()); err != nil {
		return err
	}
	if err := s.checkRegion("location", a.GetLocation()); err != nil {
		return err
	}
	os, err := CanonicalOS(a.GetSupportedOsType())
	if err != nil {
		return err
	}
	a.SupportedOsType = os
	return s.checkApplicationMutable(a)
}

func (s *Store) checkRegion(field, region string) error {
	if region == "" {
		return invalid(field, "%s is required: one of the regions %s", field, strings.Join(s.regions, ", "))
	}
	for _, r := range s.regions {
		if r == region {
			return nil
		}
	}
	return invalid(field, "Region '%s' in %s isn't a known region; known regions are %s.", region, field, strings.Join(s.regions, ", "))
}

// normalizeTargetRegions validates targetRegions, replicaCount and
// storageAccountType of a version's publishing profile, fills in defaults
// (targetRegions defaults to the location alone) and checks that the
// location is among the targets.
func (s *Store) normalizeTargetRegions(location string, pp *pb.PublishingProfile) error {
	if pp.ReplicaCount != nil {
		if err := checkReplicaCount("publishingProfile.replicaCount", "galleryApplicationVersion.properties.publishingProfile.replicaCount", pp.GetReplicaCount()); err != nil {
			return err
		}
	}
	if len(pp.TargetRegions) == 0 {
		pp.TargetRegions = []*pb.TargetRegion{{Name: location}}
	}
	seen := map[string]bool{}
	names := make([]string, 0, len(pp.TargetRegions))
	for i, tr := range pp.TargetRegions {
		field := fmt.Sprintf("publishingProfile.targetRegions[%d]", i)
		if tr == nil {
			return invalid(field, "%s is empty", field)
		}
		if err := s.checkRegion(field+".name", tr.GetName()); err != nil {
			return err
		}
		if seen[tr.GetName()] {
			return invalid(field+".name", "Duplicate regions aren't allowed in target publishing regions. Region '%s' is listed more than once.", tr.GetName())
		}
		seen[tr.GetName()] = true
		names = append(names, tr.GetName())
		if tr.RegionalReplicaCount != nil {
			if err := checkReplicaCount(field+".regionalReplicaCount", fmt.Sprintf("galleryApplicationVersion.properties.publishingProfile.targetRegions[%d].regionalReplicaCount", i), tr.GetRegionalReplicaCount()); err != nil {
				return err
			}
		}
		st, err := canonicalStorageType(field+".storageAccountType", fmt.Sprintf("galleryApplicationVersion.properties.publishingProfile.targetRegions[%d].storageAccountType", i), tr.GetStorageAccountType())
		if err != nil {
			return err
		}
		tr.StorageAccountType = st
	}
	if !seen[location] {
		return invalid("publishingProfile.targetRegions", "Gallery image version publishing profile regions '%s' must contain the location of image version '%s'.", strings.Join(names, ", "), location)
	}
	return nil
}

// validateVersion checks a version for create and normalises it.
func (s *Store) validateVersion(v *pb.GalleryApplicationVersion) error {
	if err := ValidateGalleryName(v.GetGallery()); err != nil {
		return err
	}
	if err := ValidateApplicationName(v.GetApplication()); err != nil {
		return err
	}
	if _, err := ParseVersion(v.GetName()); err != nil {
		return err
	}
	if err := s.checkRegion("location", v.GetLocation()); err != nil {
		return err
	}
	if v.PublishingProfile == nil {
		v.PublishingProfile = &pb.PublishingProfile{}
	}
	pp := v.PublishingProfile
	ma := pp.GetManageActions()
	if err := checkCommand("publishingProfile.manageActions.install", ma.GetInstall(), true); err != nil {
		return err
	}
	if err := checkCommand("publishingProfile.manageActions.remove", ma.GetRemove(), true); err != nil {
		return err
	}
	if err := checkCommand("publishingProfile.manageActions.update", ma.GetUpdate(), false); err != nil {
		return err
	}
	if pp.Settings == nil {
		pp.Settings = &pb.UserArtifactSettings{}
	}
	if err := ValidateFileName("publishingProfile.settings.packageFileName", pp.Settings.GetPackageFileName()); err != nil {
		return err
	}
	if err := ValidateFileName("publishingProfile.settings.configFileName", pp.Settings.GetConfigFileName()); err != nil {
		return err
	}
	switch rb := pp.Settings.GetScriptBehaviorAfterReboot(); {
	case rb == "":
		pp.Settings.ScriptBehaviorAfterReboot = RebootNone
	default:
		c, ok := canonical(rb, RebootNone, RebootRerun)
		if !ok {
			return invalid("publishingProfile.settings.scriptBehaviorAfterReboot", "The value '%s' of parameter 'galleryApplicationVersion.properties.publishingProfile.settings.scriptBehaviorAfterReboot' is invalid; allowed values are None and Rerun.", rb)
		}
		pp.Settings.ScriptBehaviorAfterReboot = c
	}
	if err := normalizeStorage(pp); err != nil {
		return err
	}
	if err := checkCustomActions("publishingProfile.customActions", "galleryApplicationVersion.properties.publishingProfile.customActions", pp.CustomActions); err != nil {
		return err
	}
	if err := checkAdvancedSettings(pp.AdvancedSettings); err != nil {
		return err
	}
	if err := checkLink("publishingProfile.source.mediaLink", pp.GetSource().GetMediaLink()); err != nil {
		return err
	}
	if err := checkLink("publishingProfile.source.defaultConfigurationLink", pp.GetSource().GetDefaultConfigurationLink()); err != nil {
		return err
	}
	if err := checkFuture("publishingProfile.endOfLifeDate", "galleryApplicationVersion.properties.publishingProfile.endOfLifeDate", pp.GetEndOfLifeDate(), s.now()); err != nil {
		return err
	}
	return s.normalizeTargetRegions(v.GetLocation(), pp)
}
