package catalog

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maskRules says which update_mask paths of a resource may change.
type maskRules struct {
	resource string // Azure's name in messages: "galleryApplicationVersion"
	// mutable paths are copied from the request.
	mutable []string
	// immutable paths may be named only with the stored value; a path whose
	// children are listed expands to them, e.g. "publishing_profile.settings".
	immutable []string
}

// applyMask returns a copy of cur with the mutable paths of mask copied from
// in. An immutable path whose value differs fails with the seeds' "Changing
// property '…' isn't allowed."; an unknown path fails with InvalidArgument.
func applyMask[T proto.Message](cur, in T, mask []string, r maskRules) (T, error) {
	next := proto.Clone(cur).(T)
	if len(mask) == 0 {
		return next, invalid("updateMask", "updateMask is required: name the fields to change, e.g. %s", strings.Join(r.mutable, ", "))
	}
	for _, path := range mask {
		switch {
		case slices.Contains(r.mutable, path):
			copyPath(next.ProtoReflect(), in.ProtoReflect(), strings.Split(path, "."))
		case isImmutable(r.immutable, path) && !isImmutable(r.mutable, path):
			for _, leaf := range r.immutable {
				if leaf != path && !strings.HasPrefix(leaf, path+".") {
					continue
				}
				a, _ := valueAt(cur.ProtoReflect(), strings.Split(leaf, "."))
				b, _ := valueAt(in.ProtoReflect(), strings.Split(leaf, "."))
				if !a.Equal(b) {
					return next, invalid(jsonPath(cur.ProtoReflect().Descriptor(), leaf), "Changing property '%s' isn't allowed.", azureProperty(r.resource, cur.ProtoReflect().Descriptor(), leaf))
				}
			}
		default:
			return next, invalid("updateMask", "updateMask path '%s' can't be updated; updatable paths are %s", path, strings.Join(r.mutable, ", "))
		}
	}
	return next, nil
}

// isImmutable reports whether path is, or is a parent of, one of paths.
func isImmutable(paths []string, path string) bool {
	for _, p := range paths {
		if p == path || strings.HasPrefix(p, path+".") {
			return true
		}
	}
	return false
}

// valueAt returns the value at a dotted proto path; an unset message on the
// way yields the field's zero value.
func valueAt(m protoreflect.Message, path []string) (protoreflect.Value, bool) {
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(path[0]))
	if fd == nil {
		return protoreflect.Value{}, false
	}
	if len(path) == 1 {
		return m.Get(fd), true
	}
	return valueAt(m.Get(fd).Message(), path[1:])
}

// copyPath sets the field at path in dst to its value in src (clearing it
// when unset in src), creating intermediate messages in dst as needed.
func copyPath(dst, src protoreflect.Message, path []string) {
	fd := dst.Descriptor().Fields().ByName(protoreflect.Name(path[0]))
	if len(path) == 1 {
		if src.Has(fd) {
			dst.Set(fd, src.Get(fd))
		} else {
			dst.Clear(fd)
		}
		return
	}
	copyPath(dst.Mutable(fd).Message(), src.Get(fd).Message(), path[1:])
}

// jsonPath turns "publishing_profile.manage_actions.install" into
// "publishingProfile.manageActions.install".
func jsonPath(md protoreflect.MessageDescriptor, path string) string {
	var out []string
	for _, seg := range strings.Split(path, ".") {
		fd := md.Fields().ByName(protoreflect.Name(seg))
		if fd == nil {
			out = append(out, seg)
			continue
		}
		out = append(out, fd.JSONName())
		md = fd.Message()
		if md == nil {
			break
		}
	}
	return strings.Join(out, ".")
}

// azureProperty names a property as Azure's messages do:
// "galleryApplicationVersion.properties.publishingProfile.manageActions.install".
func azureProperty(resource string, md protoreflect.MessageDescriptor, path string) string {
	jp := jsonPath(md, path)
	if jp == "location" || jp == "name" {
		return resource + "." + jp
	}
	return resource + ".properties." + jp
}
